//! Python: each installed distribution's `*.dist-info/METADATA` (or
//! `*.egg-info/PKG-INFO`, or an `.egg-info` file), and the files its
//! `RECORD` lists with their SHA-256.

use super::{field, paragraphs, read};
use crate::files::ImageFiles;
use crate::package::{purl, Ecosystem, OwnedFile, Package};

pub fn scan(files: &dyn ImageFiles, metadata: &[String]) -> Vec<Package> {
    let mut out = Vec::new();
    for path in metadata {
        let Some(bytes) = read(files, path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        // The headers end at the first blank line (the description follows).
        let Some(head) = paragraphs(&text).into_iter().next() else {
            continue;
        };
        let (Some(name), Some(version)) = (field(&head, "Name"), field(&head, "Version")) else {
            continue;
        };
        let license = field(&head, "License-Expression")
            .map(String::from)
            .or_else(|| {
                field(&head, "License")
                    .filter(|l| !l.contains('\n') && l.len() < 100 && *l != "UNKNOWN")
                    .map(String::from)
            })
            .or_else(|| classifier_license(&head));
        out.push(Package {
            ecosystem: Ecosystem::Python,
            name: name.to_string(),
            version: version.to_string(),
            // PyPI names compare lowercased, runs of -_. as one dash.
            purl: purl("pypi", None, &normalise(name), version, &[]),
            license,
            supplier: field(&head, "Author").map(String::from),
            found_in: path.clone(),
            files: record(files, path),
        });
    }
    out
}

fn normalise(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `Classifier: License :: OSI Approved :: MIT License` and the like.
fn classifier_license(head: &[(String, String)]) -> Option<String> {
    let found: Vec<&str> = head
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Classifier"))
        .filter_map(|(_, v)| v.strip_prefix("License ::"))
        .filter_map(|v| v.rsplit("::").next())
        .map(str::trim)
        .collect();
    (!found.is_empty()).then(|| found.join(" AND "))
}

/// The files `RECORD` beside METADATA lists (paths relative to the folder
/// holding the dist-info), with `sha256=<urlsafe base64>` as hex.
fn record(files: &dyn ImageFiles, metadata: &str) -> Vec<OwnedFile> {
    let Some(dist_info) = metadata.strip_suffix("/METADATA") else {
        return Vec::new();
    };
    let Some(bytes) = read(files, &format!("{dist_info}/RECORD")) else {
        return Vec::new();
    };
    let site = crate::files::parent(dist_info);
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(&bytes).lines() {
        let mut cols = line.rsplitn(3, ',');
        let (_size, hash, path) = (cols.next(), cols.next(), cols.next());
        let Some(path) = path.map(|p| p.trim_matches('"')) else {
            continue;
        };
        let full = normalise_path(&format!("{site}/{path}"));
        let checksum = hash
            .and_then(|h| h.strip_prefix("sha256="))
            .and_then(|b| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(b.trim_end_matches('='))
                    .ok()
            })
            .map(|raw| ("SHA256", hex::encode(raw)));
        out.push(OwnedFile {
            path: full,
            checksum,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn normalise_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::super::testing::put;
    use crate::files::DirFiles;

    #[test]
    fn dist_info_with_record() {
        let d = tempfile::tempdir().unwrap();
        let sp = "/usr/lib/python3/dist-packages";
        put(
            d.path(),
            &format!("{sp}/Flask_Thing-2.0.1.dist-info/METADATA"),
            b"Metadata-Version: 2.1\nName: Flask_Thing\nVersion: 2.0.1\nClassifier: License :: OSI Approved :: BSD License\n\nLong text: not a header\n",
        );
        put(
            d.path(),
            &format!("{sp}/Flask_Thing-2.0.1.dist-info/RECORD"),
            b"flask_thing/__init__.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\nflask_thing-2.0.1.dist-info/RECORD,,\n../../../bin/flask,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n",
        );
        let inv = crate::scan::scan(&DirFiles::new(d.path()));
        let p = &inv.packages[0];
        assert_eq!(p.purl, "pkg:pypi/flask-thing@2.0.1");
        assert_eq!(p.license.as_deref(), Some("BSD License"));
        let paths: Vec<&str> = p.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/usr/bin/flask",
                "/usr/lib/python3/dist-packages/flask_thing-2.0.1.dist-info/RECORD",
                "/usr/lib/python3/dist-packages/flask_thing/__init__.py"
            ]
        );
        assert_eq!(
            p.files[0].checksum.as_ref().unwrap().1,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
