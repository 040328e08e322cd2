//! Layers: writing a deterministic tar layer from a list of entries, with
//! compression and both digests computed in one streaming pass, and opening
//! (possibly compressed) archives for reading.

pub mod apply;
pub mod archive;
pub mod entry;
pub mod file;
pub mod gunzip;
pub mod hashing;
pub mod in_root;
pub mod pgzip;
pub mod read_ahead;
mod records;
pub mod spread;
pub mod writer;

pub use archive::{detect_compression, open_archive, open_layer, ArchiveCompression};
pub use entry::{Content, Entry};
pub use file::FileKind;
pub use hashing::{HashingReader, HashingWriter};
pub use writer::{
    write_layer, write_layer_followed, BlobFollower, Compression, LayerInfo, LayerOptions,
};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid entry {path:?}: {message}")]
    InvalidEntry { path: String, message: String },
}

impl LayerError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LayerError::Io {
            context: context.into(),
            source,
        }
    }
}
