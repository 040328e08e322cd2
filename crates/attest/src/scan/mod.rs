//! The scanners: each reads one kind of package database or manifest
//! found in the image's files. One walk of the tree picks the candidates;
//! only those are opened. A database that cannot be read is a warning
//! naming it, never a failed build: the SBOM lists what could be read.

mod apk;
mod binary;
mod dpkg;
mod elf;
mod maven;
mod node;
mod os_release;
mod python;
mod rpm;
mod sqlite;
mod zip;

use crate::files::{ImageFiles, Kind};
use crate::package::Package;
pub use os_release::OsRelease;

/// Databases and manifests are small; anything past this is not read.
const MAX_DATABASE: u64 = 256 << 20;

/// What the image holds.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub os: Option<OsRelease>,
    pub packages: Vec<Package>,
}

/// Paths worth opening, found in one walk.
#[derive(Default)]
struct Candidates {
    dpkg_status_d: Vec<String>,
    python: Vec<String>,
    node: Vec<String>,
    jars: Vec<String>,
    executables: Vec<String>,
}

fn candidates(files: &dyn ImageFiles) -> Candidates {
    let mut c = Candidates::default();
    files.walk(&mut |path, kind, mode| {
        let Kind::File { size } = kind else {
            return;
        };
        if path.starts_with("/var/lib/dpkg/status.d/") {
            c.dpkg_status_d.push(path.to_string());
        } else if path.ends_with(".dist-info/METADATA")
            || path.ends_with(".egg-info/PKG-INFO")
            || (path.ends_with(".egg-info") && path.contains("-packages/"))
        {
            c.python.push(path.to_string());
        } else if path.ends_with("/package.json") && node::is_package_manifest(path) {
            c.node.push(path.to_string());
        } else if path.ends_with(".jar") || path.ends_with(".war") || path.ends_with(".ear") {
            c.jars.push(path.to_string());
        } else if mode & 0o111 != 0 && *size >= 64 {
            c.executables.push(path.to_string());
        }
    });
    // The walk's order is the tree's; the SBOM's must not depend on it.
    for list in [
        &mut c.dpkg_status_d,
        &mut c.python,
        &mut c.node,
        &mut c.jars,
        &mut c.executables,
    ] {
        list.sort();
    }
    c
}

/// Scans the image: OS packages (dpkg, apk, rpm), then language packages
/// (Python, Node, Java archives, Go and cargo-auditable binaries).
pub fn scan(files: &dyn ImageFiles) -> Inventory {
    let os = os_release::read(files);
    let found = candidates(files);
    let mut packages = Vec::new();
    packages.extend(dpkg::scan(files, os.as_ref(), &found.dpkg_status_d));
    packages.extend(apk::scan(files, os.as_ref()));
    packages.extend(rpm::scan(files, os.as_ref()));
    packages.extend(python::scan(files, &found.python));
    packages.extend(node::scan(files, &found.node));
    packages.extend(maven::scan(files, &found.jars));
    packages.extend(binary::scan(files, &found.executables));
    packages.sort_by(|a, b| {
        (a.ecosystem, &a.name, &a.version, &a.found_in).cmp(&(
            b.ecosystem,
            &b.name,
            &b.version,
            &b.found_in,
        ))
    });
    packages.dedup_by(|a, b| a.purl == b.purl && a.found_in == b.found_in);
    Inventory { os, packages }
}

/// A database's bytes, or a warning naming it.
fn read(files: &dyn ImageFiles, path: &str) -> Option<Vec<u8>> {
    match crate::files::read_limited(files, path, MAX_DATABASE) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!("sbom: reading {path}: {e}");
            None
        }
    }
}

/// RFC 822-style paragraphs (dpkg status, apk's installed, Python
/// METADATA): `Key: value` lines, continuation lines starting with
/// whitespace, paragraphs separated by blank lines. Keys keep their case.
fn paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, v)) = cur.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `debian-12`-style distro qualifier.
fn distro(os: Option<&OsRelease>) -> String {
    match os {
        Some(o) if !o.version_id.is_empty() => format!("{}-{}", o.id, o.version_id),
        Some(o) => o.id.clone(),
        None => String::new(),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    pub fn put(root: &Path, path: &str, bytes: &[u8]) {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}
