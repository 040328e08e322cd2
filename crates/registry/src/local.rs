//! Base images kept in a local OCI image layout (`--cache-dir`), filled by
//! `kiln warm` and read by builds that must not reach a registry. The
//! layout's `blobs/` is a blob store; `index.json` names each image by its
//! normalised reference.

use crate::pull::{pull, PulledImage, PulledLayer, WantedPlatform};
use crate::reference::Reference;
use crate::store::BlobStore;
use crate::{Client, RegistryError};
use kiln_image::oci::{descriptor, digest_of, media_type_of};
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
    let desc = descriptor(
        &pulled.manifest_media_type,
        &pulled.manifest_digest,
        pulled.manifest_bytes.len() as u64,
    )?;
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
    let config = serde_json::from_slice(&layout.read_blob(&digest_of(manifest.config()))?)
        .map_err(|e| RegistryError::Config(format!("{name} config: {e}")))?;
    let mut layers = Vec::new();
    for l in manifest.layers() {
        let digest = digest_of(l);
        let path = layout.blob_path(&digest);
        if !path.is_file() {
            return Err(RegistryError::Config(format!(
                "{name} in {}: layer {digest} is missing",
                dir.display(),
            )));
        }
        layers.push(PulledLayer {
            size: l.size(),
            media_type: media_type_of(l),
            digest,
            path,
        });
    }
    let manifest_digest = digest_of(&desc);
    Ok(Some(PulledImage {
        source: reference.with_digest(&manifest_digest),
        manifest_digest,
        manifest_bytes,
        manifest_media_type: media_type_of(&desc),
        config,
        layers,
    }))
}
