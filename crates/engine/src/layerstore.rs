//! Extracted layers, kept once per diff_id under kiln's directory:
//! `layers/v3/<diff_id hex>/root/` holds the files, `index.jsonl` what the
//! tar said about each (owners, modes, devices, whiteouts): a header line,
//! then one entry a line, opaque directories first, read as a stream so a
//! 200k-file layer is never a list in memory. A layer is extracted
//! into a temporary directory and renamed into place only when complete and
//! its diff_id checked, so concurrent builds and crashes never see half a
//! layer; the loser of a race simply uses the winner's copy.

use kiln_layer::apply::{extract_layer_to, AppliedEntry, ExtractOptions};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct StoredLayer {
    pub root: PathBuf,
    /// `index.jsonl`: [`StoredLayer::entries`] reads it.
    index: PathBuf,
    pub uncompressed_size: u64,
    /// `root` carries overlay whiteouts and opaque marks: it can be an
    /// overlay lower layer as it is.
    pub overlay_ready: bool,
}

impl StoredLayer {
    /// The index file: a header line, then the entries.
    pub fn index_path(&self) -> &Path {
        &self.index
    }

    /// Whether `other` lists the same entries (headers aside).
    pub fn same_entries(&self, other: &StoredLayer) -> Result<bool, LayerStoreError> {
        let mut a = self.entries()?;
        let mut b = other.entries()?;
        loop {
            match (a.next(), b.next()) {
                (None, None) => return Ok(true),
                (Some(x), Some(y)) => {
                    if x? != y? {
                        return Ok(false);
                    }
                }
                _ => return Ok(false),
            }
        }
    }

    /// `root` when it can be an overlay lower layer.
    pub fn overlay_ready_dir(&self) -> Option<PathBuf> {
        self.overlay_ready.then(|| self.root.clone())
    }

