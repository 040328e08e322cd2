//! Extracted layers, kept once per diff_id under kiln's directory:
//! `layers/<diff_id hex>/root/` holds the files, `entries.json` what the tar
//! said about each (owners, modes, devices, whiteouts). A layer is extracted
//! into a temporary directory and renamed into place only when complete and
//! its diff_id checked, so concurrent builds and crashes never see half a
//! layer; the loser of a race simply uses the winner's copy.

use kiln_layer::apply::{extract_layer_with, AppliedEntry, ExtractOptions};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct StoredLayer {
    pub root: PathBuf,
    pub entries: Vec<AppliedEntry>,
    pub uncompressed_size: u64,
    /// `root` carries overlay whiteouts and opaque marks: it can be an
    /// overlay lower layer as it is.
    pub overlay_ready: bool,
}

impl StoredLayer {
    /// `root` when it can be an overlay lower layer.
    pub fn overlay_ready_dir(&self) -> Option<PathBuf> {
        self.overlay_ready.then(|| self.root.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LayerStoreError {
    #[error("{what}: invalid diff_id {diff_id:?}")]
    InvalidDiffId { what: String, diff_id: String },
    #[error("{what}: diff_id mismatch: the config says {expected}, the layer is sha256:{actual}")]
    DiffIdMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Extract(#[from] kiln_layer::LayerError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: extracted layer missing from {dir}")]
    Missing { what: String, dir: String },
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> LayerStoreError {
    move |source| LayerStoreError::Io { context, source }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Index {
    uncompressed_size: u64,
    #[serde(default)]
    overlay_ready: bool,
    entries: Vec<AppliedEntry>,
}

impl LayerStore {
    pub fn new(dir: impl Into<PathBuf>) -> LayerStore {
        // v2: entries record file kinds as kiln-layer's `FileKind`.
        LayerStore {
            dir: dir.into().join("v2"),
        }
    }

    /// Whether layer `diff_id` is extracted here already.
    pub fn has(&self, diff_id: &str) -> bool {
        let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
        hex.len() == 64 && self.dir.join(hex).join("entries.json").is_file()
    }

    /// The extracted layer `diff_id` (`sha256:<hex>`), extracting `blob`
    /// first if it is not stored yet.
    pub fn get_or_extract(
        &self,
        diff_id: &str,
        blob: &Path,
        what: &str,
    ) -> Result<StoredLayer, LayerStoreError> {
        let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LayerStoreError::InvalidDiffId {
                what: what.into(),
                diff_id: diff_id.into(),
            });
        }
        let final_dir = self.dir.join(hex);
        if let Some(layer) = self.load(&final_dir) {
            crate::evict::touch(&final_dir.join("entries.json"));
            return Ok(layer);
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(io(format!("creating {}", self.dir.display())))?;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let result = (|| {
            let root = tmp.join("root");
            std::fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
            let file = std::fs::File::open(blob)
                .map_err(io(format!("{what}: opening {}", blob.display())))?;
            let extracted = extract_layer_with(
                std::io::BufReader::with_capacity(1 << 20, file),
                &root,
                what,
                &ExtractOptions {
                    overlay_markers: true,
                },
            )?;
            if extracted.diff_id != hex {
                return Err(LayerStoreError::DiffIdMismatch {
                    what: what.into(),
                    expected: diff_id.into(),
                    actual: extracted.diff_id,
                });
            }
            let index = Index {
                uncompressed_size: extracted.uncompressed_size,
                overlay_ready: extracted.overlay_ready,
                entries: extracted.entries,
            };
            let json = serde_json::to_vec(&index).map_err(std::io::Error::other);
            json.and_then(|j| std::fs::write(tmp.join("entries.json"), j))
                .map_err(io("writing the layer index".into()))?;
            // What the entry takes on disk, for --kiln-dir-max-size.
            std::fs::write(tmp.join("size"), extracted.uncompressed_size.to_string())
                .map_err(io("writing the layer size".into()))?;
            Ok(())
        })();
        if let Err(e) = result {
            remove_tree(&tmp);
            return Err(e);
        }
        if std::fs::rename(&tmp, &final_dir).is_err() {
            // Another build stored it first: use theirs.
            remove_tree(&tmp);
        }
        self.load(&final_dir)
            .ok_or_else(|| LayerStoreError::Missing {
                what: what.into(),
                dir: final_dir.display().to_string(),
            })
    }

    fn load(&self, dir: &Path) -> Option<StoredLayer> {
        let bytes = std::fs::read(dir.join("entries.json")).ok()?;
        let index: Index = serde_json::from_slice(&bytes).ok()?;
        Some(StoredLayer {
            root: dir.join("root"),
            entries: index.entries,
            uncompressed_size: index.uncompressed_size,
            overlay_ready: index.overlay_ready,
        })
    }
}

/// Remove a directory tree, making directories writable first (layers may
/// hold read-only directories).
pub(crate) fn remove_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if e.file_type().is_dir() {
            let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
