//! Executables that say what they were built from: Go binaries (the
//! build info in `.go.buildinfo`: main module and dependencies) and Rust
//! binaries built with cargo-auditable (`.dep-v0`: zlib-compressed JSON
//! of the dependency tree). Only the ELF headers and these sections are
//! read.

use crate::files::ImageFiles;
use crate::package::{purl, Ecosystem, Package};
use std::io::Read;

const GO: &str = ".go.buildinfo";
const CARGO: &str = ".dep-v0";

pub fn scan(files: &dyn ImageFiles, executables: &[String]) -> Vec<Package> {
    let mut out = Vec::new();
    for path in executables {
        let Ok(mut f) = files.open(path) else {
            continue;
        };
        let sections = match super::elf::find_sections(&mut *f, &[GO, CARGO]) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!("sbom: reading {path} as ELF: {e}");
                continue;
            }
        };
        if let Some(Some(info)) = sections.first() {
            out.extend(go_modules(info, path));
        }
        if let Some(Some(deps)) = sections.get(1) {
            out.extend(cargo_packages(deps, path));
        }
    }
    out
}

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Go 1.18+'s inline build info: magic, pointer size, flags (bit 2:
/// strings inline), then the Go version and the module info, each a
/// varint length and bytes.
fn go_modules(info: &[u8], path: &str) -> Vec<Package> {
    if info.len() < 32 || &info[..14] != b"\xff Go buildinf:" {
        return Vec::new();
    }
    if info[15] & 2 == 0 {
        tracing::debug!("sbom: {path}: Go build info from before Go 1.18 is not read");
        return Vec::new();
    }
    let mut rest = &info[32..];
    let mut strings: Vec<&[u8]> = Vec::new();
    for _ in 0..2 {
        let Some((len, n)) = varint(rest) else {
            return Vec::new();
        };
        let Some(s) = rest.get(n..n.saturating_add(len as usize)) else {
            return Vec::new();
        };
        strings.push(s);
        rest = &rest[n + len as usize..];
    }
    let mut raw = strings[1];
    // Sixteen bytes of sentinel on each side (not text: cut as bytes).
    if raw.len() >= 33 && raw[raw.len() - 17] == b'\n' {
        raw = &raw[16..raw.len() - 16];
    }
    let modinfo = String::from_utf8_lossy(raw);
    let version = String::from_utf8_lossy(strings[0]);
    let mut mods: Vec<(String, String)> = Vec::new();
    // The toolchain's standard library, as syft lists it (what a Go
    // vulnerability in the runtime or net/http is matched against).
    if let Some(v) = version.strip_prefix("go") {
        let v = v.split([' ', '-']).next().unwrap_or(v);
        mods.push(("stdlib".into(), v.to_string()));
    }
    let mut main_path = None;
    for line in modinfo.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        match cols.as_slice() {
            ["path", p, ..] => main_path = Some(p.to_string()),
            ["mod", m, v, ..] => {
                main_path = None;
                mods.push((m.to_string(), v.to_string()))
            }
            ["dep", m, v, ..] => mods.push((m.to_string(), v.to_string())),
            ["=>", m, v, ..] => {
                if let Some(last) = mods.last_mut() {
                    *last = (m.to_string(), v.to_string());
                }
            }
            _ => {}
        }
    }
    // Built outside module mode (GOPATH, as distributions often build):
    // no `mod` line, the main package's path names the program.
    if let Some(p) = main_path {
        mods.push((p, String::new()));
    }
    mods.into_iter()
        .map(|(module, version)| {
            let (ns, name) = module
                .rsplit_once('/')
                .map_or((None, module.as_str()), |(a, b)| (Some(a), b));
            let version = if version == "(devel)" {
                String::new()
            } else {
                version
            };
            Package {
                ecosystem: Ecosystem::Go,
                purl: purl("golang", ns, name, &version, &[]),
                name: module.clone(),
                version,
                license: None,
                supplier: None,
                found_in: path.to_string(),
                files: Vec::new(),
            }
        })
        .collect()
}

/// cargo-auditable's `{"packages":[{"name","version","source",...}]}`.
fn cargo_packages(compressed: &[u8], path: &str) -> Vec<Package> {
    let mut json = Vec::new();
    if flate2::read::ZlibDecoder::new(compressed)
        .take(8 << 20)
        .read_to_end(&mut json)
        .is_err()
    {
        tracing::warn!("sbom: {path}: {CARGO} is not zlib data");
        return Vec::new();
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&json) else {
        tracing::warn!("sbom: {path}: {CARGO} is not JSON");
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in v["packages"].as_array().into_iter().flatten() {
        let (Some(name), Some(version)) = (p["name"].as_str(), p["version"].as_str()) else {
            continue;
        };
        if p["kind"].as_str() == Some("build") {
            continue;
        }
        out.push(Package {
            ecosystem: Ecosystem::Cargo,
            name: name.into(),
            version: version.into(),
            purl: purl("cargo", None, name, version, &[]),
            license: None,
            supplier: None,
            found_in: path.to_string(),
            files: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::scan::elf::build_elf64;
    use crate::scan::testing::put;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn go_buildinfo(version: &str, modinfo: &str) -> Vec<u8> {
        let mut b = b"\xff Go buildinf:".to_vec();
        b.extend([8, 2]);
        b.resize(32, 0);
        // Go's sentinels, which are not UTF-8 (runtime/debug's modinfo).
        let start = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6";
        let end = b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2";
        let wrapped = [&start[..], modinfo.as_bytes(), &end[..]].concat();
        for s in [version.as_bytes(), wrapped.as_slice()] {
            b.push(s.len() as u8); // < 128: one byte
            b.extend(s);
        }
        b
    }

    #[test]
    fn go_and_cargo_auditable_binaries() {
        let d = tempfile::tempdir().unwrap();
        let modinfo = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgithub.com/pkg/errors\tv0.9.1\th1:x=\n";
        let go = build_elf64(&[
            (".text", b"code"),
            (".go.buildinfo", &go_buildinfo("go1.22.1", modinfo)),
        ]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(br#"{"packages":[{"name":"app","version":"0.1.0","source":"local","root":true},{"name":"serde","version":"1.0.200","source":"crates.io"},{"name":"cc","version":"1.0.0","source":"crates.io","kind":"build"}]}"#).unwrap();
        let rust = build_elf64(&[(".dep-v0", &z.finish().unwrap())]);
        // As Debian builds Go programs: no module lines, a path.
        let gopath_info = "path\texample.com/gopath-app\nbuild\t-compiler=gc\n";
        let gopath = build_elf64(&[(".go.buildinfo", &go_buildinfo("go1.19.8", gopath_info))]);
        for (p, bytes) in [
            ("/usr/bin/goapp", &go),
            ("/usr/bin/rustapp", &rust),
            ("/usr/bin/gopath", &gopath),
        ] {
            put(d.path(), p, bytes);
            let host = d.path().join(p.trim_start_matches('/'));
            std::fs::set_permissions(host, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let inv = crate::scan::scan(&crate::files::DirFiles::new(d.path()));
        let purls: Vec<&str> = inv.packages.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            [
                "pkg:golang/example.com/app",
                "pkg:golang/example.com/gopath-app",
                "pkg:golang/github.com/pkg/errors@v0.9.1",
                "pkg:golang/stdlib@1.19.8",
                "pkg:golang/stdlib@1.22.1",
                "pkg:cargo/app@0.1.0",
                "pkg:cargo/serde@1.0.200"
            ]
        );
    }
}
