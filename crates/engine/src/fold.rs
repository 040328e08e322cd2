//! Folding a step's changes (from the executor's snapshot) into the
//! stage's tree; copy-ups whose content and metadata did not change are
//! dropped, so they never reach the layer.

use crate::fstree::{FileKind, FsTree, Node};
use kiln_layer::Content;
use kiln_snapshot::{Change, Meta};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// Fold a step's changes into the tree; copies that changed nothing are
/// dropped.
pub(crate) fn apply_changes(
    tree: &mut FsTree,
    changes: Vec<Change>,
) -> Result<(), crate::fstree::TreeError> {
    let mut inodes: HashMap<(u64, u64), crate::fstree::Inode> = HashMap::new();
    for change in changes {
        match change {
            Change::Deleted(p) => tree.remove(&p),
            Change::Opaque(p) => tree.clear_dir(&p),
            Change::Upsert(p, meta) => {
                if let Some(old) = tree.get(&p) {
                    if unchanged(&old, &meta) {
                        continue;
                    }
                }
                let inode = match meta.link_key {
                    Some(k) => *inodes.entry(k).or_insert_with(|| tree.new_inode()),
                    None => tree.new_inode(),
                };
                let node = Node {
                    kind: meta.kind.clone(),
                    mode: meta.mode,
                    uid: meta.uid,
                    gid: meta.gid,
                    mtime: meta.mtime,
                    xattrs: meta.xattrs.clone().into(),
                    inode,
                };
                match tree.get(&p) {
                    Some(old) if old.is_dir() && node.is_dir() => {
                        tree.update(&p, |n| {
                            n.mode = node.mode;
                            n.uid = node.uid;
                            n.gid = node.gid;
                            n.mtime = node.mtime;
                            n.xattrs = node.xattrs.clone();
                        });
                    }
                    Some(old) if old.is_dir() => {
                        tree.remove(&p);
                        tree.insert(&p, node)?;
                    }
                    _ => tree.insert(&p, node)?,
                }
            }
        }
    }
    Ok(())
}

/// A copy-up (or a touched entry) identical to what the tree has.
fn unchanged(old: &Node, meta: &Meta) -> bool {
    if old.mode != meta.mode
        || old.uid != meta.uid
        || old.gid != meta.gid
        || old.mtime != meta.mtime
        || !old.xattrs.same_as(&meta.xattrs)
    {
        return false;
    }
    match (&old.kind, &meta.kind) {
        (
            FileKind::File { content, size },
            FileKind::File {
                content: Content::Path(disk),
                size: s,
            },
        ) => size == s && same_content(content, disk),
        (FileKind::File { .. }, _) => false,
        (a, b) => a == b,
    }
}

fn same_content(content: &Content, disk: &Path) -> bool {
    let Ok(mut b) = std::fs::File::open(disk) else {
        return false;
    };
    let mut a: Box<dyn Read> = match content {
        Content::Path(p) => match std::fs::File::open(p) {
            Ok(f) => Box::new(f),
            Err(_) => return false,
        },
        Content::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes.as_slice().to_vec())),
    };
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    loop {
        let n = match read_full(&mut a, &mut ba) {
            Ok(n) => n,
            Err(_) => return false,
        };
        let m = match read_full(&mut b, &mut bb) {
            Ok(m) => m,
            Err(_) => return false,
        };
        if n != m || ba[..n] != bb[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}
