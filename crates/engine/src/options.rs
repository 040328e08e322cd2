//! What a build is asked to do.

use kiln_layer::Compression;
use kiln_registry::{Reference, RegistryOptions};
use kiln_sandbox::IsolationMode;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub context_dir: PathBuf,
    /// The Dockerfile (its `<name>.dockerignore` beside it wins over the
    /// context's `.dockerignore`).
    pub dockerfile: PathBuf,
    /// `--label`s, added to the final image.
    pub labels: Vec<(String, String)>,
    /// Kaniko's `--reproducible`: every time is 0 unless SOURCE_DATE_EPOCH.
    pub reproducible: bool,
    pub source_date_epoch: Option<i64>,
    /// Where layer blobs and staged files go.
    pub work_dir: PathBuf,
    pub compression: Compression,
    /// kiln's local state: pulled blobs and extracted layers.
    pub kiln_dir: PathBuf,
    pub registry: RegistryOptions,
    /// `--isolation`.
    pub isolation: IsolationMode,
    /// `--ignore-path`: paths RUN changes are never taken from.
    pub ignore_paths: Vec<String>,
    /// `--ignore-var-run`: in-place mode keeps /var/run out of layers.
    pub ignore_var_run: bool,
    /// `--force`: in-place mode outside kiln's image.
    pub force: bool,
    /// `--secret id=ID,src=PATH|env=VAR`, for `RUN --mount=type=secret`.
    pub secrets: Vec<(String, SecretSource)>,
    /// `--jobs`: stages built at the same time.
    pub jobs: usize,
    /// `--ssh ID[=SOCKET]`: SSH agent sockets for `RUN --mount=type=ssh`.
    pub ssh: Vec<(String, PathBuf)>,
    /// `--cache`: the layer cache.
    pub cache: Option<CacheSettings>,
    /// `--cache-dir`: base images stored by `kiln warm`, used before any
    /// registry is asked.
    pub cache_dir: Option<PathBuf>,
    /// The push destination the target stage's new layers are uploaded
    /// to while they are written (the push then finds them there).
    pub upload_layers_to: Option<Reference>,
    /// Which base layers' compressed blobs are kept once extracted.
    pub base_blobs: BaseBlobs,
    /// `--sbom`, `--provenance`, `--attest`: the engine scans for the SBOM
    /// (provenance needs nothing more than the build's own record).
    pub attest: kiln_attest::Request,
}

/// Whether a base layer's compressed blob, downloaded into its
/// extraction, is kept in kiln's directory (a stored copy costs a base's
/// size in writes; docs/benchmarks.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BaseBlobs {
    /// Kept: an output writes base layers (a tar, an OCI layout).
    #[default]
    Kept,
    /// Kept only when one of these registries, the pushes' destinations,
    /// is not the registry the blob comes from: a push to its own registry
    /// finds the blob there or mounts it. None: no output needs blobs.
    PushedTo(Vec<String>),
}

impl BaseBlobs {
    /// Whether the blob of a layer pulled from `registry` is kept.
    pub fn keeps(&self, registry: &str) -> bool {
        match self {
            BaseBlobs::Kept => true,
            BaseBlobs::PushedTo(destinations) => destinations.iter().any(|d| d != registry),
        }
    }
}

/// Where the cache lives.
#[derive(Debug, Clone)]
pub enum CacheLocation {
    /// A registry repository.
    Registry(Reference),
    /// A local OCI image layout (`--cache-repo oci:PATH`).
    Layout(PathBuf),
}

/// `--cache` and its companions.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// The cache repository.
    pub repo: CacheLocation,
    /// Seconds an entry stays valid.
    pub ttl: i64,
    pub run_layers: bool,
    pub copy_layers: bool,
    /// Store misses (`--no-push-cache` turns this off).
    pub push: bool,
    /// Say why each miss missed (`--explain-cache`).
    pub explain: bool,
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}