    /// The layer's entries, opaque directories first, one at a time.
    pub fn entries(
        &self,
    ) -> Result<impl Iterator<Item = Result<AppliedEntry, LayerStoreError>>, LayerStoreError> {
        use std::io::BufRead;
        let context = format!("reading {}", self.index.display());
        let file = std::fs::File::open(&self.index).map_err(io(context.clone()))?;
        let lines = std::io::BufReader::with_capacity(1 << 16, file)
            .lines()
            .skip(1);
        Ok(lines.map(move |line| {
            let line = line.map_err(io(context.clone()))?;
            serde_json::from_str(&line).map_err(|e| LayerStoreError::Io {
                context: context.clone(),
                source: std::io::Error::other(e),
            })
        }))
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
    #[error("{what}: {source}")]
    Blob {
        what: String,
        #[source]
        source: kiln_registry::RegistryError,
    },
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> LayerStoreError {
    move |source| LayerStoreError::Io { context, source }
}

/// The index file of a stored layer.
pub(crate) const INDEX: &str = "index.jsonl";

/// The index's first line.
#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    uncompressed_size: u64,
    overlay_ready: bool,
}

/// Writes the header, then the entries a line each, opaque directories
/// first (a reader applies them before anything else of the layer): the
/// others are copied from the lines extraction wrote.
fn write_index(
    path: &Path,
    extracted: &kiln_layer::apply::Extracted,
    opaque: &[AppliedEntry],
    rest: &Path,
) -> Result<(), LayerStoreError> {
    use std::io::Write;
    let context = || format!("writing {}", path.display());
    let file = std::fs::File::create(path).map_err(io(context()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
    let header = Header {
        uncompressed_size: extracted.uncompressed_size,
        overlay_ready: extracted.overlay_ready,
    };
    json_line(&mut out, &header).map_err(io(context()))?;
    for e in opaque {
        json_line(&mut out, e).map_err(io(context()))?;
    }
    let mut lines = std::fs::File::open(rest).map_err(io(context()))?;
    std::io::copy(&mut lines, &mut out).map_err(io(context()))?;
    out.flush().map_err(io(context()))
}

/// Reads a layer with `read` (extraction, or a description), writing the
/// records it hands its sink to `index` as they come (opaque directories,
/// which the index lists first, are few and kept aside); checks the
/// layer's diff_id.
fn record_index(
    index: &Path,
    diff_id: &str,
    what: &str,
    read: impl FnOnce(
        &mut dyn FnMut(AppliedEntry) -> std::io::Result<()>,
    ) -> Result<kiln_layer::apply::Extracted, kiln_layer::LayerError>,
) -> Result<kiln_layer::apply::Extracted, LayerStoreError> {
    let part = index.with_extension("part");
    let context = || format!("writing {}", part.display());
    let mut lines = std::io::BufWriter::with_capacity(
        1 << 16,
        std::fs::File::create(&part).map_err(io(context()))?,
    );
    let mut opaque = Vec::new();
    let read = read(&mut |e| match e.kind {
        kiln_layer::apply::AppliedKind::Opaque => {
            opaque.push(e);
            Ok(())
        }
        _ => json_line(&mut lines, &e),
    })?;
    std::io::Write::flush(&mut lines).map_err(io(context()))?;
    drop(lines);
    let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
    if read.diff_id != hex {
        return Err(LayerStoreError::DiffIdMismatch {
            what: what.into(),
            expected: diff_id.into(),
            actual: read.diff_id,
        });
    }
    write_index(index, &read, &opaque, &part)?;
    std::fs::remove_file(&part).map_err(io(context()))?;
    Ok(read)
}

/// One JSON value and a newline.
fn json_line(out: &mut impl std::io::Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

impl LayerStore {
    pub fn new(dir: impl Into<PathBuf>) -> LayerStore {
        // v2: entries record file kinds as kiln-layer's `FileKind`.
        // v3: the index is JSON lines, read as a stream.
        LayerStore {
            dir: dir.into().join("v3"),
        }
    }

    /// Holds layer `diff_id` for this caller alone (other threads and
    /// builds wait): one fetches and extracts it, the others then find it.
    pub fn lock(&self, diff_id: &str) -> Result<std::fs::File, LayerStoreError> {
        let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LayerStoreError::InvalidDiffId {
                what: "a layer".into(),
                diff_id: diff_id.into(),
            });
        }
        // Each layer's files land in block groups of their own (spread.rs).
        kiln_layer::spread::create_spread_dir(&self.dir)
            .map_err(io(format!("creating {}", self.dir.display())))?;
        let path = self.dir.join(format!(".{hex}.lock"));
        let f = std::fs::File::create(&path).map_err(io(format!("creating {}", path.display())))?;
        f.lock()
            .map_err(io(format!("locking {}", path.display())))?;
        Ok(f)
    }

    /// Whether layer `diff_id` is extracted here already.
    pub fn has(&self, diff_id: &str) -> bool {
        let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
        hex.len() == 64 && self.dir.join(hex).join(INDEX).is_file()
    }

    /// The extracted layer `diff_id` (`sha256:<hex>`), extracting `blob`
    /// first if it is not stored yet.
    pub fn get_or_extract(
        &self,
        diff_id: &str,
        blob: &Path,
        what: &str,
    ) -> Result<StoredLayer, LayerStoreError> {
        let opened =
            || std::fs::File::open(blob).map_err(io(format!("{what}: opening {}", blob.display())));
        let source = blob.display().to_string();
        self.extract_from(diff_id, opened, &source, what, || Ok(()))
    }

    /// The extracted layer `diff_id`, extracting what `open` gives (a
    /// blob's file, or its download as it arrives) if it is not stored
    /// yet. `check` runs after the last entry, before the layer is
    /// stored: when it fails, nothing is.
    pub fn extract_from<R: std::io::Read + Send>(
        &self,
        diff_id: &str,
        open: impl FnOnce() -> Result<R, LayerStoreError>,
        source: &str,
        what: &str,
        check: impl FnOnce() -> Result<(), LayerStoreError>,
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
            kiln_registry::store::touch(&final_dir.join(INDEX));
            return Ok(layer);
        }
        // Each layer's files land in block groups of their own (spread.rs).
        kiln_layer::spread::create_spread_dir(&self.dir)
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
            // The diff_id is checked (record_index): no gzip CRC.
            let (_, decompressed) =
                kiln_layer::open_layer(std::io::BufReader::with_capacity(1 << 20, open()?))
                    .map_err(io(format!("{what}: reading {source}")))?;
            // Decompressed on one core while the files are made on the other.
            let extracted = std::thread::scope(|scope| {
                let tar = kiln_layer::read_ahead::ReadAhead::start(scope, decompressed);
                record_index(&tmp.join(INDEX), diff_id, what, |sink| {
                    extract_layer_to(
                        tar,
                        &root,
                        what,
                        &ExtractOptions {
                            overlay_markers: true,
                        },
                        sink,
                    )
                })
            })?;
            // What the entry takes on disk, for --kiln-dir-max-size.
            std::fs::write(tmp.join("size"), extracted.uncompressed_size.to_string())
                .map_err(io("writing the layer size".into()))?;
            check()
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

    /// Layer `diff_id` described from its blob, nothing extracted: its
    /// index written to `index`, its files where extraction will put them.
    pub fn describe_blob(
        &self,
        diff_id: &str,
        blob: &Path,
        index: PathBuf,
        what: &str,
    ) -> Result<StoredLayer, LayerStoreError> {
        if let Some(dir) = index.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        let file =
            std::fs::File::open(blob).map_err(io(format!("{what}: opening {}", blob.display())))?;
        record_index(&index, diff_id, what, |sink| {
            kiln_layer::apply::describe_layer_to(
                std::io::BufReader::with_capacity(1 << 20, file),
                what,
                sink,
            )
        })?;
        self.described(diff_id, index)
    }

    /// Layer `diff_id` as `index` (an index file made elsewhere) describes
    /// it, its files where extraction will put them: a tree can hold its
    /// entries before the layer is fetched.
    pub fn described(&self, diff_id: &str, index: PathBuf) -> Result<StoredLayer, LayerStoreError> {
        let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LayerStoreError::InvalidDiffId {
                what: "a described layer".into(),
                diff_id: diff_id.into(),
            });
        }
        read_header(self.dir.join(hex).join("root"), index.clone()).ok_or_else(|| {
            LayerStoreError::Missing {
                what: format!("the index of layer {diff_id}"),
                dir: index.display().to_string(),
            }
        })
    }

