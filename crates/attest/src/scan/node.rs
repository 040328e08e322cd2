//! Node: every `node_modules/<name>/package.json` and
//! `node_modules/@scope/<name>/package.json` (the installed packages, not
//! the application's own manifest or files deeper in a package).

use super::read;
use crate::files::ImageFiles;
use crate::package::{purl, Ecosystem, Package};

/// Whether `path` is an installed package's manifest.
pub fn is_package_manifest(path: &str) -> bool {
    let Some(dir) = path.strip_suffix("/package.json") else {
        return false;
    };
    let Some((before, name)) = dir.rsplit_once('/') else {
        return false;
    };
    if before.ends_with("/node_modules") {
        return !name.starts_with('@') && !name.starts_with('.');
    }
    match before.rsplit_once('/') {
        Some((nm, scope)) => nm.ends_with("/node_modules") && scope.starts_with('@'),
        None => false,
    }
}

pub fn scan(files: &dyn ImageFiles, manifests: &[String]) -> Vec<Package> {
    let mut out = Vec::new();
    for path in manifests {
        let Some(bytes) = read(files, path) else {
            continue;
        };
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            tracing::warn!("sbom: {path} is not JSON");
            continue;
        };
        let (Some(full), Some(version)) = (json["name"].as_str(), json["version"].as_str()) else {
            continue;
        };
        let (scope, name) = match full.split_once('/') {
            Some((s, n)) if s.starts_with('@') => (Some(s), n),
            _ => (None, full),
        };
        let license = match &json["license"] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => {
                o.get("type").and_then(|t| t.as_str()).map(String::from)
            }
            _ => None,
        };
        let supplier = match &json["author"] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => {
                o.get("name").and_then(|t| t.as_str()).map(String::from)
            }
            _ => None,
        };
        out.push(Package {
            ecosystem: Ecosystem::Npm,
            name: full.to_string(),
            version: version.to_string(),
            purl: purl("npm", scope, name, version, &[]),
            license,
            supplier,
            found_in: path.clone(),
            files: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::testing::put;

    #[test]
    fn installed_packages_only() {
        assert!(is_package_manifest(
            "/app/node_modules/left-pad/package.json"
        ));
        assert!(is_package_manifest(
            "/app/node_modules/@types/node/package.json"
        ));
        assert!(!is_package_manifest("/app/package.json"));
        assert!(!is_package_manifest(
            "/app/node_modules/left-pad/lib/package.json"
        ));
        let d = tempfile::tempdir().unwrap();
        put(
            d.path(),
            "/app/node_modules/@types/node/package.json",
            br#"{"name":"@types/node","version":"20.1.0","license":"MIT"}"#,
        );
        put(
            d.path(),
            "/app/package.json",
            br#"{"name":"app","version":"1.0.0"}"#,
        );
        let inv = crate::scan::scan(&crate::files::DirFiles::new(d.path()));
        assert_eq!(inv.packages.len(), 1);
        assert_eq!(inv.packages[0].purl, "pkg:npm/%40types/node@20.1.0");
    }
}
