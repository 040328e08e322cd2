//! WORKDIR: sets the working directory and creates it (owned by the
//! current USER, as BuildKit makes it), committing a layer when it is new.

use super::StepCx;
use crate::error::BuildError;
use crate::fstree::{FileKind, Node};
use crate::ignore::clean;
use crate::stage::StageState;
use crate::users::file_owner;

/// The stage's working directory, `/` when unset.
pub(crate) fn working_dir(state: &StageState) -> String {
    match state.config.config.working_dir.as_str() {
        "" => "/".to_string(),
        wd => wd.to_string(),
    }
}

/// The working directory `WORKDIR w` (expanded) sets: absolute, clean.
pub(crate) fn resolve(state: &StageState, w: &str) -> String {
    let joined = if w.starts_with('/') {
        w.to_string()
    } else {
        format!("{}/{w}", working_dir(state))
    };
    clean(&joined)
}

/// Set and create the working directory `path` (from `resolve`).
pub fn workdir(cx: &StepCx, state: &mut StageState, path: String) -> Result<(), BuildError> {
    state.config.config.working_dir = path.clone();
    // Owned by the current USER, as BuildKit's mkdir file operation owns it.
    let (uid, gid) = file_owner(&state.tree, &state.config.config.user);
    let now = cx.build.now;
    state
        .tree
        .mkdir_all(&path, &mut |t| Node {
            kind: FileKind::Dir,
            mode: 0o755,
            uid,
            gid,
            mtime: now,
            xattrs: Default::default(),
            inode: t.new_inode(),
        })
        .map_err(|e| cx.error(e))?;
    cx.commit_and_refresh(state, format!("WORKDIR {path}"))
}
