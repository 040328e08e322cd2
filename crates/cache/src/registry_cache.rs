//! Cache entries in a registry repository. An entry is a small image: its
//! config carries the key's parts and creation time under
//! `kiln.cache.v1`, its one layer (or none, for a step that changed
//! nothing) is the step's layer. It is tagged `kiln-<key>`, so a lookup is
//! one manifest GET, and the layer is mountable into any repository of the
//! same registry.

use crate::{tag_for, KeyParts};
use kiln_image::{BuiltImage, ImageConfig, LayerBlob};
use kiln_registry::pull::{fetch_blob, fetch_manifest};
use kiln_registry::{push, BlobStore, Client, Reference, RegistryError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub(crate) const FIELD: &str = "kiln.cache.v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EntryRecord {
    pub(crate) created: i64,
    #[serde(default)]
    pub(crate) created_by: String,
    pub(crate) parts: KeyParts,
}

/// A cached step.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub parts: KeyParts,
    /// The history text of the step that made it.
    pub created_by: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// The step's layer, downloaded and verified into the blob store.
    pub layer: Option<LayerBlob>,
}

pub struct RegistryCache<'a> {
    pub client: &'a Client,
    pub store: &'a BlobStore,
    /// The cache repository (its tag, if any, is ignored).
    pub repo: Reference,
    /// Entries older than this many seconds are misses.
    pub ttl: i64,
}

impl RegistryCache<'_> {
    fn tagged(&self, tag: String) -> Reference {
        Reference {
            tag: Some(tag),
            digest: None,
            ..self.repo.clone()
        }
    }

    /// The entry for `key`, if there is a fresh one.
    pub fn lookup(&self, key: &str, now: i64) -> Result<Option<CacheEntry>, RegistryError> {
        self.lookup_tag(&tag_for(key), Some(now))
    }

    /// The latest entry stored for a step slot (any age), to explain a miss.
    pub fn lookup_slot(&self, slot: &str) -> Result<Option<CacheEntry>, RegistryError> {
        self.lookup_tag(&slot_tag(slot), None)
    }

    fn lookup_tag(&self, tag: &str, now: Option<i64>) -> Result<Option<CacheEntry>, RegistryError> {
        let r = self.tagged(tag.to_string());
        let (bytes, _, _) = match fetch_manifest(self.client, &r, r.manifest_ref()) {
            Ok(m) => m,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let manifest: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Unsupported {
                what: r.to_string(),
                message: format!("cache manifest: {e}"),
            })?;
        let digest_of =
            |v: &serde_json::Value| v.get("digest").and_then(|d| d.as_str()).map(String::from);
        let size_of = |v: &serde_json::Value| v.get("size").and_then(|d| d.as_u64());
        let config_desc = manifest.get("config").cloned().unwrap_or_default();
        let config_digest = digest_of(&config_desc).ok_or_else(|| RegistryError::Unsupported {
            what: r.to_string(),
            message: "cache entry without config".into(),
        })?;
        let config_path = fetch_blob(
            self.client,
            self.store,
            &r,
            &config_digest,
            size_of(&config_desc),
        )?;
        let config: ImageConfig = std::fs::read(&config_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| RegistryError::Unsupported {
                what: r.to_string(),
                message: "cache entry config unreadable".into(),
            })?;
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
        let layer = match manifest
            .get("layers")
            .and_then(|l| l.as_array())
            .and_then(|l| l.first())
        {
            None => None,
            Some(desc) => {
                let digest = digest_of(desc).unwrap_or_default();
                let size = size_of(desc).unwrap_or(0);
                let path: PathBuf = fetch_blob(self.client, self.store, &r, &digest, Some(size))?;
                Some(LayerBlob {
                    digest,
                    diff_id: config.rootfs.diff_ids.first().cloned().unwrap_or_default(),
                    size,
                    uncompressed_size: 0,
                    media_type: desc
                        .get("mediaType")
                        .and_then(|m| m.as_str())
                        .unwrap_or(kiln_image::manifest::MEDIA_TYPE_LAYER_GZIP)
                        .to_string(),
                    path,
                    source: Some(self.repo.name()),
                })
            }
        };
        Ok(Some(CacheEntry {
            parts: record.parts,
            created_by: record.created_by,
            created: record.created,
            layer,
        }))
    }

    /// Store the entry for `key`: the step's layer (if it made one) and
    /// the key's parts, also as the latest entry of `slot` (the step's
    /// place in the Dockerfile). The manifest goes last, after its blobs.
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
    ) -> Result<(), RegistryError> {
        let image =
            entry_image(parts, created_by, layer, now, platform).map_err(RegistryError::Config)?;
        push(self.client, &self.tagged(tag_for(key)), &image)?;
        push(self.client, &self.tagged(slot_tag(slot)), &image)?;
        Ok(())
    }
}

/// A cache entry as an image: the record in its config, the step's layer
/// (if any) as its layer.
pub(crate) fn entry_image(
    parts: &KeyParts,
    created_by: &str,
    layer: Option<&LayerBlob>,
    now: i64,
    platform: (&str, &str),
) -> Result<BuiltImage, String> {
    let mut config = ImageConfig {
        architecture: platform.1.to_string(),
        os: platform.0.to_string(),
        ..Default::default()
    };
    let record = EntryRecord {
        created: now,
        created_by: created_by.to_string(),
        parts: parts.clone(),
    };
    config.other.insert(
        FIELD.into(),
        serde_json::to_value(&record).unwrap_or_default(),
    );
    BuiltImage::new(config, layer.into_iter().cloned().collect()).map_err(|e| e.to_string())
}

/// The tag of a step slot's latest entry.
pub(crate) fn slot_tag(slot: &str) -> String {
    use sha2::{Digest as _, Sha256};
    format!(
        "slot-{}",
        &hex::encode(Sha256::digest(slot.as_bytes()))[..40]
    )
}
