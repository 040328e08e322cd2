//! Image references normalised as docker does: `debian` is
//! `docker.io/library/debian:latest`; a first component with a `.` or `:`
//! (or `localhost`) is a registry; a digest pins the content.

use std::fmt;

pub const DOCKER_HUB: &str = "docker.io";
/// The host docker.io's API answers on.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host[:port], `docker.io` for Docker Hub.
    pub registry: String,
    /// Repository path (`library/debian`).
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let (algo, hex) = d
                    .split_once(':')
                    .ok_or_else(|| err("digest must be algorithm:hex"))?;
                if algo != "sha256"
                    || hex.len() != 64
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    return Err(err("digest must be sha256:<64 lower-case hex digits>"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (registry, remainder) = match rest.split_once('/') {
            Some((first, after))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), after.to_string())
            }
            _ => (DOCKER_HUB.to_string(), rest.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let (path, tag) = match remainder.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p.to_string(), Some(t.to_string())),
            _ => (remainder.clone(), None),
        };
        if let Some(t) = &tag {
            let valid = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !valid {
                return Err(err("invalid tag"));
            }
        }
        if path.is_empty() {
            return Err(err("no repository"));
        }
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(err("repository components must be lower-case letters, digits and separators (. _ __ -)"));
            }
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Host to talk to for this registry.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What the manifest is fetched by: the digest if pinned, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository and tag on another registry (a mirror); a mirror
    /// given with a path (`mirror.example/hub`) prefixes the repository.
    pub fn on_registry(&self, mirror: &str) -> Reference {
        let mirror = mirror.trim_end_matches('/');
        let mirror = mirror
            .strip_prefix("https://")
            .or_else(|| mirror.strip_prefix("http://"))
            .unwrap_or(mirror);
        let (host, prefix) = match mirror.split_once('/') {
            Some((h, p)) => (h.to_string(), Some(p.to_string())),
            None => (mirror.to_string(), None),
        };
        Reference {
            registry: host,
            repository: match prefix {
                Some(p) => format!("{p}/{}", self.repository),
                None => self.repository.clone(),
            },
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        }
    }

    /// The repository alone, no tag or digest (what manifests are pushed
    /// to by digest).
    pub fn repository_only(&self) -> Reference {
        Reference {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository at another digest.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_lowercase() && !b[0].is_ascii_digit() {
        return false;
    }
    if !b[b.len() - 1].is_ascii_lowercase() && !b[b.len() - 1].is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        // Separators: one '.', one or two '_', or any number of '-'.
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(p("debian"), "docker.io/library/debian:latest");
        assert_eq!(p("debian:bookworm"), "docker.io/library/debian:bookworm");
        assert_eq!(p("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            p("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(p("localhost/app"), "localhost/app:latest");
        assert_eq!(p("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000/a/b:v1");
        assert_eq!(p("quay.io/x/y:1.2-rc"), "quay.io/x/y:1.2-rc");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            p(&format!("debian@{d}")),
            format!("docker.io/library/debian@{d}")
        );
        assert_eq!(
            p(&format!("r.io:5000/x:t@{d}")),
            format!("r.io:5000/x:t@{d}")
        );
        let r = Reference::parse("debian").unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.manifest_ref(), "latest");
        assert_eq!(
            r.on_registry("mirror.gcr.io").to_string(),
            "mirror.gcr.io/library/debian:latest"
        );
        assert_eq!(
            r.on_registry("https://m.example/hub/").to_string(),
            "m.example/hub/library/debian:latest"
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Debian",
            "a//b",
            "x:",
            "a@sha256:12",
            "-a",
            "a..b",
            "r.io/UP/x",
            ":tag",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
