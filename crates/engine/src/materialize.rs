//! Writing the image's file system out as a real directory tree, for the
//! steps that run commands in it. Owners, modes, times, xattrs, hard links
//! and (where permitted) device nodes are as the image says.

use crate::fstree::{FileKind, FsTree};
use kiln_layer::apply::make_node;
use kiln_layer::Content;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writing a path of the tree failed.
#[derive(Debug, thiserror::Error)]
#[error("writing the stage's root: {path}")]
pub struct MaterializeError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Materialize `tree` under `root` (which must not exist yet).
pub fn materialize(tree: &FsTree, root: &Path) -> Result<(), MaterializeError> {
    write_paths(tree, root, &tree.paths(), &|_| false)
}

/// Write the tree's `paths` (parents first) under `root`, over what is
/// there, leaving out what `skip` names (and everything below it).
pub fn write_paths(
    tree: &FsTree,
    root: &Path,
    paths: &[impl AsRef<str>],
    skip: &dyn Fn(&str) -> bool,
) -> Result<(), MaterializeError> {
    std::fs::create_dir_all(root).map_err(|source| MaterializeError {
        path: root.display().to_string(),
        source,
    })?;
    let mut first_of_inode: HashMap<crate::fstree::Inode, PathBuf> = HashMap::new();
    let mut dirs: Vec<(PathBuf, u32, i64)> = Vec::new();
    let mut chown_failed = 0usize;
    let mut nodes_failed = 0usize;
    for path in paths {
        let path = path.as_ref();
        let Some(node) = tree.get(path) else {
            continue;
        };
        if skip(path) {
            continue;
        }
        let dest = if path == "/" {
            root.to_path_buf()
        } else {
            root.join(path.trim_start_matches('/'))
        };
        let io = |source: std::io::Error| MaterializeError {
            path: path.to_string(),
            source,
        };
        match &node.kind {
            FileKind::Dir => {
                match std::fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        std::fs::remove_file(&dest).map_err(io)?;
                        std::fs::create_dir(&dest).map_err(io)?;
                    }
                    Err(_) => std::fs::create_dir(&dest).map_err(io)?,
                }
                // Writable for now; the real mode is set when done.
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                    .map_err(io)?;
                dirs.push((dest.clone(), node.mode, node.mtime));
            }
            FileKind::File { content, .. } => {
                remove_existing(&dest).map_err(io)?;
                if let Some(first) = first_of_inode.get(&node.inode) {
                    std::fs::hard_link(first, &dest).map_err(io)?;
                    continue;
                }
                match content {
                    Content::Path(src) => {
                        std::fs::copy(src, &dest).map_err(io)?;
                    }
                    Content::Bytes(b) => std::fs::write(&dest, b.as_slice()).map_err(io)?,
                }
                first_of_inode.insert(node.inode, dest.clone());
            }
            FileKind::Symlink(target) => {
                remove_existing(&dest).map_err(io)?;
                std::os::unix::fs::symlink(target, &dest).map_err(io)?
            }
            // A tree shares inodes instead (handled with files above).
            FileKind::Hardlink(_) => continue,
            FileKind::Fifo | FileKind::CharDevice { .. } | FileKind::BlockDevice { .. } => {
                remove_existing(&dest).map_err(io)?;
                if make_node(&dest, &node.kind, node.mode).is_err() {
                    nodes_failed += 1;
                    continue;
                }
            }
        }
        if std::os::unix::fs::lchown(&dest, Some(node.uid as u32), Some(node.gid as u32)).is_err() {
            chown_failed += 1;
        }
        if !matches!(node.kind, FileKind::Symlink(_)) {
            for (k, v) in node.xattrs.iter() {
                let _ = xattr::set(&dest, k, v);
            }
        }
        if !matches!(node.kind, FileKind::Symlink(_) | FileKind::Dir) {
            // After chown, which clears setuid bits.
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(node.mode))
                .map_err(io)?;
        }
        set_mtime(&dest, node.mtime);
    }
    // Directories last, deepest first: their times and modes stay.
    for (dir, mode, mtime) in dirs.iter().rev() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(*mode)).map_err(
            |source| MaterializeError {
                path: dir.display().to_string(),
                source,
            },
        )?;
        set_mtime(dir, *mtime);
    }
    if chown_failed > 0 {
        tracing::warn!("{chown_failed} files could not be given their owners here (IDs not mapped); steps see them as root's");
    }
    if nodes_failed > 0 {
        tracing::warn!(
            "{nodes_failed} device nodes could not be created here; they stay in the image"
        );
    }
    Ok(())
}

/// Remove what stands at `path` (a directory with its contents), if anything.
pub(crate) fn remove_existing(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Set a path's mtime (and atime) without following a final symlink.
pub fn set_mtime(path: &Path, mtime: i64) {
    kiln_layer::apply::set_times(path, mtime);
}
