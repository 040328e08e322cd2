//! Command line, with Kaniko's flag names where Kaniko has the flag.

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
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
    /// Log format: text, color or json (one JSON object a line).
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Timestamps on log lines (default: when stderr is not a terminal).
    #[arg(long = "log-timestamp", global = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub log_timestamp: Option<bool>,
    #[command(subcommand)]
    pub command: Command,
}

/// Kaniko's executor takes its flags with no command: `kiln --context .
/// --destination ...` (or kiln installed as `executor`) means `kiln build`.
pub fn with_default_command(
    args: impl Iterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = args.collect();
    let invoked_as_executor = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "executor");
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let is_flag = first.starts_with('-') && !matches!(first, "-h" | "--help" | "-V" | "--version");
    // Kaniko's job lines (as `executor`, or flags with no command) push
    // what Kaniko pushed: an image, no index of attestations (a
    // --provenance given on the line still wins: the last of a flag given
    // twice counts).
    if invoked_as_executor || is_flag {
        args.insert(1.min(args.len()), "build".into());
        args.insert(2.min(args.len()), "--provenance=false".into());
    }
    args
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile.
    // A flag given twice takes its last value, as Kaniko's and docker's do.
    #[command(args_override_self = true)]
    Build(Box<BuildArgs>),
    /// Parse a Dockerfile and print its syntax tree.
    Parse(ParseArgs),
    /// Store base images in a directory for builds without a registry
    /// (`kiln build --cache-dir`).
    Warm(WarmArgs),
    /// Image indexes: join images built on several runners.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// kiln's directory: check it.
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Check the blobs, extracted layers and local step cache in kiln's
    /// directory; remove what is broken or left by builds that did not
    /// finish (the next build fetches or rebuilds it).
    Verify(CacheVerifyArgs),
}

