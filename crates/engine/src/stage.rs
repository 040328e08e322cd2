//! A stage's state while it builds (file tree, config, layers, args) and
//! how a stage starts: from scratch, from an earlier stage, or from an
//! image (pulled, or read from `--cache-dir`, its layers from the layer
//! store).

use crate::error::StepFailure;
use crate::fstree::FsTree;
use crate::layerstore::{LayerStore, LayerStoreError, StoredLayer};
use crate::options::BuildOptions;
use kiln_dockerfile::Platform;
use kiln_image::manifest::{MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR};
use kiln_image::{ImageConfig, LayerBlob};
use kiln_registry::{BlobStore, Client, Reference, WantedPlatform};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One layer of a stage: its blob, and the layer as an overlay-ready
/// directory where one exists (base layers from the layer store, RUN
/// upper directories, COPY layers once extracted).
#[derive(Debug, Clone)]
pub struct Layer {
    pub blob: LayerBlob,
    pub dir: Option<PathBuf>,
}

/// A stage's root written out as one directory, and the overlay upper
/// directories of the steps run on it since (newest last).
#[derive(Debug, Clone)]
pub struct Rootfs {
    pub base: PathBuf,
    pub uppers: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct StageState {
    /// The files of `layers[..applied]`: the tree is the stage's only
    /// once [`StageState::force`] applied the rest.
    pub tree: FsTree,
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    /// How many of `layers` the tree holds. Base layers and cache hits
    /// wait until a step reads the files: a build whose steps all hit the
    /// cache never downloads or extracts them.
    pub applied: usize,
    /// The whole tree of a shared (finished) stage whose layers were not
    /// all applied, made once when another stage reads it.
    forced: std::sync::OnceLock<FsTree>,
    /// Layers (places in `layers`) the tree holds as their index in the
    /// cache described them, their files not extracted yet: fetched and
    /// extracted before a step reads files.
    described: Vec<(usize, StoredLayer)>,
    /// `described` extracted and checked for readers of the stage.
    described_on_disk: std::sync::OnceLock<()>,
    /// Declared ARGs with values, visible to this stage's steps.
    pub args: BTreeMap<String, String>,
    pub cmd_set: bool,
    /// The stage's root on disk, once a step needed it as a directory.
    pub rootfs: Option<Rootfs>,
    /// Cache key of the last step (the base for the first).
    pub cache_key: String,
}

impl StageState {
    /// An empty stage for `platform`.
    pub fn scratch(platform: &Platform, now: i64) -> StageState {
        let mut config = ImageConfig {
            architecture: platform.arch.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            ..Default::default()
        };
        config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
        // BuildKit's emptyImage (dockerfile2llb/image.go) sets both.
        config.config.working_dir = "/".into();
        StageState {
            tree: FsTree::new(now),
            config,
            layers: Vec::new(),
            applied: 0,
            forced: Default::default(),
            described: Vec::new(),
            described_on_disk: Default::default(),
            args: BTreeMap::new(),
            cmd_set: false,
            rootfs: None,
            cache_key: format!("scratch:{platform}"),
        }
    }

    /// The same stage as the start of another: no ARGs, no CMD set yet.
    pub fn as_base(&self) -> StageState {
        StageState {
            args: BTreeMap::new(),
            cmd_set: false,
            ..self.clone()
        }
    }

