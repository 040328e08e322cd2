//! `/etc/os-release` (or `/usr/lib/os-release`): the distribution, which
//! names OS packages' purl namespace and distro qualifier.

use crate::files::{resolve, ImageFiles};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsRelease {
    /// `ID` (debian, alpine, ...).
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
}

pub fn read(files: &dyn ImageFiles) -> Option<OsRelease> {
    for candidate in ["/etc/os-release", "/usr/lib/os-release"] {
        let Some(path) = resolve(files, candidate) else {
            continue;
        };
        let Some(bytes) = super::read(files, &path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut os = OsRelease::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
            match k.trim() {
                "ID" => os.id = v,
                "VERSION_ID" => os.version_id = v,
                "PRETTY_NAME" => os.pretty_name = v,
                _ => {}
            }
        }
        if !os.id.is_empty() {
            return Some(os);
        }
    }
    None
}