    /// Whether stored layer `hex` reads whole: its index to the end, its
    /// files' directory there. `Err` says what is wrong.
    pub fn check(&self, hex: &str) -> Result<(), LayerStoreError> {
        let dir = self.dir.join(hex);
        let missing = |what: String| LayerStoreError::Missing {
            what,
            dir: dir.display().to_string(),
        };
        let layer = self
            .load(&dir)
            .ok_or_else(|| missing(format!("{INDEX}'s header")))?;
        if !layer.root.is_dir() {
            return Err(missing("its files' directory".into()));
        }
        for entry in layer.entries()? {
            entry?;
        }
        Ok(())
    }

    /// A stored layer: its header line only (entries are read later).
    fn load(&self, dir: &Path) -> Option<StoredLayer> {
        read_header(dir.join("root"), dir.join(INDEX))
    }
}

/// A layer whose files are (or will be) in `root`, from its index's header.
fn read_header(root: PathBuf, index: PathBuf) -> Option<StoredLayer> {
    use std::io::BufRead;
    let mut first = String::new();
    std::io::BufReader::new(std::fs::File::open(&index).ok()?)
        .read_line(&mut first)
        .ok()?;
    let header: Header = serde_json::from_str(&first).ok()?;
    Some(StoredLayer {
        root,
        index,
        uncompressed_size: header.uncompressed_size,
        overlay_ready: header.overlay_ready,
    })
}

/// Remove a directory tree, making directories writable first (layers may
/// hold read-only directories).
pub(crate) fn remove_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in walkdir::WalkDir::new(dir)
        .follow_root_links(false)
        .into_iter()
        .flatten()
    {
        if e.file_type().is_dir() {
            let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index as the cache could give it: header, then entry lines.
    fn index(dir: &Path, name: &str, header: &str, lines: &[&str]) -> StoredLayer {
        let path = dir.join(name);
        let mut text = format!("{header}\n");
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        let store = LayerStore::new(dir);
        store
            .described(&format!("sha256:{}", "a".repeat(64)), path)
            .unwrap()
    }

    #[test]
    fn a_description_matches_only_the_same_entries() {
        let d = tempfile::tempdir().unwrap();
        let dir_a = r#"{"path":"a","kind":{"Node":"Dir"},"mode":493,"uid":0,"gid":0,"mtime":0}"#;
        let link_a = r#"{"path":"a","kind":{"Node":{"Symlink":"/etc"}},"mode":511,"uid":0,"gid":0,"mtime":0}"#;
        let file = r#"{"path":"a/b","kind":{"Node":{"File":{"size":1}}},"mode":420,"uid":0,"gid":0,"mtime":0}"#;
        let h1 = r#"{"uncompressed_size":1,"overlay_ready":true}"#;
        let h2 = r#"{"uncompressed_size":1,"overlay_ready":false}"#;
        let real = index(d.path(), "real", h1, &[dir_a, file]);
        let same = index(d.path(), "same", h2, &[dir_a, file]);
        let lying = index(d.path(), "lying", h1, &[link_a, file]);
        let short = index(d.path(), "short", h1, &[dir_a]);
        assert!(real.same_entries(&same).unwrap(), "headers aside");
        assert!(!real.same_entries(&lying).unwrap());
        assert!(!real.same_entries(&short).unwrap());
        assert!(!short.same_entries(&real).unwrap());
    }
}
