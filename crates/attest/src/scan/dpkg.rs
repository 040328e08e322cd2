//! dpkg: `/var/lib/dpkg/status` (and distroless images' `status.d/`),
//! each installed package's file list (`info/<pkg>[:<arch>].list`) with
//! the MD5 digests dpkg recorded (`.md5sums`), and the license names of a
//! machine-readable `/usr/share/doc/<pkg>/copyright`.

use super::{distro, field, paragraphs, read, OsRelease};
use crate::files::{ImageFiles, Kind};
use crate::package::{purl, Ecosystem, OwnedFile, Package};
use std::collections::HashMap;

const STATUS: &str = "/var/lib/dpkg/status";
const INFO: &str = "/var/lib/dpkg/info";

pub fn scan(files: &dyn ImageFiles, os: Option<&OsRelease>, status_d: &[String]) -> Vec<Package> {
    let mut out = Vec::new();
    let sources = std::iter::once(STATUS.to_string()).chain(status_d.iter().cloned());
    for db in sources {
        let Some(bytes) = read(files, &db) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for p in paragraphs(&text) {
            // Only what is installed: not removed packages whose config
            // files remain, nor half-installed ones.
            let installed = field(&p, "Status").is_none_or(|s| s.ends_with(" installed"));
            let (Some(name), Some(version)) = (field(&p, "Package"), field(&p, "Version")) else {
                continue;
            };
            if !installed {
                continue;
            }
            let arch = field(&p, "Architecture").unwrap_or("");
            let namespace = os.map(|o| o.id.as_str()).unwrap_or("debian");
            let distro = distro(os);
            out.push(Package {
                ecosystem: Ecosystem::Deb,
                name: name.to_string(),
                version: version.to_string(),
                purl: purl(
                    "deb",
                    Some(namespace),
                    name,
                    version,
                    &[("arch", arch), ("distro", &distro)],
                ),
                license: license(files, name),
                supplier: field(&p, "Maintainer").map(String::from),
                found_in: db.clone(),
                files: owned(files, name, arch),
            });
        }
    }
    out
}

/// The files dpkg lists for the package, with the digests it recorded.
fn owned(files: &dyn ImageFiles, name: &str, arch: &str) -> Vec<OwnedFile> {
    let base = [format!("{INFO}/{name}:{arch}"), format!("{INFO}/{name}")]
        .into_iter()
        .find(|b| files.kind(&format!("{b}.list")).is_some());
    let Some(base) = base else {
        return Vec::new();
    };
    let mut sums: HashMap<String, String> = HashMap::new();
    if let Some(bytes) = read(files, &format!("{base}.md5sums")) {
        for line in String::from_utf8_lossy(&bytes).lines() {
            if let Some((sum, path)) = line.split_once("  ") {
                sums.insert(
                    format!("/{}", path.trim_start_matches('/')),
                    sum.to_string(),
                );
            }
        }
    }
    let Some(list) = read(files, &format!("{base}.list")) else {
        return Vec::new();
    };
    let mut out: Vec<OwnedFile> = String::from_utf8_lossy(&list)
        .lines()
        .filter(|p| p.starts_with('/') && *p != "/.")
        // Directories are shared between packages; files it owns are not.
        .filter(|p| !matches!(files.kind(p), Some(Kind::Dir) | None))
        .map(|p| OwnedFile {
            path: p.to_string(),
            checksum: sums.get(p).map(|s| ("MD5", s.clone())),
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The license names a DEP-5 copyright file gives, joined with AND.
fn license(files: &dyn ImageFiles, name: &str) -> Option<String> {
    let bytes = read(files, &format!("/usr/share/doc/{name}/copyright"))?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.starts_with("Format:") {
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some(value) = line.strip_prefix("License:") else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if !names.iter().any(|n| n == value) {
            names.push(value.to_string());
        }
    }
    names.sort();
    (!names.is_empty()).then(|| {
        names
            .iter()
            .map(|n| crate::license::debian_to_expression(n))
            // AND binds tighter than OR: a choice stays one term.
            .map(|e| match e.contains(" OR ") {
                true => format!("({e})"),
                false => e,
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::put;
    use crate::files::DirFiles;

    #[test]
    fn installed_packages_with_their_files_and_licenses() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        put(
            r,
            "/var/lib/dpkg/status",
            b"Package: hello\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.10-3\n\
              Maintainer: Someone <a@b>\nDescription: hi\n more\n\n\
              Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
              Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\nVersion: 2.36-9+deb12u4\n",
        );
        put(
            r,
            "/var/lib/dpkg/info/hello.list",
            b"/.\n/usr\n/usr/bin\n/usr/bin/hello\n/etc/hello.conf\n",
        );
        put(
            r,
            "/var/lib/dpkg/info/hello.md5sums",
            b"0123456789abcdef0123456789abcdef  usr/bin/hello\n",
        );
        put(
            r,
            "/var/lib/dpkg/info/libc6:amd64.list",
            b"/lib/libc.so.6\n",
        );
        put(r, "/usr/bin/hello", b"x");
        put(r, "/etc/hello.conf", b"x");
        put(r, "/lib/libc.so.6", b"x");
        put(
            r,
            "/usr/share/doc/hello/copyright",
            b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: GPL-3+\n\nFiles: x\nLicense: public-domain\n",
        );
        put(r, "/etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n");
        let inv = crate::scan::scan(&DirFiles::new(r));
        let names: Vec<&str> = inv.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["hello", "libc6"]);
        let hello = &inv.packages[0];
        assert_eq!(
            hello.purl,
            "pkg:deb/debian/hello@2.10-3?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            hello.license.as_deref(),
            Some("GPL-3.0-or-later AND LicenseRef-public-domain")
        );
        let files: Vec<(&str, bool)> = hello
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.checksum.is_some()))
            .collect();
        assert_eq!(
            files,
            [("/etc/hello.conf", false), ("/usr/bin/hello", true)]
        );
        assert_eq!(inv.packages[1].files.len(), 1);
    }
}
