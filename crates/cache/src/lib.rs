//! Cache keys (docs/architecture.md). A step's key is the
//! hash of everything its result depends on and nothing else:
//!
//! - the previous step's key (the first step: the base image's digest, or
//!   `scratch`),
//! - the instruction after expansion,
//! - the build args and env the step can see (a RUN sees all of them; a
//!   COPY only through its expanded words),
//! - for COPY/ADD, every file read (after .dockerignore) by mode, owner and
//!   content hash, never by mtime,
//! - for COPY --from, the key of the source stage,
//! - the platform.
//!
//! The parts are kept with the cached entry, so a miss can be explained
//! against the closest earlier entry.

mod backend;
pub mod layout_cache;
pub mod registry_cache;

pub use backend::{CacheEntry, CacheError, CacheOutcome, LayerCache, MemoryCache, NewEntry};
pub use layout_cache::LayoutCache;
pub use registry_cache::RegistryCache;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// Everything a step's key is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyParts {
    /// Key of the previous step, or `image:<digest>` / `scratch` for the first.
    pub parent: String,
    /// The instruction after expansion (`RUN /bin/sh -c make`, `COPY --chown=1 a b /dst/`).
    pub instruction: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Build args visible to the step (name to value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// Image environment the step runs with (`K=V`, in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Other config the step's result depends on (USER, WORKDIR, SHELL).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Files read: path to `mode uid:gid sha256` (directories: `mode uid:gid dir`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// Key of the stage a COPY --from reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_stage: Option<String>,
}

impl KeyParts {
    /// The key: sha256 of the canonical JSON of the parts (maps are sorted).
    pub fn key(&self) -> String {
        // Serialising plain strings and maps cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }

    /// Why `self` (this build's step) does not match `cached` (the closest
    /// cached entry for the same step): one line per difference.
    pub fn explain(&self, cached: &KeyParts) -> Vec<String> {
        let mut why = Vec::new();
        if self.parent != cached.parent {
            why.push(
                if self.parent.starts_with("image:") || cached.parent.starts_with("image:") {
                    "base image digest changed".to_string()
                } else {
                    "an earlier step changed".to_string()
                },
            );
        }
        if self.instruction != cached.instruction {
            why.push(format!(
                "instruction changed (was {:?})",
                cached.instruction
            ));
        }
        if self.platform != cached.platform {
            why.push(format!(
                "platform changed ({} -> {})",
                cached.platform, self.platform
            ));
        }
        diff_maps(&self.args, &cached.args, "build arg", &mut why);
        if self.env != cached.env {
            why.push("environment changed".to_string());
        }
        diff_maps(&self.config, &cached.config, "config", &mut why);
        diff_maps(&self.files, &cached.files, "file", &mut why);
        if self.from_stage != cached.from_stage {
            why.push("the stage it copies from changed".to_string());
        }
        why
    }
}

fn diff_maps(
    now: &BTreeMap<String, String>,
    was: &BTreeMap<String, String>,
    what: &str,
    why: &mut Vec<String>,
) {
    for (k, v) in now {
        match was.get(k) {
            None => why.push(format!("{what} {k} added")),
            Some(old) if old != v => why.push(format!("{what} {k} changed")),
            Some(_) => {}
        }
    }
    for k in was.keys() {
        if !now.contains_key(k) {
            why.push(format!("{what} {k} removed"));
        }
    }
}

/// A file's part of a key: mode, owner and content, not its time.
pub fn file_part(mode: u32, uid: u64, gid: u64, content_sha256: Option<&str>) -> String {
    match content_sha256 {
        Some(sha) => format!("{mode:o} {uid}:{gid} {sha}"),
        None => format!("{mode:o} {uid}:{gid} dir"),
    }
}

/// The tag a cache entry is stored under in the cache repository.
pub fn tag_for(key: &str) -> String {
    format!("kiln-{}", &key[..key.len().min(64)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> KeyParts {
        let mut p = KeyParts {
            parent: "image:sha256:aaa".into(),
            instruction: "RUN /bin/sh -c make".into(),
            platform: "linux/amd64".into(),
            ..Default::default()
        };
        p.args.insert("VERSION".into(), "1".into());
        p.files
            .insert("src/app.py".into(), file_part(0o644, 0, 0, Some("abc")));
        p
    }

    #[test]
    fn keys_depend_on_what_matters_only() {
        let a = parts();
        assert_eq!(a.key(), parts().key(), "deterministic");
        let mut b = parts();
        b.args.insert("VERSION".into(), "2".into());
        assert_ne!(a.key(), b.key());
        assert_eq!(b.explain(&a), vec!["build arg VERSION changed"]);
        let mut c = parts();
        c.files
            .insert("src/app.py".into(), file_part(0o644, 0, 0, Some("def")));
        assert_eq!(c.explain(&a), vec!["file src/app.py changed"]);
        let mut d = parts();
        d.parent = "image:sha256:bbb".into();
        assert_eq!(d.explain(&a), vec!["base image digest changed"]);
        // mtime is not a part at all; mode and owner are.
        assert_ne!(
            file_part(0o644, 0, 0, Some("x")),
            file_part(0o755, 0, 0, Some("x"))
        );
        assert_ne!(
            file_part(0o644, 0, 0, Some("x")),
            file_part(0o644, 1, 0, Some("x"))
        );
        assert!(tag_for(&a.key()).len() <= 128);
    }

    /// Parts are framed (JSON strings, maps of strings): two steps whose
    /// parts, concatenated naively, read the same get different keys, as
    /// a Kaniko fork had to fix twice (a build arg `A=1 B` and `A=1`, `B`;
    /// an instruction that ends where an env entry begins; a file named
    /// like a file and its hash).
    #[test]
    fn keys_are_framed_so_naive_concatenations_do_not_collide() {
        let naive = |p: &KeyParts| -> String {
            let mut s = format!("{}{}", p.parent, p.instruction);
            for e in &p.env {
                s.push_str(e);
            }
            for (k, v) in &p.args {
                s.push_str(&format!("{k}={v}"));
            }
            for (k, v) in &p.files {
                s.push_str(&format!("{k}{v}"));
            }
            s + &p.platform
        };
        let base = || KeyParts {
            parent: "image:sha256:aaa".into(),
            platform: "linux/amd64".into(),
            ..Default::default()
        };
        let pairs: Vec<(KeyParts, KeyParts)> = vec![
            {
                let mut a = base();
                a.instruction = "RUN echo a".into();
                a.env = vec!["B=1".into()];
                let mut b = base();
                b.instruction = "RUN echo aB=1".into();
                (a, b)
            },
            {
                let mut a = base();
                a.args.insert("A".into(), "1B=2".into());
                let mut b = base();
                b.args.insert("A".into(), "1".into());
                b.args.insert("B".into(), "2".into());
                (a, b)
            },
            {
                let mut a = base();
                a.files.insert("ab".into(), "c".into());
                let mut b = base();
                b.files.insert("a".into(), "bc".into());
                (a, b)
            },
            {
                let mut a = base();
                a.parent = "image:sha256:aaaRUN x".into();
                let mut b = base();
                b.instruction = "RUN x".into();
                (a, b)
            },
        ];
        for (a, b) in pairs {
            assert_eq!(naive(&a), naive(&b), "the pair collides when concatenated");
            assert_ne!(a.key(), b.key(), "{a:?} and {b:?} share a key");
        }
    }
}
