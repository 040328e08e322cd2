//! Command line, with Kaniko's flag names where Kaniko has the flag.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Build OCI images from Dockerfiles, without a daemon or root"
)]
pub struct Cli {
    /// Log level: panic, fatal, error, warn, info, debug, trace.
    #[arg(short = 'v', long = "verbosity", global = true, default_value = "info")]
    pub verbosity: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(Box<BuildArgs>),
    /// Parse a Dockerfile and print its syntax tree.
    Parse(ParseArgs),
    /// Store base images in a directory for builds without a registry
    /// (`kiln build --cache-dir`).
    Warm(WarmArgs),
}

#[derive(Debug, Args)]
pub struct WarmArgs {
    /// Where to store the images (an OCI image layout).
    #[arg(long = "cache-dir", value_name = "DIR")]
    pub cache_dir: PathBuf,
    /// An image to store (repeatable).
    #[arg(short = 'i', long = "image", required = true)]
    pub images: Vec<String>,
    /// Platform to store (os/arch[/variant]); default the host's.
    #[arg(long = "custom-platform", value_name = "PLATFORM")]
    pub custom_platform: Option<String>,
    /// Use plain HTTP for this registry (host[:port]).
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    pub insecure_registries: Vec<String>,
    /// Do not verify the TLS certificate of this registry.
    #[arg(long = "skip-tls-verify-registry", value_name = "REGISTRY")]
    pub skip_tls_verify_registries: Vec<String>,
    /// Trust this CA certificate (PEM) for a registry: REGISTRY=PATH.
    #[arg(long = "registry-certificate", value_name = "REGISTRY=PATH")]
    pub registry_certificates: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ParseFormat {
    /// BuildKit's AST dump, as in its parser test files.
    Buildkit,
    /// The tree as JSON, with heredocs and locations.
    Json,
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    #[arg(long, value_enum, default_value = "buildkit")]
    pub format: ParseFormat,
    /// The Dockerfile (or give it as the argument).
    #[arg(short = 'f', long = "dockerfile")]
    pub dockerfile_flag: Option<PathBuf>,
    pub dockerfile: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolationArg {
    Auto,
    Userns,
    Chroot,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    None,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context directory.
    #[arg(short = 'c', long = "context", default_value = ".")]
    pub context: PathBuf,
    /// The Dockerfile (default: Dockerfile in the context).
    #[arg(short = 'f', long = "dockerfile")]
    pub dockerfile: Option<PathBuf>,
    /// A build argument: KEY=VALUE, or KEY to take the value from the environment.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build this stage (and what it needs) instead of the last one.
    #[arg(long)]
    pub target: Option<String>,
    /// A label KEY=VALUE to add to the image.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Clamp every timestamp (to 0, or to SOURCE_DATE_EPOCH when set) so
    /// that builds are reproducible.
    #[arg(long)]
    pub reproducible: bool,
    /// Where to push the image (repeatable); with --no-push it only names
    /// the outputs.
    #[arg(short = 'd', long = "destination")]
    pub destinations: Vec<String>,
    /// Do not push.
    #[arg(long = "no-push")]
    pub no_push: bool,
    /// Write the image as an OCI image layout in this directory.
    #[arg(long = "oci-layout-path", value_name = "DIR")]
    pub oci_layout_path: Option<PathBuf>,
    /// Write the image as a docker-archive (for `docker load`).
    #[arg(long = "tar-path", value_name = "FILE")]
    pub tar_path: Option<PathBuf>,
    /// Write the image's manifest digest to this file.
    #[arg(long = "digest-file", value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
    /// Layer compression.
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: CompressionArg,
    /// kiln's local state (pulled blobs, extracted layers, work files).
    /// Default: $KILN_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/kiln.
    #[arg(long = "kiln-dir", alias = "kaniko-dir", value_name = "DIR")]
    pub kiln_dir: Option<PathBuf>,
    /// Platform to build for and to pull base images for (os/arch[/variant]).
    #[arg(long = "custom-platform", value_name = "PLATFORM")]
    pub custom_platform: Option<String>,
    /// Use plain HTTP for every registry.
    #[arg(long)]
    pub insecure: bool,
    /// Use plain HTTP when pulling.
    #[arg(long = "insecure-pull")]
    pub insecure_pull: bool,
    /// Use plain HTTP for this registry (host[:port]).
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    pub insecure_registries: Vec<String>,
    /// Do not verify TLS certificates of any registry.
    #[arg(long = "skip-tls-verify")]
    pub skip_tls_verify: bool,
    /// Do not verify TLS certificates when pulling.
    #[arg(long = "skip-tls-verify-pull")]
    pub skip_tls_verify_pull: bool,
    /// Do not verify the TLS certificate of this registry.
    #[arg(long = "skip-tls-verify-registry", value_name = "REGISTRY")]
    pub skip_tls_verify_registries: Vec<String>,
    /// Trust this CA certificate (PEM) for a registry: REGISTRY=PATH.
    #[arg(long = "registry-certificate", value_name = "REGISTRY=PATH")]
    pub registry_certificates: Vec<String>,
    /// A mirror of docker.io, tried before it (host[/path]).
    #[arg(long = "registry-mirror", value_name = "MIRROR")]
    pub registry_mirrors: Vec<String>,
    /// Pull from mirrors instead of a registry: ORIGINAL=MIRROR[;MIRROR...].
    #[arg(long = "registry-map", value_name = "ORIGINAL=MIRRORS")]
    pub registry_maps: Vec<String>,
    /// Never fall back to the original registry when mirrors fail.
    #[arg(long = "skip-default-registry-fallback")]
    pub skip_default_registry_fallback: bool,
    /// Extra attempts for a failing download.
    #[arg(long = "image-download-retry", default_value_t = 3)]
    pub image_download_retry: u32,
    /// Extra attempts for a failing push request.
    #[arg(long = "push-retry", default_value_t = 3)]
    pub push_retry: u32,
    /// Write `registry/repo@digest` of each pushed destination to this file.
    #[arg(long = "image-name-with-digest-file", value_name = "FILE")]
    pub image_name_with_digest_file: Option<PathBuf>,
    /// Write `registry/repo:tag@digest` of each pushed destination to this file.
    #[arg(long = "image-name-tag-with-digest-file", value_name = "FILE")]
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    /// How RUN steps are isolated: auto (user namespaces when not root,
    /// else namespaces if permitted, else chroot), userns, or chroot (root
    /// without namespaces, e.g. in a Kubernetes pod).
    #[arg(long, value_enum, default_value = "auto")]
    pub isolation: IsolationArg,
    /// A path whose changes by RUN steps never go into a layer (repeatable).
    #[arg(long = "ignore-path", value_name = "PATH")]
    pub ignore_paths: Vec<String>,
    /// Base images stored by `kiln warm`, used before asking a registry.
    #[arg(long = "cache-dir", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Use the layer cache in a registry: steps whose inputs did not change
    /// reuse their cached layer instead of running.
    #[arg(long)]
    pub cache: bool,
    /// The cache repository (default: <first destination's repository>/cache).
    #[arg(long = "cache-repo", value_name = "REPOSITORY")]
    pub cache_repo: Option<String>,
    /// How long a cache entry stays valid (Go duration: 336h, 30m, ...).
    #[arg(long = "cache-ttl", default_value = "336h")]
    pub cache_ttl: String,
    /// Cache RUN steps.
    #[arg(long = "cache-run-layers", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub cache_run_layers: bool,
    /// Cache COPY and ADD steps too.
    #[arg(long = "cache-copy-layers")]
    pub cache_copy_layers: bool,
    /// Use the cache but do not store new entries.
    #[arg(long = "no-push-cache")]
    pub no_push_cache: bool,
    /// Say for each cached step whether it hit and why a miss missed.
    #[arg(long = "explain-cache")]
    pub explain_cache: bool,
    /// Write a JSON report of the steps (cache, time, layer) to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// gzip level, 1 (fast) to 9 (small).
    #[arg(long = "compression-level", default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub compression_level: u32,
}
