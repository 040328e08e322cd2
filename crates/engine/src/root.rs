//! The stage's root on disk for the executors that take a directory: the
//! tree written out once (in the step's directory, or over the fixed root
//! of in-place mode), then kept in step with COPY/ADD/WORKDIR; and, for
//! in-place mode, the files earlier steps left in the root moved aside
//! before the root is cleared for another stage.

use crate::fstree::{FileKind, FsTree};
use crate::materialize::{remove_existing, write_paths, MaterializeError};
use crate::stage::{Rootfs, StageState};
use kiln_layer::Content;
use kiln_sandbox::{clear_root, FixedRoot, SandboxError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Write the stage's tree out as a directory: under `step_dir`, or over
/// the fixed root (cleared first; the files it held that the tree still
/// needs are moved under `stash` first).
pub(crate) fn write_out<'s>(
    state: &'s mut StageState,
    step_dir: &Path,
    fixed: Option<&FixedRoot>,
    stash: &Path,
) -> Result<&'s Rootfs, SandboxError> {
    if state.rootfs.is_none() {
        let started = std::time::Instant::now();
        let base = match fixed {
            Some(f) => {
                stash_contents(&mut state.tree, f, stash)
                    .map_err(|e| SandboxError::io("moving files out of the root", e))?;
                clear_root(f)?;
                write_paths(&state.tree, &f.root, &state.tree.paths(), &|p| f.keeps(p))
                    .map_err(|e| SandboxError::Root(Box::new(e)))?;
                f.root.clone()
            }
            None => {
                let base = step_dir.join("rootfs");
                crate::materialize::materialize(&state.tree, &base)
                    .map_err(|e| SandboxError::Root(Box::new(e)))?;
                base
            }
        };
        tracing::debug!(
            "root: the stage's {} files written out in {:.3}s",
            state.tree.len(),
            started.elapsed().as_secs_f64()
        );
        state.rootfs = Some(Rootfs {
            base,
            uppers: Vec::new(),
        });
    }
    state
        .rootfs
        .as_ref()
        .ok_or_else(|| SandboxError::Setup("no root file system".into()))
}

/// A step other than RUN changed the tree: bring a written-out root up to
/// date (only what changed), or drop it when overlay upper directories sit
/// on it (the next RUN writes it out again).
pub(crate) fn refresh(
    state: &mut StageState,
    changed: &[String],
    deleted: &[String],
    fixed: Option<&FixedRoot>,
) -> Result<(), MaterializeError> {
    let Some(fs) = &state.rootfs else {
        return Ok(());
    };
    if !fs.uppers.is_empty() {
        state.rootfs = None;
        return Ok(());
    }
    let base = fs.base.clone();
    let keeps = |p: &str| fixed.is_some_and(|f| f.keeps(p));
    for d in deleted.iter().filter(|d| !keeps(d)) {
        remove_existing(&base.join(d.trim_start_matches('/'))).map_err(|source| {
            MaterializeError {
                path: d.clone(),
                source,
            }
        })?;
    }
    write_paths(&state.tree, &base, changed, &keeps)
}

/// Copy the files the tree reads from inside the fixed root (written there
/// by earlier steps) to `stash`, so clearing the root loses none of them.
pub(crate) fn stash_contents(
    tree: &mut FsTree,
    fixed: &FixedRoot,
    stash: &Path,
) -> std::io::Result<usize> {
    let inside: Vec<(String, PathBuf)> = tree
        .iter()
        .filter_map(|(path, node)| match &node.kind {
            FileKind::File {
                content: Content::Path(src),
                ..
            } if src.starts_with(&fixed.root) && !fixed.keeps(&src.to_string_lossy()) => {
                Some((path.to_string(), src.clone()))
            }
            _ => None,
        })
        .collect();
    if inside.is_empty() {
        return Ok(0);
    }
    std::fs::create_dir_all(stash)?;
    let mut moved: HashMap<PathBuf, PathBuf> = HashMap::new();
    for (path, src) in &inside {
        let dest = match moved.get(src) {
            Some(d) => d.clone(),
            None => {
                let d = stash.join(format!("{}-{}", std::process::id(), moved.len()));
                std::fs::copy(src, &d)?;
                moved.insert(src.clone(), d.clone());
                d
            }
        };
        tree.move_content(path, dest);
    }
    Ok(moved.len())
}
