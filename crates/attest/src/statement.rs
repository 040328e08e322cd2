//! in-toto statements: what an attestation layer holds, with the image's
//! manifest as its subject (named as BuildKit names it).

use serde::Serialize;
use std::collections::BTreeMap;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";
pub const SLSA_V1_PREDICATE: &str = "https://slsa.dev/provenance/v1";
pub const SLSA_V02_PREDICATE: &str = "https://slsa.dev/provenance/v0.2";

#[derive(Debug, Clone, Serialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: &'static str,
    #[serde(rename = "predicateType")]
    pub predicate_type: &'static str,
    pub subject: Vec<Subject>,
    pub predicate: serde_json::Value,
}

impl Statement {
    pub fn new(
        predicate_type: &'static str,
        subject: Vec<Subject>,
        predicate: serde_json::Value,
    ) -> Statement {
        Statement {
            kind: STATEMENT_TYPE,
            predicate_type,
            subject,
            predicate,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The subjects of a platform's image: one per name it is pushed as
/// (`pkg:docker/<name>@<tag>?platform=...`), or `_` when it has none, as
/// BuildKit's exporter names them.
pub fn subjects(names: &[String], platform: &str, manifest_digest: &str) -> Vec<Subject> {
    let hex = manifest_digest.trim_start_matches("sha256:").to_string();
    let digest = BTreeMap::from([("sha256".to_string(), hex)]);
    let mut out: Vec<Subject> = names
        .iter()
        .map(|n| Subject {
            name: docker_purl(n, Some(platform)),
            digest: digest.clone(),
        })
        .collect();
    if out.is_empty() {
        out.push(Subject {
            name: "_".into(),
            digest,
        });
    }
    out
}

/// An image reference as a `pkg:docker` purl: Docker Hub's names as
/// docker shows them (`alpine`, `user/app`), the tag as the version (else
/// the digest), the platform as a qualifier.
pub fn docker_purl(reference: &str, platform: Option<&str>) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let (name, tag) = match name.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name, None),
    };
    let familiar = name
        .strip_prefix("docker.io/")
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .map(|n| n.strip_prefix("library/").unwrap_or(n))
        .unwrap_or(name);
    let (ns, base) = match familiar.rsplit_once('/') {
        Some((ns, b)) => (Some(ns), b),
        None => (None, familiar),
    };
    let version = tag.or(digest).unwrap_or("latest");
    let mut q: Vec<(&str, &str)> = Vec::new();
    if let (Some(d), Some(_)) = (digest, tag) {
        q.push(("digest", d));
    }
    if let Some(p) = platform {
        q.push(("platform", p));
    }
    crate::package::purl("docker", ns, base, version, &q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_as_buildkit_writes_them() {
        assert_eq!(
            docker_purl("127.0.0.1:5000/app:min", Some("linux/amd64")),
            "pkg:docker/127.0.0.1%3A5000/app@min?platform=linux%2Famd64"
        );
        assert_eq!(
            docker_purl("docker.io/library/alpine:3", None),
            "pkg:docker/alpine@3"
        );
        assert_eq!(
            docker_purl("reg/a/b@sha256:ab", None),
            "pkg:docker/reg/a/b@sha256%3Aab"
        );
    }
}
