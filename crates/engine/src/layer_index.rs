//! Base layers' indexes in the layer cache: what a base image's files are
//! (paths, kinds, owners, modes, sizes) without the files. A COPY or
//! WORKDIR needs no more than that of the stage it changes, so a build
//! whose RUN steps all hit the cache downloads no base layer even when a
//! later COPY misses; the layer itself is fetched only when a step reads
//! its files.
//!
//! An index is a cache entry under a key of its own (the layer's diff_id),
//! made the first time a build extracts the layer with the cache on: a
//! layer holding one file, `index.jsonl`, the layer store's index of it.

use crate::clock::now_unclamped;
use crate::layerstore::{LayerStore, StoredLayer};
use kiln_cache::{KeyParts, LayerCache, NewEntry};
use kiln_image::LayerBlob;
use kiln_layer::{Content, Entry, FileKind, LayerOptions};
use std::path::Path;
use std::sync::Arc;

/// The file an index layer holds.
const FILE: &str = "index.jsonl";

/// The parts of an index's key: nothing but the layer's diff_id.
fn parts(diff_id: &str) -> KeyParts {
    KeyParts {
        parent: "kiln.layer-index.v1".into(),
        instruction: diff_id.into(),
        ..Default::default()
    }
}

/// Where a build keeps and finds base layers' indexes.
pub(crate) struct Indexes<'a> {
    pub cache: Arc<dyn LayerCache>,
    /// Whether this build stores entries (not `--no-push-cache`).
    pub publish: bool,
    pub os: &'a str,
    pub architecture: &'a str,
}

impl Indexes<'_> {
    /// Layer `blob` as its index in the cache describes it (its files not
    /// extracted), when the cache has the index. A cache that fails is
    /// only a warning: the layer is then fetched as before.
    /// Indexes read from the cache are unpacked in `work`.
    pub fn described(
        &self,
        store: &LayerStore,
        blob: &LayerBlob,
        work: &Path,
    ) -> Option<StoredLayer> {
        let key = parts(&blob.diff_id).key();
        let entry = match self.cache.lookup(&key, now_unclamped()) {
            Ok(e) => e?,
            Err(e) => {
                tracing::warn!("reading the index of layer {}: {e}", blob.digest);
                return None;
            }
        };
        let layer = entry.layer?;
        let file = work.join(format!("{key}-{}", unique()));
        match unpack(&layer.path, &file)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                store
                    .described(&blob.diff_id, file)
                    .map_err(|e| e.to_string())
            }) {
            Ok(d) => {
                tracing::debug!("layer {} described by its index in the cache", blob.digest);
                Some(d)
            }
            Err(e) => {
                tracing::warn!("the cached index of layer {} is unusable: {e}", blob.digest);
                None
            }
        }
    }

    /// Stores the index of `stored` (base layer `blob`, just extracted) in
    /// the cache unless it is there already (the index layer is written
    /// in `work`).
    pub fn publish(&self, stored: &StoredLayer, blob: &LayerBlob, work: &Path) {
        if !self.publish {
            return;
        }
        let key = parts(&blob.diff_id).key();
        if let Err(e) = self.store_unless_present(&key, stored, blob, work) {
            tracing::warn!("storing the index of layer {}: {e}", blob.digest);
        }
    }

    fn store_unless_present(
        &self,
        key: &str,
        stored: &StoredLayer,
        blob: &LayerBlob,
        work: &Path,
    ) -> Result<(), String> {
        if self
            .cache
            .lookup(key, now_unclamped())
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Ok(());
        }
        let index = stored.index_path();
        let size = std::fs::metadata(index)
            .map_err(|e| format!("{}: {e}", index.display()))?
            .len();
        let entry = Entry {
            path: FILE.into(),
            kind: FileKind::File {
                content: Content::Path(index.to_path_buf()),
                size,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Default::default(),
        };
        std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
        let info = kiln_layer::write_layer(vec![entry], work, &LayerOptions::default())
            .map_err(|e| e.to_string())?;
        let layer = crate::written::blob_of(info);
        let parts = parts(&blob.diff_id);
        self.cache
            .store(&NewEntry {
                key,
                slot: key,
                parts: &parts,
                created_by: &format!("kiln: index of layer {}", blob.diff_id),
                layer: Some(&layer),
                created: now_unclamped(),
                os: self.os,
                architecture: self.architecture,
            })
            .map_err(|e| e.to_string())
    }
}

/// Writes the `index.jsonl` of index layer `blob` to `to`.
fn unpack(blob: &Path, to: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(blob)?;
    let (_, reader) = kiln_layer::open_archive(file)?;
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.as_os_str() != FILE {
            continue;
        }
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut out = std::fs::File::create(to)?;
        std::io::copy(&mut entry, &mut out)?;
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "no {FILE} in the index layer"
    )))
}

/// A number no other call in this process gets: stages describing the
/// same layer at once write files of their own.
pub(crate) fn unique() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
