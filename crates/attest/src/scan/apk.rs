//! apk: `/lib/apk/db/installed`, one paragraph per package (`P:` name,
//! `V:` version, `A:` arch, `L:` license, `m:` maintainer, `F:` folder,
//! `R:` file in it, `Z:` that file's SHA-1 as `Q1<base64>`).

use super::{distro, read, OsRelease};
use crate::files::ImageFiles;
use crate::package::{purl, Ecosystem, OwnedFile, Package};

const DB: &str = "/lib/apk/db/installed";

pub fn scan(files: &dyn ImageFiles, os: Option<&OsRelease>) -> Vec<Package> {
    let Some(bytes) = read(files, DB) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut license, mut maint) =
            (None, None, "", None, None);
        let mut dir = String::new();
        let mut owned: Vec<OwnedFile> = Vec::new();
        for line in para.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k {
                "P" => name = Some(v),
                "V" => version = Some(v),
                "A" => arch = v,
                "L" => license = Some(v.to_string()),
                "m" => maint = Some(v.to_string()),
                "F" => dir = v.to_string(),
                "R" => owned.push(OwnedFile {
                    path: format!("/{}", [dir.as_str(), v].join("/").trim_start_matches('/')),
                    checksum: None,
                }),
                "Z" => {
                    if let (Some(last), Some(hex)) = (owned.last_mut(), q1_to_hex(v)) {
                        last.checksum = Some(("SHA1", hex));
                    }
                }
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else {
            continue;
        };
        let namespace = os.map(|o| o.id.as_str()).unwrap_or("alpine");
        owned.sort_by(|a, b| a.path.cmp(&b.path));
        out.push(Package {
            ecosystem: Ecosystem::Apk,
            name: name.into(),
            version: version.into(),
            purl: purl(
                "apk",
                Some(namespace),
                name,
                version,
                &[("arch", arch), ("distro", &distro(os))],
            ),
            license,
            supplier: maint,
            found_in: DB.into(),
            files: owned,
        });
    }
    out
}

/// `Q1<base64 of a SHA-1>` to hex.
fn q1_to_hex(v: &str) -> Option<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Q1")?)
        .ok()?;
    (raw.len() == 20).then(|| hex::encode(raw))
}

#[cfg(test)]
mod tests {
    use super::super::testing::put;
    use crate::files::DirFiles;

    #[test]
    fn packages_files_and_sha1s() {
        let d = tempfile::tempdir().unwrap();
        put(
            d.path(),
            "/lib/apk/db/installed",
            b"C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\nF:lib\nR:ld-musl-x86_64.so.1\nZ:Q1qhS4fBk3tKPo/ng3LbO1YUSfcDY=\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\nL:GPL-2.0-only\nF:bin\nR:busybox\n\n",
        );
        put(
            d.path(),
            "/etc/os-release",
            b"ID=alpine\nVERSION_ID=3.19.1\n",
        );
        let inv = crate::scan::scan(&DirFiles::new(d.path()));
        let musl = inv.packages.iter().find(|p| p.name == "musl").unwrap();
        assert_eq!(
            musl.purl,
            "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.1"
        );
        assert_eq!(musl.files[0].path, "/lib/ld-musl-x86_64.so.1");
        assert_eq!(
            musl.files[0].checksum,
            Some(("SHA1", "aa14b87c1937b4a3e8fe78372db3b561449f7036".into()))
        );
        assert_eq!(inv.packages.len(), 2);
    }
}
