//! The layer cache in a local OCI image layout (`--cache-repo oci:PATH`):
//! the same entries as in a registry, under the same tags, kept as ref
//! names in `index.json`, with blobs in `blobs/sha256`.

use crate::backend::{CacheEntry, CacheError, LayerCache, NewEntry};
use crate::registry_cache::{entry_image, entry_record, slot_tag};
use crate::tag_for;
use kiln_image::oci::{digest_of, media_type_of, Descriptor};
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
        let blob = |d: &Descriptor| self.layout.blob_path(&digest_of(d));
        if !blob(&desc).is_file() {
            return Ok(None);
        }
        let (_, manifest) = self.layout.manifest(&desc)?;
        if !blob(manifest.config()).is_file() {
            return Ok(None);
        }
        // A layer evicted from kiln's directory: the entry is gone too.
        if manifest.layers().iter().any(|l| !blob(l).is_file()) {
            return Ok(None);
        }
        if now.is_some() {
            for d in std::iter::once(&desc).chain(manifest.layers()) {
                touch(&blob(d));
            }
        }
        let config: ImageConfig =
            serde_json::from_slice(&self.layout.read_blob(&digest_of(manifest.config()))?)
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
        let layer = manifest.layers().first().map(|d| LayerBlob {
            path: blob(d),
            digest: digest_of(d),
            diff_id: config.rootfs.diff_ids.first().cloned().unwrap_or_default(),
            size: d.size(),
            uncompressed_size: 0,
            media_type: media_type_of(d),
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
