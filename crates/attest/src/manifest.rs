//! An image's attestations as BuildKit attaches them: one OCI manifest per
//! platform image (artifact type `application/vnd.docker.attestation.manifest.v1+json`,
//! the empty config, one `application/vnd.in-toto+json` layer per
//! statement annotated with its predicate type, the image as subject),
//! named in the index with platform unknown/unknown and the
//! `vnd.docker.reference.*` annotations (docs/attestations/attestation-storage.md).

use crate::AttestError;
use kiln_image::manifest::MEDIA_TYPE_MANIFEST;
use kiln_image::{sha256_digest, BuiltImage, ImageConfig, LayerBlob};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

pub const ARTIFACT_TYPE: &str = "application/vnd.docker.attestation.manifest.v1+json";
pub const MEDIA_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const PREDICATE_ANNOTATION: &str = "in-toto.io/predicate-type";
const EMPTY: &[u8] = b"{}";

#[derive(Serialize)]
struct Desc<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<&'a str, &'a str>>,
}

#[derive(Serialize)]
struct ManifestOut<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    #[serde(rename = "artifactType")]
    artifact_type: &'a str,
    config: Desc<'a>,
    layers: Vec<Desc<'a>>,
    subject: Desc<'a>,
}

/// One statement to attach: its predicate type and bytes.
pub struct Attached {
    pub predicate_type: &'static str,
    pub bytes: Vec<u8>,
}

/// The attestation manifest for `image`, its statements written under
/// `dir` (the layers' files), ready to push or write like an image.
pub fn attestation_manifest(
    image: &BuiltImage,
    statements: &[Attached],
    dir: &Path,
) -> Result<BuiltImage, AttestError> {
    std::fs::create_dir_all(dir).map_err(|e| AttestError::io(dir, e))?;
    let mut layers = Vec::new();
    for s in statements {
        let digest = sha256_digest(&s.bytes);
        let path = dir.join(format!(
            "{}.intoto.json",
            digest.trim_start_matches("sha256:")
        ));
        std::fs::write(&path, &s.bytes).map_err(|e| AttestError::io(&path, e))?;
        layers.push(LayerBlob {
            diff_id: digest.clone(),
            digest,
            size: s.bytes.len() as u64,
            uncompressed_size: s.bytes.len() as u64,
            media_type: MEDIA_TYPE_IN_TOTO.into(),
            path,
            source: None,
        });
    }
    let config_digest = sha256_digest(EMPTY);
    let manifest = ManifestOut {
        schema_version: 2,
        media_type: MEDIA_TYPE_MANIFEST,
        artifact_type: ARTIFACT_TYPE,
        config: Desc {
            media_type: MEDIA_TYPE_EMPTY,
            digest: config_digest.clone(),
            size: EMPTY.len() as u64,
            data: Some("e30="),
            annotations: None,
        },
        layers: layers
            .iter()
            .zip(statements)
            .map(|(l, s)| Desc {
                media_type: MEDIA_TYPE_IN_TOTO,
                digest: l.digest.clone(),
                size: l.size,
                data: None,
                annotations: Some(BTreeMap::from([(PREDICATE_ANNOTATION, s.predicate_type)])),
            })
            .collect(),
        subject: Desc {
            media_type: MEDIA_TYPE_MANIFEST,
            digest: image.manifest_digest.clone(),
            size: image.manifest_bytes.len() as u64,
            data: None,
            annotations: None,
        },
    };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(AttestError::Json)?;
    Ok(BuiltImage {
        config: ImageConfig {
            os: "unknown".into(),
            architecture: "unknown".into(),
            ..Default::default()
        },
        config_bytes: EMPTY.to_vec(),
        config_digest,
        layers,
        manifest_digest: sha256_digest(&manifest_bytes),
        manifest_bytes,
    })
}
