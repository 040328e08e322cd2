//! Images: the image config (docker-compatible), OCI manifests, digests,
//! and the output writers (OCI image layout, docker-archive).

pub mod config;
pub mod digest;
pub mod docker_archive;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod oci;

pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use digest::{sha256_digest, sha256_hex};
pub use index::ImageIndex;
pub use layout::OciLayout;
pub use manifest::{BuiltImage, LayerBlob};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {message}")]
    Invalid { context: String, message: String },
}

impl ImageError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn invalid(context: impl Into<String>, message: impl Into<String>) -> Self {
        ImageError::Invalid {
            context: context.into(),
            message: message.into(),
        }
    }
}