    /// The platform the stage's programs are for (its image's, which a
    /// stage built on another stage inherits).
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.config.os.clone(),
            arch: self.config.architecture.clone(),
            variant: self.config.variant.clone(),
        }
    }

    /// A variable as a step sees it: ENV wins over ARG.
    pub fn lookup(&self, key: &str) -> Option<String> {
        self.config
            .config
            .env_get(key)
            .map(String::from)
            .or_else(|| self.args.get(key).cloned())
    }

    pub fn blobs(&self) -> Vec<LayerBlob> {
        self.layers.iter().map(|l| l.blob.clone()).collect()
    }

    /// Records a layer the tree already holds (a step's own change).
    pub fn push_applied(&mut self, layer: Layer) {
        debug_assert_eq!(self.applied, self.layers.len());
        self.layers.push(layer);
        self.applied = self.layers.len();
    }

    /// Makes the tree the stage's: fetches and extracts the layers it does
    /// not hold yet (several at once) and applies them in order.
    pub fn force(&mut self, layers: &LayerAccess) -> Result<(), StepFailure> {
        self.extract_described(layers)?;
        if self.applied == self.layers.len() {
            return Ok(());
        }
        let stored = match self.forced.take() {
            // Another stage read the whole tree already: only the layers'
            // directories are wanted (extracted by then).
            Some(whole) => {
                self.tree = whole;
                layers.extract_all(&blobs_of(&self.layers[self.applied..]))?
            }
            None => {
                let waiting = blobs_of(&self.layers[self.applied..]);
                apply_waiting(&mut self.tree, &waiting, layers)?
            }
        };
        for (layer, s) in self.layers[self.applied..].iter_mut().zip(stored) {
            layer.blob.uncompressed_size = s.uncompressed_size;
            layer.dir = s.overlay_ready_dir();
        }
        self.applied = self.layers.len();
        // A directory written out before no longer matches the tree.
        self.rootfs = None;
        Ok(())
    }

    /// Makes the tree the stage's as far as what its files are (paths,
    /// kinds, owners, modes): what a COPY or WORKDIR reads. A base layer
    /// whose index the cache holds is applied from that index, neither
    /// fetched nor extracted; the others as [`StageState::force`] does.
    pub fn describe(&mut self, layers: &LayerAccess) -> Result<(), StepFailure> {
        if self.applied == self.layers.len() {
            return Ok(());
        }
        if self.forced.get().is_some() {
            // Another stage made the whole tree already.
            return self.force(layers);
        }
        let first = self.applied;
        // Layers described now are not on disk yet.
        self.described_on_disk = Default::default();
        let described: Vec<Option<StoredLayer>> = self.layers[first..]
            .iter()
            .map(|l| layers.described(&l.blob))
            .collect();
        let extract: Vec<&LayerBlob> = self.layers[first..]
            .iter()
            .zip(&described)
            .filter(|(_, d)| d.is_none())
            .map(|(l, _)| &l.blob)
            .collect();
        let mut stored = layers.extract_all(&extract)?.into_iter();
        release_freed_memory();
        for (i, d) in described.into_iter().enumerate() {
            let layer = &mut self.layers[first + i];
            let s = match d {
                Some(d) => {
                    self.described.push((first + i, d.clone()));
                    d
                }
                None => {
                    let s = stored.next().ok_or_else(|| {
                        StepFailure::from("a layer was not extracted".to_string())
                    })?;
                    layer.dir = s.overlay_ready_dir();
                    s
                }
            };
            layer.blob.uncompressed_size = s.uncompressed_size;
            apply(&mut self.tree, &s, &layer.blob.digest)?;
        }
        self.applied = self.layers.len();
        self.rootfs = None;
        Ok(())
    }

    /// Fetches and extracts the layers the tree holds only as described.
    fn extract_described(&mut self, layers: &LayerAccess) -> Result<(), StepFailure> {
        if self.described.is_empty() {
            return Ok(());
        }
        let places = std::mem::take(&mut self.described);
        let stored = extract_and_match(&places, &self.layers, layers)?;
        for ((i, _), s) in places.iter().zip(stored) {
            self.layers[*i].dir = s.overlay_ready_dir();
        }
        Ok(())
    }

    /// The stage's whole tree for reading (another stage copies or mounts
    /// from it): the tree itself, or a copy with the waiting layers
    /// applied, made once.
    pub fn files(&self, layers: &LayerAccess) -> Result<&FsTree, StepFailure> {
        if !self.described.is_empty() && self.described_on_disk.get().is_none() {
            // The tree names files these layers hold: extract them (once:
            // each check reads both indexes whole).
            extract_and_match(&self.described, &self.layers, layers)?;
            let _ = self.described_on_disk.set(());
        }
        if self.applied == self.layers.len() {
            return Ok(&self.tree);
        }
        if let Some(t) = self.forced.get() {
            return Ok(t);
        }
        let mut tree = self.tree.clone();
        apply_waiting(&mut tree, &blobs_of(&self.layers[self.applied..]), layers)?;
        let _ = self.forced.set(tree);
        self.forced
            .get()
            .ok_or_else(|| StepFailure::from("the stage's files went missing".to_string()))
    }
}

