//! The layer cache in a local OCI image layout (`--cache-repo oci:PATH`):
//! the same entries as in a registry, under the same tags, kept as ref
//! names in `index.json`, with blobs in `blobs/sha256`.

use crate::backend::{CacheEntry, CacheError, LayerCache, NewEntry};
use crate::registry_cache::{entry_image, entry_record, slot_tag};
use crate::tag_for;
use kiln_image::{ImageConfig, LayerBlob, OciLayout};
use kiln_registry::store::touch;

pub struct LayoutCache {
    pub layout: OciLayout,
    pub ttl: i64,
}

impl LayoutCache {
    fn lookup_tag(&self, tag: &str, now: Option<i64>) -> Result<Option<CacheEntry>, CacheError> {
        let Some(desc) = self.layout.find(tag)? else {
            return Ok(None);
        };
        if !self.layout.blob_path(&desc.digest).is_file() {
            return Ok(None);
        }
        let (_, manifest) = self.layout.manifest(&desc)?;
        if !self.layout.blob_path(&manifest.config.digest).is_file() {
            return Ok(None);
        }
        // A layer evicted from kiln's directory: the entry is gone too.
        if manifest
            .layers
            .iter()
            .any(|l| !self.layout.blob_path(&l.digest).is_file())
        {
            return Ok(None);
        }
        if now.is_some() {
            for d in std::iter::once(&desc.digest).chain(manifest.layers.iter().map(|l| &l.digest))
            {
                touch(&self.layout.blob_path(d));
            }
        }
        let config: ImageConfig = serde_json::from_slice(
            &self.layout.read_blob(&manifest.config.digest)?,
        )
        .map_err(|e| CacheError::Invalid {
            what: format!("{}: {tag}", self.describe()),
            message: e.to_string(),
        })?;
        let Some(record) = entry_record(&config) else {
            return Ok(None);
        };
        if now.is_some_and(|n| n - record.created > self.ttl) {
            return Ok(None);
        }
        let layer = manifest.layers.first().map(|d| LayerBlob {
            path: self.layout.blob_path(&d.digest),
            digest: d.digest.clone(),
            diff_id: config.rootfs.diff_ids.first().cloned().unwrap_or_default(),
            size: d.size,
            uncompressed_size: 0,
            media_type: d.media_type.clone(),
            source: None,
        });
        Ok(Some(CacheEntry {
            parts: record.parts,
            created_by: record.created_by,
            created: record.created,
            layer,
        }))
    }
}

impl LayerCache for LayoutCache {
    fn describe(&self) -> String {
        format!("oci:{}", self.layout.dir().display())
    }

    fn lookup(&self, key: &str, now: i64) -> Result<Option<CacheEntry>, CacheError> {
        self.lookup_tag(&tag_for(key), Some(now))
    }

    fn lookup_slot(&self, slot: &str) -> Result<Option<CacheEntry>, CacheError> {
        self.lookup_tag(&slot_tag(slot), None)
    }

    fn store(&self, entry: &NewEntry<'_>) -> Result<(), CacheError> {
        let image = entry_image(entry)?;
        for tag in [tag_for(entry.key), slot_tag(entry.slot)] {
            self.layout.write_image(&image, &tag)?;
        }
        Ok(())
    }
}
