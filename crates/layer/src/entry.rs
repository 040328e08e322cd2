//! One entry of a layer: path, type, metadata and where its content is.

pub use crate::file::FileKind;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a regular file's bytes come from. Content is read only while the
/// layer is written, so a layer is never held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A file on disk (build context, staging area).
    Path(PathBuf),
    /// Small generated content (heredocs).
    Bytes(Arc<Vec<u8>>),
}

impl Default for Content {
    /// No bytes (what a file kind read back from a record holds until its
    /// owner says where the file is).
    fn default() -> Self {
        Content::Bytes(Arc::default())
    }
}

/// A layer entry. `path` is relative to the root, without a leading or
/// trailing slash; `mode` holds permission and setuid/setgid/sticky bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Entry {
    /// The order entries appear in a layer: by path components, so that a
    /// directory comes right before its children (`a`, `a/b`, `a-b`).
    pub fn order_key(&self) -> Vec<&str> {
        self.path.split('/').collect()
    }
}
