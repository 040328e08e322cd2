//! Joining images built separately (one runner per platform) into one
//! image index: each image's platform comes from its config; an image in
//! another repository is copied in first (its blobs mounted when on the
//! same registry, else fetched and uploaded), since a registry accepts an
//! index only when the images it names are in the index's repository. An
//! image pushed with its attestations is an index of one image and its
//! attestation manifests: both go into the joined index (images first,
//! then attestations, as BuildKit orders them), as `buildx imagetools
//! create` keeps them.

use crate::client::Client;
use crate::pull::{fetch_blob, fetch_manifest};
use crate::push::push_manifest;
use crate::reference::Reference;
use crate::store::BlobStore;
use crate::RegistryError;
use kiln_image::index::{
    is_attestation, ImageIndex, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST,
    REFERENCE_DIGEST,
};
use kiln_image::manifest::{MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use kiln_image::oci::{
    descriptor, digest_of, parse_index, parse_manifest, platform, Descriptor, Manifest,
};
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
    let mut attestations = Vec::new();
    for image in images {
        let (m, a) = in_target(client, store, target, image)?;
        manifests.push(m);
        attestations.extend(a);
    }
    manifests.extend(attestations);
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

/// `image`'s manifest as the index names it (with its platform), and its
/// attestation manifests when it was pushed with them, present in
/// `target`'s repository.
fn in_target(
    client: &Client,
    store: &BlobStore,
    target: &Reference,
    image: &Reference,
) -> Result<(Descriptor, Vec<Descriptor>), RegistryError> {
    let (bytes, media_type, digest) = fetch_manifest(client, image, image.manifest_ref())?;
    if media_type != MEDIA_TYPE_INDEX && media_type != MEDIA_TYPE_DOCKER_LIST {
        let d = image_in_target(client, store, target, image, (bytes, media_type, digest))?;
        return Ok((d, Vec::new()));
    }
    let index = parse_index(&bytes, &image.to_string())?;
    let (attestations, images): (Vec<&Descriptor>, Vec<&Descriptor>) =
        index.manifests().iter().partition(|d| is_attestation(d));
    let [one] = images.as_slice() else {
        return Err(RegistryError::Unsupported {
            what: image.to_string(),
            message: format!(
                "is an index of {} images, not one platform's image: name each platform's image",
                images.len()
            ),
        });
    };
    let one_digest = digest_of(one);
    let fetched = fetch_manifest(client, image, &one_digest)?;
    let d = image_in_target(client, store, target, image, fetched)?;
    let mut kept = Vec::new();
    for a in attestations {
        let names_it = a
            .annotations()
            .as_ref()
            .and_then(|n| n.get(REFERENCE_DIGEST))
            .is_some_and(|r| *r == one_digest);
        if !names_it {
            continue;
        }
        let fetched = fetch_manifest(client, image, &digest_of(a))?;
        bring_into_target(client, store, target, image, &fetched)?;
        kept.push(a.clone());
    }
    Ok((d, kept))
}

fn cross_repository(image: &Reference, target: &Reference) -> bool {
    image.registry != target.registry || image.repository != target.repository
}

/// A manifest of `image` (`fetched`: bytes, media type, digest) and its
/// blobs copied into `target`'s repository, when it is in another.
fn bring_into_target(
    client: &Client,
    store: &BlobStore,
    target: &Reference,
    image: &Reference,
    fetched: &(Vec<u8>, String, String),
) -> Result<(), RegistryError> {
    if !cross_repository(image, target) {
        return Ok(());
    }
    let (bytes, media_type, digest) = fetched;
    let manifest = parse_manifest(bytes, &image.to_string())?;
    copy_image(client, store, target, image, &manifest)?;
    push_manifest(client, &target.repository_only(), bytes, media_type, digest)
}

/// One image manifest (`fetched`: bytes, media type, digest) as the
/// index names it, copied into `target`'s repository when elsewhere.
fn image_in_target(
    client: &Client,
    store: &BlobStore,
    target: &Reference,
    image: &Reference,
    fetched: (Vec<u8>, String, String),
) -> Result<Descriptor, RegistryError> {
    let (bytes, media_type, digest) = &fetched;
    let unsupported = |message: String| RegistryError::Unsupported {
        what: image.to_string(),
        message,
    };
    if media_type != MEDIA_TYPE_MANIFEST && media_type != MEDIA_TYPE_DOCKER_MANIFEST {
        return Err(unsupported(format!(
            "is {media_type}, not one platform's image manifest: name each platform's image"
        )));
    }
    let manifest = parse_manifest(bytes, &image.to_string())?;
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
    bring_into_target(client, store, target, image, &fetched)?;
    let mut d = descriptor(media_type, digest, bytes.len() as u64)?;
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
