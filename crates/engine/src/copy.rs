//! Applying COPY/ADD sources to the image tree with docker's rules: a
//! directory's contents go into the destination, a file goes into a
//! destination directory (trailing `/`, or an existing directory) or
//! becomes the destination; hard links within one COPY stay hard links.
//! ADD of a local tar archive extracts it, refusing entries that escape.

use crate::fstree::{base_name, join, parent_of, FileKind, FsTree, Node, TreeError};
use crate::ignore::clean;
use crate::source::{SourceItem, SrcEntry};
use kiln_layer::Content;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("cannot copy directory {src} to {dest}: destination is not a directory")]
    DirOntoFile { src: String, dest: String },
    #[error("cannot replace directory {0} with a file")]
    FileOntoDir(String),
    #[error("archive {archive}: {message}")]
    Archive { archive: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Ownership and mode rules of one COPY/ADD.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// `--chown`, resolved.
    pub chown: Option<(u64, u64)>,
    /// `--chmod`.
    pub chmod: Option<crate::chmod::Chmod>,
    /// Time of directories this step creates.
    pub now: i64,
}

impl CopyOptions {
    fn owner(&self, e: &SrcEntry) -> (u64, u64) {
        self.chown.unwrap_or((e.uid, e.gid))
    }

    fn new_dir(&self, tree: &mut FsTree) -> Node {
        let (uid, gid) = self.chown.unwrap_or((0, 0));
        Node {
            kind: FileKind::Dir,
            mode: 0o755,
            uid,
            gid,
            mtime: self.now,
            xattrs: Default::default(),
            inode: tree.new_inode(),
        }
    }
}

/// Copy `items` to `dest` (absolute; a trailing `/` means a directory).
pub fn copy_items(
    tree: &mut FsTree,
    items: &[SourceItem],
    dest: &str,
    opts: &CopyOptions,
) -> Result<(), CopyError> {
    let dest_is_dir = dest.ends_with('/') || dest.ends_with("/.");
    let dest = clean(dest);
    for item in items {
        // Hard links are kept within one source, as docker does; the same
        // file named twice becomes two files.
        let mut inodes: HashMap<(u64, u64), crate::fstree::Inode> = HashMap::new();
        let root = item.root();
        if matches!(root.kind, FileKind::Dir) {
            let target = tree.resolve(&dest, true)?;
            match tree.get(&target) {
                Some(n) if !n.is_dir() => {
                    return Err(CopyError::DirOntoFile {
                        src: item.path.clone(),
                        dest: dest.clone(),
                    })
                }
                Some(_) => {}
                // Docker creates the destination as a new directory (0755,
                // the --chown owner); it does not take the source's mode.
                None => {
                    tree.mkdir_all(&target, &mut |t| opts.new_dir(t))?;
                }
            }
            for e in &item.entries[1..] {
                place(tree, &join(&target, &e.rel), e, opts, &mut inodes)?;
            }
        } else {
            let resolved = tree.resolve(&dest, true)?;
            let into_dir = dest_is_dir || tree.get(&resolved).is_some_and(|n| n.is_dir());
            let target = if into_dir {
                let dir = tree.mkdir_all(&dest, &mut |t| opts.new_dir(t))?;
                join(&dir, &item.name)
            } else {
                let parent = tree.mkdir_all(parent_of(&dest), &mut |t| opts.new_dir(t))?;
                join(&parent, base_name(&dest))
            };
            place(tree, &target, root, opts, &mut inodes)?;
        }
    }
    Ok(())
}

/// `COPY --parents`: the destination, when new, is made as a copied
/// directory would be (0755 and the --chown owner) with --chmod applied
/// (BuildKit copies the source's root onto it).
pub fn copy_parents_root(
    tree: &mut FsTree,
    dest: &str,
    opts: &CopyOptions,
) -> Result<(), CopyError> {
    let target = tree.resolve(&clean(dest), true)?;
    if tree.get(&target).is_some() {
        return Ok(());
    }
    tree.mkdir_all(&target, &mut |t| opts.new_dir(t))?;
    if let Some(chmod) = &opts.chmod {
        tree.update(&target, |n| n.mode = chmod.apply(n.mode, true));
    }
    Ok(())
}

