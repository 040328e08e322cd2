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
    Build(BuildArgs),
    /// Parse a Dockerfile and print its syntax tree.
    Parse(ParseArgs),
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
    /// Image name(s) for the result. Pushing arrives with registry support;
    /// until then use it with --no-push to name the docker archive's image.
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
    /// gzip level, 1 (fast) to 9 (small).
    #[arg(long = "compression-level", default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub compression_level: u32,
}
