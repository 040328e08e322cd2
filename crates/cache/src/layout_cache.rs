//! The layer cache in a local OCI image layout (`--cache-repo oci:PATH`):
//! the same entries as in a registry, under the same tags, kept as ref
//! names in `index.json`, with blobs in `blobs/sha256`.

use crate::registry_cache::{entry_image, slot_tag, CacheEntry, EntryRecord, FIELD};
use crate::{tag_for, KeyParts};
use kiln_image::{ImageConfig, LayerBlob};
use serde_json::Value;
use std::path::PathBuf;

pub struct LayoutCache {
    pub dir: PathBuf,
    pub ttl: i64,
}

impl LayoutCache {
    pub fn lookup(&self, key: &str, now: i64) -> Result<Option<CacheEntry>, String> {
        self.lookup_tag(&tag_for(key), Some(now))
    }

    pub fn lookup_slot(&self, slot: &str) -> Result<Option<CacheEntry>, String> {
        self.lookup_tag(&slot_tag(slot), None)
    }

    fn blob(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    fn lookup_tag(&self, tag: &str, now: Option<i64>) -> Result<Option<CacheEntry>, String> {
        let Ok(index) = std::fs::read(self.dir.join("index.json")) else {
            return Ok(None);
        };
        let index: Value =
            serde_json::from_slice(&index).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let Some(desc) = index
            .get("manifests")
            .and_then(Value::as_array)
            .and_then(|m| {
                m.iter().find(|d| {
                    d.pointer("/annotations/org.opencontainers.image.ref.name")
                        .and_then(Value::as_str)
                        == Some(tag)
                })
            })
        else {
            return Ok(None);
        };
        let read = |d: &str| -> Result<Vec<u8>, String> {
            let bytes = std::fs::read(self.blob(d))
                .map_err(|e| format!("{}: blob {d}: {e}", self.dir.display()))?;
            if kiln_image::sha256_digest(&bytes) != d {
                return Err(format!("{}: blob {d} is corrupt", self.dir.display()));
            }
            Ok(bytes)
        };
        let manifest: Value = serde_json::from_slice(&read(
            desc.get("digest")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )?)
        .map_err(|e| e.to_string())?;
        let config: ImageConfig = serde_json::from_slice(&read(
            manifest
                .pointer("/config/digest")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )?)
        .map_err(|e| e.to_string())?;
        let Some(record) = config
            .other
            .get(FIELD)
            .and_then(|v| serde_json::from_value::<EntryRecord>(v.clone()).ok())
        else {
            return Ok(None);
        };
        if now.is_some_and(|n| n - record.created > self.ttl) {
            return Ok(None);
        }
        let layer = manifest
            .get("layers")
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .map(|d| {
                let digest = d
                    .get("digest")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                LayerBlob {
                    path: self.blob(&digest),
                    digest,
                    diff_id: config.rootfs.diff_ids.first().cloned().unwrap_or_default(),
                    size: d.get("size").and_then(Value::as_u64).unwrap_or(0),
                    uncompressed_size: 0,
                    media_type: d
                        .get("mediaType")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    source: None,
                }
            });
        Ok(Some(CacheEntry {
            parts: record.parts,
            created_by: record.created_by,
            created: record.created,
            layer,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &self,
        key: &str,
        slot: &str,
        parts: &KeyParts,
        created_by: &str,
        layer: Option<&LayerBlob>,
        now: i64,
        platform: (&str, &str),
    ) -> Result<(), String> {
        let image = entry_image(parts, created_by, layer, now, platform)?;
        for tag in [tag_for(key), slot_tag(slot)] {
            kiln_image::layout::write_oci_layout(&self.dir, &image, &tag)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
