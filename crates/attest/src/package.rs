//! What a scanner finds: packages with their package URL (purl), license
//! as the package states it, and the files its database says it owns.

/// Where a package comes from; each has its purl type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ecosystem {
    Deb,
    Apk,
    Rpm,
    Python,
    Npm,
    Go,
    Cargo,
    Maven,
}

impl Ecosystem {
    /// The purl type.
    pub fn purl_type(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Rpm => "rpm",
            Ecosystem::Python => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "golang",
            Ecosystem::Cargo => "cargo",
            Ecosystem::Maven => "maven",
        }
    }
}

/// A file a package owns, with the digest its database records (never
/// computed: the scan reads databases, not every file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFile {
    pub path: String,
    /// (SPDX algorithm name, lowercase hex).
    pub checksum: Option<(&'static str, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    pub purl: String,
    /// The license as the package states it (not yet an SPDX expression).
    pub license: Option<String>,
    /// Who made or packaged it, as the database says.
    pub supplier: Option<String>,
    /// The database or manifest it was read from.
    pub found_in: String,
    pub files: Vec<OwnedFile>,
}

/// Percent-encodes a purl component: everything but unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS` with each part encoded
/// (namespace segments one by one) and qualifiers in the order given.
pub fn purl(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
) -> String {
    let mut out = format!("pkg:{kind}/");
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        for seg in ns.split('/').filter(|s| !s.is_empty()) {
            out.push_str(&encode(seg));
            out.push('/');
        }
    }
    out.push_str(&encode(name));
    if !version.is_empty() {
        out.push('@');
        out.push_str(&encode(version));
    }
    let q: Vec<String> = qualifiers
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if !q.is_empty() {
        out.push('?');
        out.push_str(&q.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_encode_each_part() {
        assert_eq!(
            purl(
                "deb",
                Some("debian"),
                "libc6",
                "1:2.36-9+deb12u4",
                &[("arch", "amd64"), ("distro", "debian-12")]
            ),
            "pkg:deb/debian/libc6@1%3A2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            purl("npm", Some("@types"), "node", "1.0.0", &[]),
            "pkg:npm/%40types/node@1.0.0"
        );
        assert_eq!(
            purl("golang", Some("github.com/pkg"), "errors", "v0.9.1", &[]),
            "pkg:golang/github.com/pkg/errors@v0.9.1"
        );
    }
}