/// Extracts the described layers, each checked against its description:
/// the tree was built from the description (an index the cache gave,
/// which nothing else vouches for), and its files must be what the layer
/// holds; a symlink where the index said a folder would lead reads of
/// the tree's files elsewhere.
fn extract_and_match(
    described: &[(usize, StoredLayer)],
    all: &[Layer],
    layers: &LayerAccess,
) -> Result<Vec<StoredLayer>, StepFailure> {
    let blobs: Vec<&LayerBlob> = described.iter().map(|(i, _)| &all[*i].blob).collect();
    let stored = layers.extract_all(&blobs)?;
    for ((i, d), s) in described.iter().zip(&stored) {
        if !d.same_entries(s)? {
            return Err(format!(
                "layer {}: its files are not what the cached index described; remove the cache entry (or build with --no-cache)",
                all[*i].blob.digest
            )
            .into());
        }
    }
    Ok(stored)
}

fn blobs_of(layers: &[Layer]) -> Vec<&LayerBlob> {
    layers.iter().map(|l| &l.blob).collect()
}

/// Fetches and extracts `blobs` (several at once), then applies them to
/// `tree` in order; returns the stored layers.
fn apply_waiting(
    tree: &mut FsTree,
    blobs: &[&LayerBlob],
    layers: &LayerAccess,
) -> Result<Vec<StoredLayer>, StepFailure> {
    let stored = layers.extract_all(blobs)?;
    release_freed_memory();
    for (s, b) in stored.iter().zip(blobs) {
        apply(tree, s, &b.digest)?;
    }
    Ok(stored)
}

/// Hands memory the extraction threads freed back to the system before
/// the tree grows: glibc keeps it in their arenas otherwise, and the
/// build's peak is the sum of both.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Applies a stored layer's entries to `tree`, streaming them from its
/// index.
fn apply(tree: &mut FsTree, stored: &StoredLayer, digest: &str) -> Result<(), StepFailure> {
    let mut failed = None;
    let entries = stored.entries()?.map_while(|r| match r {
        Ok(e) => Some(e),
        Err(e) => {
            failed = Some(e);
            None
        }
    });
    tree.apply_layer(&stored.root, entries)
        .map_err(|e| format!("layer {digest}: {e}"))?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// A download read by the extraction while the one who started it
/// finishes it afterwards (the rest of the blob, its digest).
struct SharedDownload(std::sync::Arc<std::sync::Mutex<kiln_registry::pull::BlobDownload>>);

impl std::io::Read for SharedDownload {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        crate::locks::lock(&self.0).read(buf)
    }
}

