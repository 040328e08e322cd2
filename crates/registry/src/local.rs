//! Base images kept in a local OCI image layout (`--cache-dir`), filled by
//! `kiln warm` and read by builds that must not reach a registry. The
//! layout's `blobs/` is a blob store; `index.json` names each image by its
//! normalised reference.

use crate::pull::{pull, PulledImage, PulledLayer, WantedPlatform};
use crate::reference::Reference;
use crate::store::BlobStore;
use crate::{Client, RegistryError};
use kiln_image::layout::Descriptor;
use kiln_image::OciLayout;
use std::path::Path;

/// Pull `reference` into the layout at `dir`; returns its manifest digest.
pub fn warm(
    client: &Client,
    dir: &Path,
    reference: &Reference,
    platform: &WantedPlatform,
) -> Result<String, RegistryError> {
    let layout = OciLayout::new(dir);
    let store = BlobStore::new(layout.blobs_dir());
    let pulled = pull(client, &store, reference, platform)?;
    layout.put_blob(&pulled.manifest_digest, &pulled.manifest_bytes)?;
    let desc = Descriptor {
        media_type: pulled.manifest_media_type.clone(),
        digest: pulled.manifest_digest.clone(),
        size: pulled.manifest_bytes.len() as u64,
        annotations: Default::default(),
        platform: None,
    };
    layout.tag(desc, &reference.to_string())?;
    Ok(pulled.manifest_digest)
}

/// The image `reference` from the layout at `dir`, if `kiln warm` put it
/// there. Blobs are checked against their digests as they are read.
pub fn load_local(dir: &Path, reference: &Reference) -> Result<Option<PulledImage>, RegistryError> {
    let layout = OciLayout::new(dir);
    let name = reference.to_string();
    let Some(desc) = layout.find(&name)? else {
        return Ok(None);
    };
    let (manifest_bytes, manifest) = layout.manifest(&desc)?;
    let config = serde_json::from_slice(&layout.read_blob(&manifest.config.digest)?)
        .map_err(|e| RegistryError::Config(format!("{name} config: {e}")))?;
    let mut layers = Vec::new();
    for l in manifest.layers {
        let path = layout.blob_path(&l.digest);
        if !path.is_file() {
            return Err(RegistryError::Config(format!(
                "{name} in {}: layer {} is missing",
                dir.display(),
                l.digest
            )));
        }
        layers.push(PulledLayer {
            size: l.size,
            media_type: l.media_type,
            digest: l.digest,
            path,
        });
    }
    Ok(Some(PulledImage {
        source: reference.with_digest(&desc.digest),
        manifest_digest: desc.digest,
        manifest_bytes,
        manifest_media_type: desc.media_type,
        config,
        layers,
    }))
}
