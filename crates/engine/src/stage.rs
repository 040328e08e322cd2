//! A stage's state while it builds (file tree, config, layers, args) and
//! how a stage starts from scratch or from an earlier stage (from an
//! image: `image_source.rs`); its waiting layers reach the tree through
//! `layer_access.rs`.

use crate::error::StepFailure;
use crate::fstree::FsTree;
use crate::layer_access::LayerAccess;
use crate::layerstore::StoredLayer;
use kiln_dockerfile::Platform;
use kiln_image::{ImageConfig, LayerBlob};
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
        StageState::starting(config, Vec::new(), format!("scratch:{platform}"), now)
    }

    /// A stage starting from `config` with its `layers` waiting.
    pub(crate) fn starting(
        config: ImageConfig,
        layers: Vec<Layer>,
        cache_key: String,
        now: i64,
    ) -> StageState {
        StageState {
            tree: FsTree::new(now),
            config,
            layers,
            applied: 0,
            forced: Default::default(),
            described: Vec::new(),
            described_on_disk: Default::default(),
            args: BTreeMap::new(),
            cmd_set: false,
            rootfs: None,
            cache_key,
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

/// Stages built so far (shared by stages that run in parallel).
pub(crate) type Stages = std::collections::HashMap<usize, std::sync::Arc<StageState>>;
/// Images fetched for `COPY --from` and `RUN --mount from=`, by reference.
pub(crate) type Images = std::collections::HashMap<String, std::sync::Arc<StageState>>;
