//! The one model of a file's type that layers, the image's file tree,
//! snapshots and extraction share, and reading it off the disk.

use crate::entry::Content;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    Dir,
    /// A regular file; `content` says where its bytes are (records on disk
    /// leave it out: their owner knows where the file is).
    File {
        #[serde(skip)]
        content: Content,
        size: u64,
    },
    Symlink(String),
    /// A hard link to another path of the same layer (relative, no leading
    /// `/`). Only in layers: a file tree shares inodes instead.
    Hardlink(String),
    Fifo,
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
}

impl FileKind {
    pub fn is_dir(&self) -> bool {
        matches!(self, FileKind::Dir)
    }
}

/// `(major, minor)` of a device number, as glibc's macros split it.
pub fn device_numbers(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff);
    (major as u32, minor as u32)
}

/// The kind of the entry at `path` (not followed); a file's content is
/// the path itself. Sockets, which images do not carry, are `None`.
pub fn kind_of(path: &Path, md: &std::fs::Metadata) -> Option<FileKind> {
    let ft = md.file_type();
    let (major, minor) = device_numbers(md.rdev());
    Some(if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_symlink() {
        FileKind::Symlink(
            std::fs::read_link(path)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )
    } else if ft.is_fifo() {
        FileKind::Fifo
    } else if ft.is_char_device() {
        FileKind::CharDevice { major, minor }
    } else if ft.is_block_device() {
        FileKind::BlockDevice { major, minor }
    } else if ft.is_socket() {
        return None;
    } else {
        FileKind::File {
            content: Content::Path(path.to_path_buf()),
            size: md.len(),
        }
    })
}

/// The extended attributes of `path` whose names `keep` accepts (none for
/// a symlink: its attributes would be its target's).
pub fn read_xattrs(
    path: &Path,
    md: &std::fs::Metadata,
    keep: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if md.file_type().is_symlink() {
        return out;
    }
    let Ok(names) = xattr::list(path) else {
        return out;
    };
    for name in names {
        let name = name.to_string_lossy().into_owned();
        if keep(&name) {
            if let Ok(Some(value)) = xattr::get(path, &name) {
                out.insert(name, value);
            }
        }
    }
    out
}
