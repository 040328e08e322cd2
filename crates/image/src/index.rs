//! Image indexes: one image per platform under one name. An OCI image
//! index, or a Docker manifest list when every image it names is a Docker
//! schema 2 manifest (registries and docker's own tools expect the two
//! not to be mixed).

use crate::manifest::{MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use crate::oci::{descriptor, digest_of, media_type_of, Descriptor, Platform};
use serde::Serialize;
use std::collections::BTreeMap;

/// BuildKit's annotations on an attestation manifest's index entry.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// Whether an index entry is an attestation manifest (not an image).
pub fn is_attestation(d: &Descriptor) -> bool {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REFERENCE_TYPE))
        .is_some_and(|t| t == ATTESTATION_MANIFEST)
}

/// The index as written: oci-spec's field order, annotations sorted (a
/// map's order would change the bytes, and so the digest, run to run).
#[derive(Serialize)]
struct IndexOut<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    manifests: Vec<DescriptorOut<'a>>,
}

#[derive(Serialize)]
struct DescriptorOut<'a> {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<&'a str, &'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'a Platform>,
}

impl<'a> DescriptorOut<'a> {
    fn of(d: &'a Descriptor) -> DescriptorOut<'a> {
        DescriptorOut {
            media_type: media_type_of(d),
            digest: digest_of(d),
            size: d.size(),
            annotations: d
                .annotations()
                .as_ref()
                .map(|a| a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()),
            platform: d.platform().as_ref(),
        }
    }
}
use crate::{sha256_digest, BuiltImage, ImageError};

pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// An index as pushed or written: its bytes, digest and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIndex {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub media_type: String,
    /// The images it names, in order.
    pub manifests: Vec<Descriptor>,
}

impl ImageIndex {
    /// The index of `manifests` (each with its platform), refusing two
    /// images for one platform.
    pub fn new(manifests: Vec<Descriptor>) -> Result<ImageIndex, ImageError> {
        let mut seen: Vec<&Platform> = Vec::new();
        // Attestation manifests all say unknown/unknown: not images.
        for m in manifests.iter().filter(|m| !is_attestation(m)) {
            let p = m.platform().as_ref().ok_or_else(|| {
                ImageError::invalid("image index", format!("{} has no platform", m.digest()))
            })?;
            if seen.contains(&p) {
                return Err(ImageError::invalid(
                    "image index",
                    format!("two images for {}", platform_text(p)),
                ));
            }
            seen.push(p);
        }
        let docker = !manifests.is_empty()
            && manifests
                .iter()
                .all(|m| media_type_of(m) == MEDIA_TYPE_DOCKER_MANIFEST);
        let media_type = if docker {
            MEDIA_TYPE_DOCKER_LIST
        } else {
            MEDIA_TYPE_INDEX
        };
        let bytes = serde_json::to_vec(&IndexOut {
            schema_version: 2,
            media_type,
            manifests: manifests.iter().map(DescriptorOut::of).collect(),
        })
        .map_err(|e| ImageError::invalid("serialising image index", e.to_string()))?;
        Ok(ImageIndex {
            digest: sha256_digest(&bytes),
            bytes,
            media_type: media_type.into(),
            manifests,
        })
    }

    /// The platforms it names (`os/arch[/variant]`), in order.
    pub fn platforms(&self) -> Vec<String> {
        self.manifests
            .iter()
            .filter(|m| !is_attestation(m))
            .filter_map(|m| m.platform().as_ref())
            .map(platform_text)
            .collect()
    }

    /// The index of images kiln built, in the order given, then the
    /// attestation manifest of each (`attestations[i]` is `images[i]`'s;
    /// none when empty), as BuildKit orders them.
    pub fn of_built(
        images: &[BuiltImage],
        attestations: &[BuiltImage],
    ) -> Result<ImageIndex, ImageError> {
        let mut manifests = images
            .iter()
            .map(descriptor_of)
            .collect::<Result<Vec<_>, _>>()?;
        for (a, image) in attestations.iter().zip(images) {
            manifests.push(attestation_descriptor(
                &a.manifest_digest,
                a.manifest_bytes.len() as u64,
                &image.manifest_digest,
            )?);
        }
        ImageIndex::new(manifests)
    }
}