/// Where waiting layers come from: the blob file (fetched from the
/// registry it was pulled from when missing), extracted into the layer
/// store once.
pub struct LayerAccess<'a> {
    pub layer_store: &'a LayerStore,
    pub client: &'a Client,
    /// Where layers' indexes are written for this build.
    pub work: PathBuf,
    /// Base layers' indexes: kept in the cache, read from it.
    pub indexes: Option<crate::layer_index::Indexes<'a>>,
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
        let stored = match fetched {
            true => match self.extract_downloading(blob, &what) {
                Ok(stored) => stored,
                Err(e) => {
                    // Downloaded first, with the pull's retries, and
                    // extracted from the file: a real fault says so again.
                    tracing::debug!("{what}: extraction as it downloaded failed: {e}");
                    self.fetch(blob)?;
                    self.layer_store
                        .get_or_extract(&blob.diff_id, &blob.path, &what)?
                }
            },
            false => {
                self.fetch(blob)?;
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
        let download = kiln_registry::pull::open_blob(
            self.client,
            &blob.path,
            blob.source.as_deref(),
            &blob.digest,
            blob.size,
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
    fn described(&self, blob: &LayerBlob) -> Option<StoredLayer> {
        if self.layer_store.has(&blob.diff_id) {
            return None;
        }
        if blob.path.exists() {
            let hex = blob
                .diff_id
                .strip_prefix("sha256:")
                .unwrap_or(&blob.diff_id);
            let index = self.work.join(format!("{hex}-{}.jsonl", unique()));
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

/// A number no other call in this process gets: stages describing the
/// same layer at once write files of their own.
pub(crate) fn unique() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn wanted(platform: &Platform) -> WantedPlatform {
    WantedPlatform {
        os: platform.os.clone(),
        architecture: platform.arch.clone(),
        variant: platform.variant.clone(),
    }
}

/// An image's config alone, no layer read (`--cache-dir` first, else the
/// registry): what build checks need to know of a base image.
pub fn image_config(
    opts: &BuildOptions,
    reference: &str,
    platform: &Platform,
) -> Result<ImageConfig, StepFailure> {
    let client = Client::new(opts.registry.clone());
    let blob_store = BlobStore::new(opts.kiln_dir.join("blobs"));
    let source = ImageSource {
        opts,
        client: &client,
        blob_store: &blob_store,
        now: 0,
    };
    let (pulled, _) = source.pulled(&Reference::parse(reference)?, platform)?;
    Ok(pulled.config)
}

/// Where images come from: `--cache-dir`, else the registry.
pub(crate) struct ImageSource<'a> {
    pub opts: &'a BuildOptions,
    pub client: &'a Client,
    pub blob_store: &'a BlobStore,
    pub now: i64,
}

impl ImageSource<'_> {
    /// The image's manifest and config, no layer downloaded: from
    /// `--cache-dir` (then `true`), else the registry.
    fn pulled(
        &self,
        r: &Reference,
        platform: &Platform,
    ) -> Result<(kiln_registry::PulledImage, bool), StepFailure> {
        if let Some(dir) = &self.opts.cache_dir {
            if let Some(p) = kiln_registry::local::load_local(dir, r)? {
                return Ok((p, true));
            }
        }
        let wanted = wanted(platform);
        let pulled = kiln_registry::pull::pull_lazily(self.client, self.blob_store, r, &wanted)?;
        Ok((pulled, false))
    }

    /// The state an image starts a stage with: its config and layers, none
    /// downloaded or extracted yet ([`StageState::force`] does that when a
    /// step reads the files).
    pub fn stage_state(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<StageState, StepFailure> {
        let r = Reference::parse(reference)?;
        let (pulled, local) = self.pulled(&r, platform)?;
        if local {
            tracing::info!("using {r} from --cache-dir");
        }
        let diff_ids = pulled.config.rootfs.diff_ids.clone();
        if diff_ids.len() != pulled.layers.len() {
            return Err(format!(
                "{r}: the config lists {} layers, the manifest {}",
                diff_ids.len(),
                pulled.layers.len()
            )
            .into());
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in pulled.layers.iter().zip(&diff_ids) {
            let what = format!("layer {} of {r}", layer.digest);
            let media_type = oci_layer_media_type(&layer.media_type)
                .ok_or_else(|| format!("{what}: unsupported media type {:?}", layer.media_type))?;
            layers.push(Layer {
                dir: None,
                blob: LayerBlob {
                    digest: layer.digest.clone(),
                    diff_id: diff_id.clone(),
                    size: layer.size,
                    uncompressed_size: 0,
                    media_type,
                    path: layer.path.clone(),
                    source: Some(pulled.source.name()),
                },
            });
        }
        let mut config = pulled.config;
        if config.config.env_get("PATH").is_none() {
            config.config.env_set("PATH", DEFAULT_PATH);
        }
        if config.architecture != platform.arch || config.os != platform.os {
            tracing::warn!(
                "{r} is {}/{}, not the requested {}/{}",
                config.os,
                config.architecture,
                platform.os,
                platform.arch
            );
        }
        Ok(StageState {
            tree: FsTree::new(self.now),
            config,
            layers,
            applied: 0,
            forced: Default::default(),
            described: Vec::new(),
            described_on_disk: Default::default(),
            args: BTreeMap::new(),
            cmd_set: false,
            rootfs: None,
            cache_key: format!("image:{}", pulled.manifest_digest),
        })
    }
}

/// The OCI media type of a layer blob (docker's names map to OCI's).
fn oci_layer_media_type(media_type: &str) -> Option<String> {
    Some(
        match media_type {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.oci.image.layer.v1.tar+gzip" => MEDIA_TYPE_LAYER_GZIP,
            "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.oci.image.layer.v1.tar" => MEDIA_TYPE_LAYER_TAR,
            "application/vnd.oci.image.layer.v1.tar+zstd" => {
                "application/vnd.oci.image.layer.v1.tar+zstd"
            }
            _ => return None,
        }
        .to_string(),
    )
}