/// `COPY --parents`: one directory leading to a source, at `target`, with
/// the source directory's mode (--chmod applied) and the time of the copy.
/// A new one takes the source's owner (or --chown's); one already there
/// keeps its owner, as BuildKit 0.32 does.
pub fn copy_parent_dir(
    tree: &mut FsTree,
    target: &str,
    dir: &SrcEntry,
    opts: &CopyOptions,
) -> Result<(), CopyError> {
    let mode = match &opts.chmod {
        Some(m) => m.apply(dir.mode, true),
        None => dir.mode,
    };
    let parent = tree.resolve(parent_of(target), true)?;
    let parent = tree.mkdir_all(&parent, &mut |t| opts.new_dir(t))?;
    let path = join(&parent, base_name(target));
    match tree.get(&path) {
        Some(n) if n.is_dir() => {
            tree.update(&path, |n| {
                n.mode = mode;
                n.mtime = opts.now;
            });
            Ok(())
        }
        Some(_) => Err(CopyError::DirOntoFile {
            src: dir.rel.clone(),
            dest: path,
        }),
        None => {
            let (uid, gid) = opts.owner(dir);
            let node = Node {
                kind: FileKind::Dir,
                mode,
                uid,
                gid,
                mtime: opts.now,
                xattrs: dir.xattrs.clone().into(),
                inode: tree.new_inode(),
            };
            Ok(tree.insert(&path, node)?)
        }
    }
}

fn make_node(
    tree: &mut FsTree,
    e: &SrcEntry,
    opts: &CopyOptions,
    inodes: &mut HashMap<(u64, u64), crate::fstree::Inode>,
) -> Node {
    let (uid, gid) = opts.owner(e);
    let inode = match e.link_key {
        Some(k) => *inodes.entry(k).or_insert_with(|| tree.new_inode()),
        None => tree.new_inode(),
    };
    let kind = e.kind.clone();
    let mode = match (&e.kind, &opts.chmod) {
        (FileKind::Symlink(_), _) => 0o777,
        (kind, Some(m)) => m.apply(e.mode, kind.is_dir()),
        (_, None) => e.mode,
    };
    // Docker gives copied directories the time of the copy; files keep theirs.
    let mtime = if matches!(e.kind, FileKind::Dir) {
        opts.now
    } else {
        e.mtime
    };
    Node {
        kind,
        mode,
        uid,
        gid,
        mtime,
        xattrs: e.xattrs.clone().into(),
        inode,
    }
}

/// Put one entry at `target` (whose parent chain exists or is created).
fn place(
    tree: &mut FsTree,
    target: &str,
    e: &SrcEntry,
    opts: &CopyOptions,
    inodes: &mut HashMap<(u64, u64), crate::fstree::Inode>,
) -> Result<(), CopyError> {
    let node = make_node(tree, e, opts, inodes);
    place_node(tree, target, node, opts)
}