#[derive(Debug, Args)]
pub struct CacheVerifyArgs {
    /// kiln's directory (default: $KILN_DIR, else
    /// ${XDG_CACHE_HOME:-$HOME/.cache}/kiln).
    #[arg(long = "kiln-dir", value_name = "DIR")]
    pub kiln_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Push an index of IMAGEs (one platform each, read from their
    /// configs) as --target: `kiln manifest push --target reg/app:1
    /// reg/app:1-amd64 reg/app:1-arm64`.
    Push(ManifestPushArgs),
}

#[derive(Debug, Args)]
pub struct ManifestPushArgs {
    /// The index's name (a tag).
    #[arg(long = "target", value_name = "REF")]
    pub target: String,
    /// The images, one platform each, in a registry.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
    /// Write the index's digest here.
    #[arg(long = "digest-file", value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryAccessArgs,
}

/// How to reach registries (the subset `warm` and `manifest` take).
#[derive(Debug, Args)]
pub struct RegistryAccessArgs {
    /// Use plain HTTP for this registry (host[:port]).
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    pub insecure_registries: Vec<String>,
    /// Do not verify the TLS certificate of this registry.
    #[arg(long = "skip-tls-verify-registry", value_name = "REGISTRY")]
    pub skip_tls_verify_registries: Vec<String>,
    /// Trust this CA certificate (PEM) for a registry: REGISTRY=PATH.
    #[arg(long = "registry-certificate", value_name = "REGISTRY=PATH")]
    pub registry_certificates: Vec<String>,
    /// How long a registry may leave kiln waiting for an answer.
    #[arg(
        long = "registry-timeout",
        value_name = "DURATION",
        default_value = "60s"
    )]
    pub registry_timeout: String,
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
    #[command(flatten)]
    pub registry: RegistryAccessArgs,
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
    /// The container's own / is the build root (kiln's image).
    InPlace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// Bars on a terminal, plain lines elsewhere.
    Auto,
    /// Live bars.
    Tty,
    /// Plain timestamped lines.
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Color,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context: a directory, dir://DIR, tar://FILE (gzip or
    /// plain), tar://stdin, git://HOST/REPO[#REF[#COMMIT]], or
    /// https://HOST/REPO.git[#REF[:SUBDIR]].
    #[arg(short = 'c', long = "context", value_name = "CONTEXT")]
    pub context: Option<String>,
    /// The context as docker build takes it: `kiln build -t app:1 .`.
    #[arg(value_name = "CONTEXT", conflicts_with = "context")]
    pub context_arg: Option<String>,
    /// A directory inside the context to use as the context.
    #[arg(long = "context-sub-path", value_name = "PATH")]
    pub context_sub_path: Option<String>,
    /// For a git context: branch=NAME, single-branch=BOOL,
    /// recurse-submodules=BOOL (comma-separated).
    #[arg(long = "git", value_name = "OPTIONS")]
    pub git: Option<String>,
    /// The Dockerfile (default: Dockerfile in the context).
    #[arg(short = 'f', long = "dockerfile", visible_alias = "file")]
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
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub reproducible: bool,
    /// Where to push the image (repeatable); with --no-push it only names
    /// the outputs.
    #[arg(short = 'd', long = "destination")]
    pub destinations: Vec<String>,
    /// docker build's name for the image (repeatable): pushed with --push.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Push the -t/--tag names (docker build's --push).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub push: bool,
    /// Do not push.
    #[arg(long = "no-push", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub no_push: bool,
    /// Attach an SBOM (SPDX 2.3, scanned by kiln itself): `--sbom`,
    /// `--sbom=true|false`.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_name = "BOOL")]
    pub sbom: Option<String>,
    /// SLSA provenance: `--provenance=false`, `--provenance=mode=min|max`
    /// (`,version=v0.2`, `,builder-id=URI`). On (mode=min) by default when
    /// pushing, as buildx does.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_name = "VALUE")]
    pub provenance: Option<String>,
    /// buildx's spelling: `type=sbom` or `type=provenance[,mode=max,...]`
    /// (repeatable).
    #[arg(long = "attest", value_name = "type=sbom|provenance[,...]")]
    pub attest: Vec<String>,
    /// Also write the SBOM statements (in-toto JSON) into this directory.
    #[arg(long = "sbom-output", value_name = "DIR")]
    pub sbom_output: Option<PathBuf>,
    /// Also write the provenance statements (in-toto JSON) into this
    /// directory.
    #[arg(long = "provenance-output", value_name = "DIR")]
    pub provenance_output: Option<PathBuf>,
    /// Write the image as an OCI image layout in this directory.
    #[arg(long = "oci-layout-path", value_name = "DIR")]
    pub oci_layout_path: Option<PathBuf>,
    /// Write the image as a docker-archive (for `docker load`).
    #[arg(long = "tar-path", alias = "tarPath", value_name = "FILE")]
    pub tar_path: Option<PathBuf>,
    /// Write the image's manifest digest to this file.
    #[arg(long = "digest-file", value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
    /// Write the image ID (its config digest, as docker names images) to this file.
    #[arg(long = "iidfile", value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write BuildKit's build metadata JSON (containerimage.digest,
    /// image.name, ...) to this file.
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Layer compression.
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: CompressionArg,
    /// kiln's local state (pulled blobs, extracted layers, work files).
    /// Default: $KILN_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/kiln.
    #[arg(long = "kiln-dir", alias = "kaniko-dir", value_name = "DIR")]
    pub kiln_dir: Option<PathBuf>,
    /// After a build, remove the least recently used pulled blobs,
    /// extracted layers, cache entries and cache mounts from --kiln-dir
    /// until it holds at most this much (10GiB, 500MB, 0: no limit).
    #[arg(
        long = "kiln-dir-max-size",
        value_name = "SIZE",
        default_value = "10GiB"
    )]
    pub kiln_dir_max_size: String,
    /// Platform to build for and to pull base images for (os/arch[/variant]).
    #[arg(
        long = "custom-platform",
        alias = "customPlatform",
        visible_alias = "platform",
        value_name = "PLATFORM"
    )]
    pub custom_platform: Option<String>,
    /// Use plain HTTP for every registry.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub insecure: bool,
    /// Use plain HTTP when pulling.
    #[arg(long = "insecure-pull", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub insecure_pull: bool,
    /// Use plain HTTP for this registry (host[:port]).
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    pub insecure_registries: Vec<String>,
    /// Do not verify TLS certificates of any registry.
    #[arg(long = "skip-tls-verify", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub skip_tls_verify: bool,
    /// Do not verify TLS certificates when pulling.
    #[arg(long = "skip-tls-verify-pull", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub skip_tls_verify_pull: bool,
    /// Do not verify the TLS certificate of this registry.
    #[arg(long = "skip-tls-verify-registry", value_name = "REGISTRY")]
    pub skip_tls_verify_registries: Vec<String>,
    /// Trust this CA certificate (PEM) for a registry: REGISTRY=PATH.
    #[arg(long = "registry-certificate", value_name = "REGISTRY=PATH")]
    pub registry_certificates: Vec<String>,
    /// A client certificate for mutual TLS: REGISTRY=CERT,KEY (PEM).
    #[arg(long = "registry-client-cert", value_name = "REGISTRY=CERT,KEY")]
    pub registry_client_certs: Vec<String>,
    /// A mirror of docker.io, tried before it (host[/path]); also
    /// $KANIKO_REGISTRY_MIRROR.
    #[arg(long = "registry-mirror", value_name = "MIRROR")]
    pub registry_mirrors: Vec<String>,
    /// Pull from mirrors instead of a registry: ORIGINAL=MIRROR[;MIRROR...].
    #[arg(long = "registry-map", value_name = "ORIGINAL=MIRRORS")]
    pub registry_maps: Vec<String>,
    /// Never fall back to the original registry when mirrors fail.
    #[arg(long = "skip-default-registry-fallback", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub skip_default_registry_fallback: bool,
    /// Extra attempts for a failing download.
    #[arg(long = "image-download-retry", default_value_t = 3)]
    pub image_download_retry: u32,
    /// Extra attempts for a failing push request.
    #[arg(long = "push-retry", default_value_t = 3)]
    pub push_retry: u32,
    /// How long a registry may leave kiln waiting for an answer, or for
    /// the next bytes of one, before the request fails (and is retried).
    #[arg(
        long = "registry-timeout",
        value_name = "DURATION",
        default_value = "60s"
    )]
    pub registry_timeout: String,
    /// Write `registry/repo@digest` of each pushed destination to this file.
    #[arg(long = "image-name-with-digest-file", value_name = "FILE")]
    pub image_name_with_digest_file: Option<PathBuf>,
    /// Write `registry/repo:tag@digest` of each pushed destination to this file.
    #[arg(long = "image-name-tag-with-digest-file", value_name = "FILE")]
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    /// How RUN steps are isolated: auto (user namespaces when not root,
    /// else namespaces if permitted, else in-place in kiln's image, else
    /// chroot), userns, chroot (root without namespaces), or in-place (the
    /// container's own / is the build root; kiln's image, or --force).
    #[arg(long, value_enum, default_value = "auto")]
    pub isolation: IsolationArg,
    /// A path whose changes by RUN steps never go into a layer (repeatable).
    #[arg(long = "ignore-path", value_name = "PATH")]
    pub ignore_paths: Vec<String>,
    /// Keep /var/run out of every layer (mounted sockets live there).
    #[arg(long = "ignore-var-run", alias = "whitelist-var-run", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub ignore_var_run: bool,
    /// Base images stored by `kiln warm`, used before asking a registry.
    #[arg(long = "cache-dir", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep the layer cache in a registry (--cache-repo): steps whose inputs
    /// did not change reuse their cached layer instead of running. Without
    /// this flag the cache is local, in --kiln-dir; --cache=false (Kaniko)
    /// or --no-cache (docker) turns caching off.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub cache: Option<bool>,
    /// docker build's --no-cache: do not use the layer cache.
    #[arg(long = "no-cache", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub no_cache: bool,
    /// The cache repository (default: <first destination's repository>/cache),
    /// or oci:DIR for a local OCI layout.
    #[arg(long = "cache-repo", value_name = "REPOSITORY")]
    pub cache_repo: Option<String>,
    /// How long a cache entry stays valid (Go duration: 336h, 30m, ...).
    #[arg(long = "cache-ttl", default_value = "336h")]
    pub cache_ttl: String,
    /// Cache RUN steps.
    #[arg(long = "cache-run-layers", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub cache_run_layers: bool,
    /// Cache COPY and ADD steps too.
    #[arg(long = "cache-copy-layers", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub cache_copy_layers: bool,
    /// Use the cache but do not store new entries.
    #[arg(long = "no-push-cache", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub no_push_cache: bool,
    /// Say for each cached step whether it hit and why a miss missed.
    #[arg(long = "explain-cache", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub explain_cache: bool,
    /// Write a JSON report of the steps (cache, time, layer) to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Compression level: gzip 0 (stored) to 9 (small), default 3; zstd 1
    /// (fast) to 19 (small), default 3.
    #[arg(long = "compression-level", value_parser = clap::value_parser!(i32).range(0..=19))]
    pub compression_level: Option<i32>,
    /// Run BuildKit's Dockerfile build checks, report them, build nothing
    /// (exit code 3 when they find something).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub check: bool,
    /// Stages built at the same time (those that do not depend on each
    /// other); default: the number of cores.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Progress display: auto, tty (live bars) or plain (lines).
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,
    /// Build outside a container in a mode meant for kiln's own image.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub force: bool,
    /// docker build's --pull: kiln always asks the registry for the base
    /// image's current digest (blobs it has are reused).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub pull: bool,
    /// docker build's secrets (id=ID,src=PATH|env=VAR), for RUN --mount=type=secret.
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// docker build's SSH agent sockets, for RUN --mount=type=ssh.
    #[arg(long = "ssh", value_name = "SPEC")]
    pub ssh: Vec<String>,
    #[command(flatten)]
    pub kaniko: KanikoOnly,
}