/// The index entry of an attestation manifest for the image whose
/// manifest is `image_digest`, as BuildKit writes it.
fn attestation_descriptor(
    digest: &str,
    size: u64,
    image_digest: &str,
) -> Result<Descriptor, ImageError> {
    let mut d = descriptor(MEDIA_TYPE_MANIFEST, digest, size)?;
    d.set_platform(Some(crate::oci::platform("unknown", "unknown", None)));
    d.set_annotations(Some(
        [
            (REFERENCE_DIGEST.to_string(), image_digest.to_string()),
            (REFERENCE_TYPE.to_string(), ATTESTATION_MANIFEST.to_string()),
        ]
        .into_iter()
        .collect(),
    ));
    Ok(d)
}

/// A built image's manifest as an index names it.
pub fn descriptor_of(image: &BuiltImage) -> Result<Descriptor, ImageError> {
    let mut d = descriptor(
        MEDIA_TYPE_MANIFEST,
        &image.manifest_digest,
        image.manifest_bytes.len() as u64,
    )?;
    d.set_platform(Some(crate::oci::platform(
        &image.config.os,
        &image.config.architecture,
        image.config.variant.as_deref(),
    )));
    Ok(d)
}

pub use crate::oci::platform_text;

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(hex: &str, media_type: &str, arch: &str) -> Descriptor {
        let mut d = descriptor(media_type, &format!("sha256:{}", hex.repeat(64)), 10).unwrap();
        d.set_platform(Some(crate::oci::platform("linux", arch, None)));
        d
    }

    #[test]
    fn oci_unless_every_image_is_docker_and_no_platform_twice() {
        let oci = ImageIndex::new(vec![
            desc("a", MEDIA_TYPE_MANIFEST, "amd64"),
            desc("b", MEDIA_TYPE_DOCKER_MANIFEST, "arm64"),
        ])
        .unwrap();
        assert_eq!(oci.media_type, MEDIA_TYPE_INDEX);
        // The bytes as kiln has always written them (digests stay).
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        assert_eq!(
            String::from_utf8(oci.bytes.clone()).unwrap(),
            format!(
                "{{\"schemaVersion\":2,\"mediaType\":\"{MEDIA_TYPE_INDEX}\",\"manifests\":[\
                 {{\"mediaType\":\"{MEDIA_TYPE_MANIFEST}\",\"digest\":\"sha256:{a}\",\"size\":10,\
                 \"platform\":{{\"architecture\":\"amd64\",\"os\":\"linux\"}}}},\
                 {{\"mediaType\":\"{MEDIA_TYPE_DOCKER_MANIFEST}\",\"digest\":\"sha256:{b}\",\"size\":10,\
                 \"platform\":{{\"architecture\":\"arm64\",\"os\":\"linux\"}}}}]}}"
            )
        );
        assert_eq!(oci.digest, sha256_digest(&oci.bytes));
        let docker = ImageIndex::new(vec![
            desc("a", MEDIA_TYPE_DOCKER_MANIFEST, "amd64"),
            desc("b", MEDIA_TYPE_DOCKER_MANIFEST, "arm64"),
        ])
        .unwrap();
        assert_eq!(docker.media_type, MEDIA_TYPE_DOCKER_LIST);
        let twice = ImageIndex::new(vec![
            desc("a", MEDIA_TYPE_MANIFEST, "amd64"),
            desc("b", MEDIA_TYPE_MANIFEST, "amd64"),
        ]);
        assert!(twice
            .unwrap_err()
            .to_string()
            .contains("two images for linux/amd64"));
    }
}
