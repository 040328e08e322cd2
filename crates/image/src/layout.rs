//! The OCI image layout: `oci-layout`, `index.json`, `blobs/sha256/`.
//! Blobs are written first and `index.json` last (atomically), so a reader
//! never sees a reference to a missing blob. An existing layout is extended:
//! a manifest with the same ref name is replaced, others are kept.

use crate::manifest::{BuiltImage, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use crate::ImageError;
use serde_json::{json, Value};
use std::fs;
use std::path::Path;

pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

pub fn write_oci_layout(dir: &Path, image: &BuiltImage, ref_name: &str) -> Result<(), ImageError> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs)
        .map_err(|e| ImageError::io(format!("creating {}", blobs.display()), e))?;
    write_file(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    for layer in &image.layers {
        let dst = blobs.join(hex_of(&layer.digest));
        if dst.exists() {
            continue;
        }
        // A hard link when on the same file system, else a copy.
        if fs::hard_link(&layer.path, &dst).is_err() {
            let tmp = dst.with_extension("tmp");
            fs::copy(&layer.path, &tmp)
                .map_err(|e| ImageError::io(format!("copying layer to {}", dst.display()), e))?;
            fs::rename(&tmp, &dst)
                .map_err(|e| ImageError::io(format!("writing {}", dst.display()), e))?;
        }
    }
    write_file(
        &blobs.join(hex_of(&image.config_digest)),
        &image.config_bytes,
    )?;
    write_file(
        &blobs.join(hex_of(&image.manifest_digest)),
        &image.manifest_bytes,
    )?;

    let index_path = dir.join("index.json");
    let mut manifests: Vec<Value> = match fs::read(&index_path) {
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                ImageError::invalid(format!("reading {}", index_path.display()), e.to_string())
            })?;
            v.get("manifests")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        }
        Err(_) => Vec::new(),
    };
    manifests.retain(|m| {
        m.pointer(&format!(
            "/annotations/{}",
            REF_NAME_ANNOTATION.replace('/', "~1")
        ))
        .and_then(Value::as_str)
            != Some(ref_name)
    });
    let mut desc = json!({
        "mediaType": MEDIA_TYPE_MANIFEST,
        "digest": image.manifest_digest,
        "size": image.manifest_bytes.len(),
        "annotations": { REF_NAME_ANNOTATION: ref_name },
    });
    let mut platform = json!({ "architecture": image.config.architecture, "os": image.config.os });
    if let Some(v) = &image.config.variant {
        platform["variant"] = json!(v);
    }
    desc["platform"] = platform;
    manifests.push(desc);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index)
        .map_err(|e| ImageError::invalid("serialising index.json", e.to_string()))?;
    write_file(&index_path, &bytes)
}

pub(crate) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Write via a temporary file and rename.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = path.with_extension("kiln-tmp");
    fs::write(&tmp, bytes).map_err(|e| ImageError::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| ImageError::io(format!("writing {}", path.display()), e))
}
