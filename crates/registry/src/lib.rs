//! Registries: references, credentials and tokens, pulling images (index
//! and platform selection, verified parallel blob downloads, mirrors) and
//! pushing them (existing blobs skipped, cross-repository mounts, streamed
//! uploads, manifest last).

pub mod auth;
pub mod client;
pub mod index;
pub mod local;
pub mod pull;
pub mod push;
pub mod reference;
pub mod store;
pub mod stream;

pub use auth::Credential;
pub use client::{Access, Client, RegistryOptions};
pub use pull::{pull, PulledImage, PulledLayer, WantedPlatform};
pub use push::{push, PushReport};
pub use reference::{Reference, ReferenceError};
pub use store::BlobStore;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("{0}")]
    Config(String),
    #[error("{registry} answers in plain HTTP, not HTTPS: pass --insecure-registry {registry} (or --insecure) to use it")]
    PlainHttp { registry: String },
    #[error("authentication to {registry} failed: {message}")]
    Unauthorized { registry: String, message: String },
    #[error("{what}: not found{}", if message.is_empty() { String::new() } else { format!(" ({message})") })]
    NotFound { what: String, message: String },
    #[error("{what}: the registry answered HTTP {status}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    #[error("{what}: {message}")]
    Transport { what: String, message: String },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}; the blob was discarded")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: {message}")]
    Unsupported { what: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Layout(#[from] kiln_image::ImageError),
    #[error(transparent)]
    Credential(#[from] auth::CredentialError),
}

impl RegistryError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RegistryError::Io {
            context: context.into(),
            source,
        }
    }
}
