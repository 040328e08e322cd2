//! Base images kept in a local OCI image layout (`--cache-dir`), filled by
//! `kiln warm` and read by builds that must not reach a registry. The
//! layout's `blobs/` is a blob store; `index.json` names each image by its
//! normalised reference.

use crate::pull::{pull, PulledImage, PulledLayer, WantedPlatform};
use crate::reference::Reference;
use crate::store::BlobStore;
use crate::{Client, RegistryError};
use serde_json::{json, Value};
use std::path::Path;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn io(context: String) -> impl FnOnce(std::io::Error) -> RegistryError {
    move |e| RegistryError::io(context, e)
}

/// Pull `reference` into the layout at `dir`; returns its manifest digest.
pub fn warm(
    client: &Client,
    dir: &Path,
    reference: &Reference,
    platform: &WantedPlatform,
) -> Result<String, RegistryError> {
    let store = BlobStore::new(dir.join("blobs"));
    let pulled = pull(client, &store, reference, platform)?;
    let manifest_path = store.path(&pulled.manifest_digest);
    std::fs::write(&manifest_path, &pulled.manifest_bytes)
        .map_err(io(format!("writing {}", manifest_path.display())))?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(io(format!("writing {}", dir.display())))?;
    let index_path = dir.join("index.json");
    let name = reference.to_string();
    let mut manifests: Vec<Value> = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("manifests").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    manifests.retain(|m| {
        m.pointer("/annotations/org.opencontainers.image.ref.name")
            .and_then(Value::as_str)
            != Some(name.as_str())
    });
    manifests.push(json!({
        "mediaType": pulled.manifest_media_type,
        "digest": pulled.manifest_digest,
        "size": pulled.manifest_bytes.len(),
        "annotations": { REF_NAME: name },
    }));
    let index = json!({ "schemaVersion": 2, "manifests": manifests });
    let tmp = index_path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&index).unwrap_or_default())
        .map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, &index_path).map_err(io(format!("writing {}", index_path.display())))?;
    Ok(pulled.manifest_digest)
}

/// The image `reference` from the layout at `dir`, if `kiln warm` put it
/// there. Blobs are checked against their digests as they are read.
pub fn load_local(dir: &Path, reference: &Reference) -> Result<Option<PulledImage>, RegistryError> {
    let Ok(bytes) = std::fs::read(dir.join("index.json")) else {
        return Ok(None);
    };
    let index: Value = serde_json::from_slice(&bytes)
        .map_err(|e| RegistryError::Config(format!("{}: {e}", dir.display())))?;
    let name = reference.to_string();
    let Some(desc) = index
        .get("manifests")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter().find(|d| {
                d.pointer("/annotations/org.opencontainers.image.ref.name")
                    .and_then(Value::as_str)
                    == Some(name.as_str())
            })
        })
    else {
        return Ok(None);
    };
    let store = BlobStore::new(dir.join("blobs"));
    let read_verified = |digest: &str| -> Result<Vec<u8>, RegistryError> {
        let data = std::fs::read(store.path(digest))
            .map_err(io(format!("{}: blob {digest}", dir.display())))?;
        let actual = kiln_image::sha256_digest(&data);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("{} blob", dir.display()),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(data)
    };
    let digest = desc
        .get("digest")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let media_type = desc
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let manifest_bytes = read_verified(&digest)?;
    let manifest: Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| RegistryError::Config(format!("{name} in {}: {e}", dir.display())))?;
    let config_digest = manifest
        .pointer("/config/digest")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let config = serde_json::from_slice(&read_verified(config_digest)?)
        .map_err(|e| RegistryError::Config(format!("{name} config: {e}")))?;
    let mut layers = Vec::new();
    for l in manifest
        .get("layers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let d = l
            .get("digest")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let path = store.path(&d);
        if !path.is_file() {
            return Err(RegistryError::Config(format!(
                "{name} in {}: layer {d} is missing",
                dir.display()
            )));
        }
        layers.push(PulledLayer {
            size: l.get("size").and_then(Value::as_u64).unwrap_or(0),
            media_type: l
                .get("mediaType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            digest: d,
            path,
        });
    }
    Ok(Some(PulledImage {
        source: reference.with_digest(&digest),
        manifest_digest: digest,
        manifest_bytes,
        manifest_media_type: media_type,
        config,
        layers,
    }))
}
