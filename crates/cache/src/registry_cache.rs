//! Cache entries in a registry repository. An entry is a small image: its
//! config carries the key's parts and creation time under
//! `kiln.cache.v1`, its one layer (or none, for a step that changed
//! nothing) is the step's layer. It is tagged `kiln-<key>`, so a lookup is
//! one manifest GET, and the layer is mountable into any repository of the
//! same registry.

use crate::backend::{CacheEntry, CacheError, LayerCache, NewEntry};
use crate::{tag_for, KeyParts};
use kiln_image::oci::{digest_of, media_type_of, parse_manifest};
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

pub struct RegistryCache {
    pub client: std::sync::Arc<Client>,
    /// Where entries' blobs are downloaded to.
    pub store: BlobStore,
    /// The cache repository (its tag, if any, is ignored).
    pub repo: Reference,
    /// Entries older than this many seconds are misses.
    pub ttl: i64,
}

impl RegistryCache {
    fn tagged(&self, tag: String) -> Reference {
        Reference {
            tag: Some(tag),
            digest: None,
            ..self.repo.clone()
        }
    }

    fn lookup_tag(&self, tag: &str, now: Option<i64>) -> Result<Option<CacheEntry>, RegistryError> {
        let r = self.tagged(tag.to_string());
        let (bytes, _, _) = match fetch_manifest(&self.client, &r, r.manifest_ref()) {
            Ok(m) => m,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let manifest = parse_manifest(&bytes, &format!("cache entry {r}"))?;
        let config_path = fetch_blob(
            &self.client,
            &self.store,
            &r,
            &digest_of(manifest.config()),
            Some(manifest.config().size()),
        )?;
        let config: ImageConfig = std::fs::read(&config_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| RegistryError::Unsupported {
                what: r.to_string(),
                message: "cache entry config unreadable".into(),
            })?;
        let Some(record) = entry_record(&config) else {
            return Ok(None);
        };
        if now.is_some_and(|n| n - record.created > self.ttl) {
            return Ok(None);
        }
        let layer = match manifest.layers().first() {
            None => None,
            Some(desc) => {
                let digest = digest_of(desc);
                let size = desc.size();
                let path: PathBuf = fetch_blob(&self.client, &self.store, &r, &digest, Some(size))?;
                Some(LayerBlob {
                    digest,
                    diff_id: config.rootfs.diff_ids.first().cloned().unwrap_or_default(),
                    size,
                    uncompressed_size: 0,
                    media_type: media_type_of(desc),
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
}

impl LayerCache for RegistryCache {
    fn describe(&self) -> String {
        self.repo.name()
    }

    fn lookup(&self, key: &str, now: i64) -> Result<Option<CacheEntry>, CacheError> {
        Ok(self.lookup_tag(&tag_for(key), Some(now))?)
    }

    fn lookup_slot(&self, slot: &str) -> Result<Option<CacheEntry>, CacheError> {
        Ok(self.lookup_tag(&slot_tag(slot), None)?)
    }

    /// The step's layer (if it made one) and the key's parts, also as the
    /// latest entry of the slot. The manifest goes last, after its blobs.
    fn store(&self, entry: &NewEntry<'_>) -> Result<(), CacheError> {
        let image = entry_image(entry)?;
        push(&self.client, &self.tagged(tag_for(entry.key)), &image)?;
        push(&self.client, &self.tagged(slot_tag(entry.slot)), &image)?;
        Ok(())
    }
}

/// A cache entry as an image: the record in its config, the step's layer
/// (if any) as its layer.
pub(crate) fn entry_image(entry: &NewEntry<'_>) -> Result<BuiltImage, CacheError> {
    let mut config = ImageConfig {
        architecture: entry.architecture.to_string(),
        os: entry.os.to_string(),
        ..Default::default()
    };
    let record = EntryRecord {
        created: entry.created,
        created_by: entry.created_by.to_string(),
        parts: entry.parts.clone(),
    };
    let value = serde_json::to_value(&record).map_err(|e| CacheError::Invalid {
        what: "cache entry".into(),
        message: e.to_string(),
    })?;
    config.other.insert(FIELD.into(), value);
    Ok(BuiltImage::new(
        config,
        entry.layer.into_iter().cloned().collect(),
    )?)
}

/// The record in an entry's config, and whether it is fresh at `now`.
pub(crate) fn entry_record(config: &ImageConfig) -> Option<EntryRecord> {
    config
        .other
        .get(FIELD)
        .and_then(|v| serde_json::from_value::<EntryRecord>(v.clone()).ok())
}

/// The tag of a step slot's latest entry.
pub(crate) fn slot_tag(slot: &str) -> String {
    use sha2::{Digest as _, Sha256};
    format!(
        "slot-{}",
        &hex::encode(Sha256::digest(slot.as_bytes()))[..40]
    )
}
