//! Where a stage's waiting layers come from: the blob file, or the
//! registry it was pulled from (extracted as it downloads), extracted
//! into the layer store once; or described without extraction.

use crate::error::StepFailure;
use crate::layerstore::{LayerStore, LayerStoreError, StoredLayer};
use kiln_image::LayerBlob;
use kiln_registry::Client;
use std::path::PathBuf;

/// A download read by the extraction while the one who started it
/// finishes it afterwards (the rest of the blob, its digest).
struct SharedDownload(std::sync::Arc<std::sync::Mutex<kiln_registry::pull::BlobDownload>>);

impl std::io::Read for SharedDownload {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        crate::locks::lock(&self.0).read(buf)
    }
}

/// Where waiting layers come from: the blob file, or the registry it was
/// pulled from (extracted as it downloads), extracted into the layer
/// store once.
pub struct LayerAccess<'a> {
    pub layer_store: &'a LayerStore,
    pub client: &'a Client,
    /// Where layers' indexes are written for this build.
    pub work: PathBuf,
    /// Base layers' indexes: kept in the cache, read from it.
    pub indexes: Option<crate::layer_index::Indexes<'a>>,
    /// Which blobs downloaded into their extraction are kept.
    pub base_blobs: &'a crate::options::BaseBlobs,
}

impl LayerAccess<'_> {
    /// Downloads the blob when its file is missing.
    pub fn fetch(&self, blob: &LayerBlob) -> Result<(), StepFailure> {
        Ok(kiln_registry::pull::ensure_blob(
            self.client,
            &blob.path,
            blob.source.as_deref(),
            &blob.digest,
            blob.size,
        )?)
    }

    fn extract(&self, blob: &LayerBlob) -> Result<StoredLayer, StepFailure> {
        let what = format!("layer {}", blob.digest);
        // Stages that start from one image at once: one extracts, the
        // others wait and find it stored.
        let _held = self.layer_store.lock(&blob.diff_id)?;
        let fetched = !self.layer_store.has(&blob.diff_id) && !blob.path.exists();
        let streamed = fetched
            .then(|| self.extract_downloading(blob, &what))
            .and_then(|r| {
                // On failure: downloaded first, with the pull's retries,
                // and extracted from the file; a real fault says so again.
                r.map_err(|e| tracing::debug!("{what}: extraction as it downloaded failed: {e}"))
                    .ok()
            });
        let stored = match streamed {
            Some(stored) => stored,
            None => {
                // Another stage may have extracted it from its download,
                // the blob not kept: no need of the blob then.
                if !self.layer_store.has(&blob.diff_id) {
                    self.fetch(blob)?;
                }
                self.layer_store
                    .get_or_extract(&blob.diff_id, &blob.path, &what)?
            }
        };
        if let (Some(indexes), true) = (&self.indexes, fetched) {
            // Its index spares the next machine this download.
            indexes.publish(&stored, blob, &self.work);
        }
        Ok(stored)
    }

    /// Extracts `blob` as its bytes arrive from the registry, storing and
    /// verifying the blob as they pass: the layer is stored only once the
    /// whole blob is read and its digest matches.
    fn extract_downloading(
        &self,
        blob: &LayerBlob,
        what: &str,
    ) -> Result<StoredLayer, StepFailure> {
        // An output that needs the blob later downloads it again if it
        // was not kept (push and exports ensure their blobs).
        let keep = blob
            .source
            .as_deref()
            .and_then(|s| kiln_registry::Reference::parse(s).ok())
            .is_none_or(|r| self.base_blobs.keeps(&r.registry));
        let download = kiln_registry::pull::open_blob(
            self.client,
            &blob.path,
            blob.source.as_deref(),
            &blob.digest,
            blob.size,
            keep,
        )?;
        let shared = std::sync::Arc::new(std::sync::Mutex::new(download));
        let reader = SharedDownload(shared.clone());
        let source = format!("its download ({})", blob.digest);
        let finish = || {
            crate::locks::lock(&shared)
                .finish()
                .map(|_| ())
                .map_err(|source| LayerStoreError::Blob {
                    what: what.to_string(),
                    source,
                })
        };
        Ok(self
            .layer_store
            .extract_from(&blob.diff_id, || Ok(reader), &source, what, finish)?)
    }

    /// Layer `blob` described, its files not extracted: from its blob
    /// when that is here (reading a tar costs less than creating its
    /// files), else from its index in the cache when that holds one (no
    /// download). `None`: extract it (or it is extracted already).
    pub(crate) fn described(&self, blob: &LayerBlob) -> Option<StoredLayer> {
        if self.layer_store.has(&blob.diff_id) {
            return None;
        }
        if blob.path.exists() {
            let hex = blob
                .diff_id
                .strip_prefix("sha256:")
                .unwrap_or(&blob.diff_id);
            let index = self
                .work
                .join(format!("{hex}-{}.jsonl", crate::layer_index::unique()));
            let what = format!("layer {}", blob.digest);
            return match self
                .layer_store
                .describe_blob(&blob.diff_id, &blob.path, index, &what)
            {
                Ok(d) => Some(d),
                Err(e) => {
                    // Extraction says it again, as an error.
                    tracing::debug!("{what} not described: {e}");
                    None
                }
            };
        }
        blob.source.as_ref()?;
        self.indexes
            .as_ref()?
            .described(self.layer_store, blob, &self.work)
    }

    /// Fetches and extracts `blobs` on as many threads as there are cores
    /// (each layer streams download, decompression and file creation into
    /// its own layer-store directory); the results in the same order.
    pub fn extract_all(&self, blobs: &[&LayerBlob]) -> Result<Vec<StoredLayer>, StepFailure> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(blobs.len());
        if threads <= 1 {
            return blobs.iter().map(|b| self.extract(b)).collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<Result<_, StepFailure>>>> =
            blobs.iter().map(|_| Default::default()).collect();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(blob) = blobs.get(i) else { break };
                    let r = self.extract(blob);
                    *crate::locks::lock(&results[i]) = Some(r);
                });
            }
        });
        results
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or_else(|| Err("a layer was not extracted".to_string().into()))
            })
            .collect()
    }
}
