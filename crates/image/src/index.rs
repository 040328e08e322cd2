//! Image indexes: one image per platform under one name. An OCI image
//! index, or a Docker manifest list when every image it names is a Docker
//! schema 2 manifest (registries and docker's own tools expect the two
//! not to be mixed).

use crate::layout::{Descriptor, DescriptorPlatform};
use crate::manifest::{MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use crate::{sha256_digest, BuiltImage, ImageError};
use serde::Serialize;

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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexJson<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: &'a [Descriptor],
}

impl ImageIndex {
    /// The index of `manifests` (each with its platform), refusing two
    /// images for one platform.
    pub fn new(manifests: Vec<Descriptor>) -> Result<ImageIndex, ImageError> {
        let mut seen: Vec<&DescriptorPlatform> = Vec::new();
        for m in &manifests {
            let p = m.platform.as_ref().ok_or_else(|| {
                ImageError::invalid("image index", format!("{} has no platform", m.digest))
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
                .all(|m| m.media_type == MEDIA_TYPE_DOCKER_MANIFEST);
        let media_type = if docker {
            MEDIA_TYPE_DOCKER_LIST
        } else {
            MEDIA_TYPE_INDEX
        };
        let bytes = serde_json::to_vec(&IndexJson {
            schema_version: 2,
            media_type,
            manifests: &manifests,
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
            .filter_map(|m| m.platform.as_ref())
            .map(platform_text)
            .collect()
    }

    /// The index of images kiln built, in the order given.
    pub fn of_built(images: &[BuiltImage]) -> Result<ImageIndex, ImageError> {
        ImageIndex::new(images.iter().map(descriptor_of).collect())
    }
}

/// A built image's manifest as an index names it.
pub fn descriptor_of(image: &BuiltImage) -> Descriptor {
    Descriptor {
        media_type: MEDIA_TYPE_MANIFEST.into(),
        digest: image.manifest_digest.clone(),
        size: image.manifest_bytes.len() as u64,
        annotations: Default::default(),
        platform: Some(DescriptorPlatform {
            architecture: image.config.architecture.clone(),
            os: image.config.os.clone(),
            variant: image.config.variant.clone(),
        }),
    }
}

/// `os/arch[/variant]`.
pub fn platform_text(p: &DescriptorPlatform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(digest: &str, media_type: &str, arch: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: digest.into(),
            size: 10,
            annotations: Default::default(),
            platform: Some(DescriptorPlatform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: None,
            }),
        }
    }

    #[test]
    fn oci_unless_every_image_is_docker_and_no_platform_twice() {
        let oci = ImageIndex::new(vec![
            desc("sha256:a", MEDIA_TYPE_MANIFEST, "amd64"),
            desc("sha256:b", MEDIA_TYPE_DOCKER_MANIFEST, "arm64"),
        ])
        .unwrap();
        assert_eq!(oci.media_type, MEDIA_TYPE_INDEX);
        let v: serde_json::Value = serde_json::from_slice(&oci.bytes).unwrap();
        assert_eq!(v["manifests"][1]["platform"]["architecture"], "arm64");
        assert_eq!(oci.digest, sha256_digest(&oci.bytes));
        let docker = ImageIndex::new(vec![
            desc("sha256:a", MEDIA_TYPE_DOCKER_MANIFEST, "amd64"),
            desc("sha256:b", MEDIA_TYPE_DOCKER_MANIFEST, "arm64"),
        ])
        .unwrap();
        assert_eq!(docker.media_type, MEDIA_TYPE_DOCKER_LIST);
        let twice = ImageIndex::new(vec![
            desc("sha256:a", MEDIA_TYPE_MANIFEST, "amd64"),
            desc("sha256:b", MEDIA_TYPE_MANIFEST, "amd64"),
        ]);
        assert!(twice
            .unwrap_err()
            .to_string()
            .contains("two images for linux/amd64"));
    }
}
