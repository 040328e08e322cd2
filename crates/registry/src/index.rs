//! Joining images built separately (one runner per platform) into one
//! image index: each image's platform comes from its config; an image in
//! another repository is copied in first (its blobs mounted when on the
//! same registry, else fetched and uploaded), since a registry accepts an
//! index only when the images it names are in the index's repository.

use crate::client::Client;
use crate::pull::{fetch_blob, fetch_manifest};
use crate::push::push_manifest;
use crate::reference::Reference;
use crate::store::BlobStore;
use crate::RegistryError;
use kiln_image::index::{ImageIndex, MEDIA_TYPE_DOCKER_MANIFEST};
use kiln_image::manifest::MEDIA_TYPE_MANIFEST;
use kiln_image::oci::{descriptor, digest_of, parse_manifest, platform, Descriptor, Manifest};
use kiln_image::ImageConfig;

/// Pushes to `target` (a tag) the index of `images` (each one platform's
/// image manifest, in a registry); blobs fetched for copying go to
/// `store`. Returns the index.
pub fn push_index(
    client: &Client,
    store: &BlobStore,
    target: &Reference,
    images: &[Reference],
) -> Result<ImageIndex, RegistryError> {
    let mut manifests = Vec::new();
    for image in images {
        manifests.push(in_target(client, store, target, image)?);
    }
    let index = ImageIndex::new(manifests).map_err(|e| RegistryError::Unsupported {
        what: format!("the index for {target}"),
        message: e.to_string(),
    })?;
    push_manifest(
        client,
        target,
        &index.bytes,
        &index.media_type,
        &index.digest,
    )?;
    Ok(index)
}

/// `image`'s manifest as the index names it (with its platform), present
/// in `target`'s repository.
fn in_target(
    client: &Client,
    store: &BlobStore,
    target: &Reference,
    image: &Reference,
) -> Result<Descriptor, RegistryError> {
    let (bytes, media_type, digest) = fetch_manifest(client, image, image.manifest_ref())?;
    let unsupported = |message: String| RegistryError::Unsupported {
        what: image.to_string(),
        message,
    };
    if media_type != MEDIA_TYPE_MANIFEST && media_type != MEDIA_TYPE_DOCKER_MANIFEST {
        return Err(unsupported(format!(
            "is {media_type}, not one platform's image manifest: name each platform's image"
        )));
    }
    let manifest = parse_manifest(&bytes, &image.to_string())?;
    let config_path = fetch_blob(
        client,
        store,
        image,
        &digest_of(manifest.config()),
        Some(manifest.config().size()),
    )?;
    let config: ImageConfig = std::fs::read(&config_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| unsupported("unreadable config".into()))?;
    if config.os.is_empty() || config.architecture.is_empty() {
        return Err(unsupported(
            "its config names no os and architecture".into(),
        ));
    }
    let platform = platform(&config.os, &config.architecture, config.variant.as_deref());
    if image.registry != target.registry || image.repository != target.repository {
        copy_image(client, store, target, image, &manifest)?;
        let by_digest = Reference {
            tag: None,
            digest: None,
            ..target.clone()
        };
        push_manifest(client, &by_digest, &bytes, &media_type, &digest)?;
    }
    let mut d = descriptor(&media_type, &digest, bytes.len() as u64)?;
    d.set_platform(Some(platform));
    Ok(d)
}

/// Puts `manifest`'s config and layers into `target`'s repository.
fn copy_image(
    client: &Client,
    store: &BlobStore,
    target: &Reference,
    image: &Reference,
    manifest: &Manifest,
) -> Result<(), RegistryError> {
    let source = image.name();
    for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
        let digest = digest_of(blob);
        crate::push::copy_blob(
            client,
            target,
            &digest,
            blob.size(),
            &store.path(&digest),
            &source,
        )?;
    }
    Ok(())
}