/// Kaniko flags that change nothing in kiln: accepted so that job lines
/// move over unchanged, each with a warning saying why (docs/kaniko-flags.md).
#[derive(Debug, Args)]
pub struct KanikoOnly {
    /// Kaniko: how files are compared in snapshots. kiln reads what a step
    /// changed from the overlay (or compares metadata and content).
    #[arg(
        long = "snapshot-mode",
        alias = "snapshotMode",
        value_name = "MODE",
        hide = true
    )]
    pub snapshot_mode: Option<String>,
    /// Kaniko: one snapshot at the end. kiln keeps a layer per step.
    #[arg(long = "single-snapshot", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set, hide = true)]
    pub single_snapshot: Option<bool>,
    /// Kaniko: build only needed stages. kiln always does.
    #[arg(long = "skip-unused-stages", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set, hide = true)]
    pub skip_unused_stages: Option<bool>,
    /// Kaniko: clean the container's file system at the end. kiln's builds
    /// leave nothing in it.
    #[arg(long = "cleanup", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set, hide = true)]
    pub cleanup: Option<bool>,
    /// Kaniko: the experimental RUN that avoids snapshots. kiln's RUN
    /// always reads only what changed.
    #[arg(long = "use-new-run", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set, hide = true)]
    pub use_new_run: Option<bool>,
    /// Kaniko: compress cached layers in memory. kiln never holds a layer in memory.
    #[arg(long = "compressed-caching", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set, hide = true)]
    pub compressed_caching: Option<bool>,
    /// Kaniko: retries of the local file system extraction.
    #[arg(long = "image-fs-extract-retry", value_name = "N", hide = true)]
    pub image_fs_extract_retry: Option<u32>,
    /// Kaniko: metadata-only layers.
    #[arg(long = "force-build-metadata", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set, hide = true)]
    pub force_build_metadata: Option<bool>,
    /// Kaniko: check push permission before building.
    #[arg(long = "skip-push-permission-check", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set, hide = true)]
    pub skip_push_permission_check: Option<bool>,
    /// Kaniko: keep the context unchanged between stages.
    #[arg(long = "preserve-context", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set, hide = true)]
    pub preserve_context: Option<bool>,
    /// Kaniko: write the file system out even when every step hits.
    #[arg(long = "materialize", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set, hide = true)]
    pub materialize: Option<bool>,
    /// Kaniko: treat a registry's immutable-tag refusal as success.
    #[arg(long = "push-ignore-immutable-tag-errors", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set, hide = true)]
    pub push_ignore_immutable_tag_errors: Option<bool>,
    /// Kaniko: a context in a Google Cloud Storage bucket.
    #[arg(short = 'b', long = "bucket", value_name = "BUCKET", hide = true)]
    pub bucket: Option<String>,
}
