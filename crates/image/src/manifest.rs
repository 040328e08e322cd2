//! An image ready to be written: its config, layer blobs and manifest.

use crate::config::ImageConfig;
use crate::digest::sha256_digest;
use crate::ImageError;
use oci_spec::image::{Descriptor, Digest, ImageManifestBuilder, MediaType};
use std::path::PathBuf;
use std::str::FromStr;

pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A layer blob stored on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// `sha256:<hex>` of the blob.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    pub size: u64,
    pub uncompressed_size: u64,
    pub media_type: String,
    pub path: PathBuf,
    /// `registry/repository` the blob was pulled from (for cross-repository
    /// mounts when pushing), if any.
    pub source: Option<String>,
}

impl LayerBlob {
    pub fn is_gzip(&self) -> bool {
        self.media_type.ends_with("gzip")
    }
}

/// Config, layers and manifest, each with its bytes or file and digest.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub config: ImageConfig,
    pub config_bytes: Vec<u8>,
    pub config_digest: String,
    pub layers: Vec<LayerBlob>,
    pub manifest_bytes: Vec<u8>,
    pub manifest_digest: String,
}

fn digest(d: &str) -> Result<Digest, ImageError> {
    Digest::from_str(d).map_err(|e| ImageError::invalid(format!("digest {d}"), e.to_string()))
}

impl BuiltImage {
    /// Seal `config` (its rootfs.diff_ids set from `layers`) and make the
    /// OCI manifest.
    pub fn new(mut config: ImageConfig, layers: Vec<LayerBlob>) -> Result<BuiltImage, ImageError> {
        config.rootfs.kind = "layers".into();
        config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
        let config_bytes = config.to_json();
        let config_digest = sha256_digest(&config_bytes);
        let layer_descs = layers
            .iter()
            .map(|l| {
                Ok(Descriptor::new(
                    MediaType::from(l.media_type.as_str()),
                    l.size,
                    digest(&l.digest)?,
                ))
            })
            .collect::<Result<Vec<_>, ImageError>>()?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_bytes.len() as u64,
                digest(&config_digest)?,
            ))
            .layers(layer_descs)
            .build()
            .map_err(|e| ImageError::invalid("building manifest", e.to_string()))?;
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| ImageError::invalid("serialising manifest", e.to_string()))?;
        let manifest_digest = sha256_digest(&manifest_bytes);
        Ok(BuiltImage {
            config,
            config_bytes,
            config_digest,
            layers,
            manifest_bytes,
            manifest_digest,
        })
    }
}