/// Whether a local file is a tar archive (possibly compressed), as ADD
/// decides whether to extract it.
pub fn is_archive(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok((_, mut reader)) = kiln_layer::open_archive(file) else {
        return false;
    };
    let mut block = vec![0u8; 512];
    let mut filled = 0;
    while filled < 512 {
        match reader.read(&mut block[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled == 512 && kiln_layer::archive::looks_like_tar(&block)
}

/// Extract a tar archive into directory `dest`. File bytes go to files in
/// `staging`; the tree records where they are.
pub fn extract_archive(
    tree: &mut FsTree,
    archive: &Path,
    archive_name: &str,
    dest: &str,
    opts: &CopyOptions,
    staging: &Path,
) -> Result<(), CopyError> {
    let err = |m: String| CopyError::Archive {
        archive: archive_name.to_string(),
        message: m,
    };
    let file = std::fs::File::open(archive).map_err(|e| CopyError::Io {
        context: format!("opening {archive_name}"),
        source: e,
    })?;
    let (_, reader) = kiln_layer::open_archive(file).map_err(|e| err(e.to_string()))?;
    let dest_dir = tree.mkdir_all(&clean(dest), &mut |t| opts.new_dir(t))?;
    std::fs::create_dir_all(staging).map_err(|e| CopyError::Io {
        context: format!("creating {}", staging.display()),
        source: e,
    })?;
    let mut tar = tar::Archive::new(reader);
    let entries = tar.entries().map_err(|e| err(e.to_string()))?;
    for (n, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| err(format!("entry {n}: {e}")))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = archive_rel(&raw).map_err(|m| err(format!("entry {raw:?}: {m}")))?;
        let Some(rel) = rel else { continue };
        let header = entry.header().clone();
        let mut xattrs = BTreeMap::new();
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                if let Ok(key) = ext.key() {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        xattrs.insert(name.to_string(), ext.value_bytes().to_vec());
                    }
                }
            }
        }
        let target = join(&dest_dir, &rel);
        let (uid, gid) = opts
            .chown
            .unwrap_or((header.uid().unwrap_or(0), header.gid().unwrap_or(0)));
        let original = header.mode().unwrap_or(0o644) & 0o7777;
        let is_dir = header.entry_type() == tar::EntryType::Directory;
        let mode = opts
            .chmod
            .as_ref()
            .map_or(original, |m| m.apply(original, is_dir));
        let mtime = header.mtime().unwrap_or(0) as i64;
        let et = header.entry_type();
        let kind = match et {
            tar::EntryType::Directory => FileKind::Dir,
            tar::EntryType::Symlink => FileKind::Symlink(
                entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let link_rel = archive_rel(&link)
                    .map_err(|m| err(format!("hard link {raw:?} -> {link:?}: {m}")))?
                    .ok_or_else(|| err(format!("hard link {raw:?} has no target")))?;
                let src = join(&dest_dir, &link_rel);
                let Some(existing) = tree
                    .get(&src)
                    .filter(|n| matches!(n.kind, FileKind::File { .. }))
                    .map(|n| n.into_owned())
                else {
                    return Err(err(format!("hard link {raw:?} -> {link:?}: target is not an earlier file of the archive")));
                };
                place_node(tree, &target, existing, opts)?;
                continue;
            }
            tar::EntryType::Fifo => FileKind::Fifo,
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                if et == tar::EntryType::Char {
                    FileKind::CharDevice { major, minor }
                } else {
                    FileKind::BlockDevice { major, minor }
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let staged = staging_file(staging);
                let mut out = std::fs::File::create(&staged).map_err(|e| CopyError::Io {
                    context: format!("creating {}", staged.display()),
                    source: e,
                })?;
                let size = std::io::copy(&mut entry, &mut out)
                    .map_err(|e| err(format!("entry {raw:?}: {e}")))?;
                FileKind::File {
                    content: Content::Path(staged),
                    size,
                }
            }
            // PAX/GNU metadata records are consumed by the reader.
            _ => continue,
        };
        let inode = tree.new_inode();
        let node = Node {
            kind,
            mode,
            uid,
            gid,
            mtime,
            xattrs: xattrs.into(),
            inode,
        };
        place_node(tree, &target, node, opts)?;
    }
    Ok(())
}

fn place_node(
    tree: &mut FsTree,
    target: &str,
    node: Node,
    opts: &CopyOptions,
) -> Result<(), CopyError> {
    let parent = tree.resolve(parent_of(target), true)?;
    let parent = tree.mkdir_all(&parent, &mut |t| opts.new_dir(t))?;
    let path = join(&parent, base_name(target));
    match tree.get(&path) {
        Some(old) if old.is_dir() && node.is_dir() => {
            tree.update(&path, |n| {
                n.mode = node.mode;
                n.uid = node.uid;
                n.gid = node.gid;
                n.mtime = node.mtime;
            });
            Ok(())
        }
        Some(old) if old.is_dir() => Err(CopyError::FileOntoDir(path)),
        _ => Ok(tree.insert(&path, node)?),
    }
}

/// An archive entry that would leave the directory it is extracted into.
#[derive(Debug, thiserror::Error)]
#[error("path leaves the destination directory")]
struct LeavesDestination;

/// An archive entry's path relative to the extraction directory: leading
/// `/` and `./` dropped; `None` for the directory itself; an error when it
/// would leave the directory.
fn archive_rel(raw: &str) -> Result<Option<String>, LeavesDestination> {
    kiln_layer::apply::clean_entry_path(raw).map_err(|_| LeavesDestination)
}

fn staging_file(dir: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    dir.join(format!(
        "f{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths() {
        assert_eq!(archive_rel("./a/b").unwrap(), Some("a/b".into()));
        assert_eq!(archive_rel("/etc/x").unwrap(), Some("etc/x".into()));
        assert_eq!(archive_rel("./").unwrap(), None);
        assert_eq!(archive_rel("a/../b").unwrap(), Some("b".into()));
        assert!(archive_rel("../evil").is_err());
        assert!(archive_rel("a/../../evil").is_err());
    }
}
