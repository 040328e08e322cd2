//! What a step read, as the inputs of its cache key: the context files it
//! copies or mounts (mode, owner, content digest), heredocs, URLs and git
//! commits, the stage it reads. Made by the step's own `resolve`, from
//! what it resolved.

use crate::source::{SourceError, SourceItem};
use kiln_cache::file_part;
use kiln_layer::{Content, FileKind};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// What the step read, beyond its stage (parent key, platform, env,
/// USER, WORKDIR, SHELL) and its words: the key's `files` and
/// `from_stage`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Inputs {
    /// Path to `mode uid:gid sha256` (directories: `mode uid:gid dir`,
    /// heredocs: their digest, git sources: `git <commit>`).
    pub files: BTreeMap<String, String>,
    /// The key of the stage a `COPY --from` reads.
    pub from_stage: Option<String>,
}

/// Each entry's mode, owner and content as key inputs, by path.
pub(crate) fn insert_entries(inputs: &mut Inputs, items: &[SourceItem]) -> Result<(), SourceError> {
    insert_entries_under(inputs, "", items)
}

/// [`insert_entries`] with `prefix` before each path. A file that cannot
/// be read is an error: a key without its content would be wrong.
pub(crate) fn insert_entries_under(
    inputs: &mut Inputs,
    prefix: &str,
    items: &[SourceItem],
) -> Result<(), SourceError> {
    for item in items {
        for e in &item.entries {
            let path = if e.rel.is_empty() {
                item.path.clone()
            } else {
                format!("{}/{}", item.path, e.rel)
            };
            let value = match &e.kind {
                FileKind::File { content, .. } => {
                    let sha = match content {
                        Content::Path(p) => sha256_file(p)?,
                        Content::Bytes(b) => hex::encode(Sha256::digest(b.as_slice())),
                    };
                    file_part(e.mode, e.uid, e.gid, Some(&sha))
                }
                FileKind::Symlink(t) => file_part(e.mode, e.uid, e.gid, Some(&format!("-> {t}"))),
                FileKind::Dir => file_part(e.mode, e.uid, e.gid, None),
                other => file_part(e.mode, e.uid, e.gid, Some(&format!("{other:?}"))),
            };
            inputs.files.insert(format!("{prefix}{path}"), value);
        }
        // COPY --parents: the directories leading to the source are copied
        // with their modes.
        for d in &item.parents {
            inputs.files.insert(
                format!("{prefix}{} (parent {})", item.path, d.rel),
                file_part(d.mode, d.uid, d.gid, None),
            );
        }
    }
    Ok(())
}

fn sha256_file(path: &std::path::Path) -> Result<String, SourceError> {
    let read = |source| SourceError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(read)?;
    Ok(hex::encode(h.finalize()))
}
