//! The `kiln` binary: parses flags into the engine's options, renders its
//! events, prints errors with their causes.

mod attest;
mod build;
mod checks;
mod cli;
mod exit;
mod logging;
mod manifest;
mod options;
mod render;

use clap::Parser;
use cli::{Cli, Command, ParseArgs, ParseFormat};
use std::path::Path;
use std::process::ExitCode;

/// Large buffers (a base image's packed file tree, layer blocks) get
/// their own mappings, given back whole when freed and grown in place.
/// glibc otherwise raises this threshold after the first large free and
/// serves them from its heaps, where each regrowth leaves a hole: a cold
/// 200,000-file build peaked 10-20 MiB higher, by the timing of its frees.
fn map_large_allocations() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt sets an allocator parameter; no memory is touched.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn main() -> ExitCode {
    map_large_allocations();
    // Re-executed inside a user namespace, or run as the step helper.
    if let Some(code) = kiln_engine::entrypoint() {
        return exit(code);
    }
    let cli = Cli::parse_from(cli::with_default_command(std::env::args_os()));
    if let Err(e) = logging::init(&cli.verbosity, cli.log_format, cli.log_timestamp) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let Command::Build(args) = &cli.command {
        if let Some(code) = kiln_engine::enter_for_build(options::isolation(args.isolation)) {
            return exit(code);
        }
    }
    let result = match cli.command {
        Command::Build(args) => build::build(*args),
        Command::Parse(args) => parse(args),
        Command::Warm(args) => build::warm(args),
        Command::Manifest(command) => manifest::run(command),
        Command::Cache(cli::CacheCommand::Verify(args)) => verify(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error(e.as_ref());
            ExitCode::from(exit::code(e.as_ref()))
        }
    }
}

/// `kiln cache verify`.
fn verify(args: cli::CacheVerifyArgs) -> Result<(), Error> {
    let dir = options::kiln_dir(args.kiln_dir).map_err(exit::usage)?;
    let checked = kiln_engine::verify::verify(&dir)
        .map_err(|e| format!("checking {}: {e}", dir.display()))?
        .ok_or_else(|| {
            format!(
                "{}: a build is using it; try again when it is done",
                dir.display()
            )
        })?;
    tracing::info!(
        "{}: {} items whole, {} removed",
        dir.display(),
        checked.good,
        checked.removed.len()
    );
    Ok(())
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// The error, then each cause not already in what was printed.
fn print_error(e: &(dyn std::error::Error + 'static)) {
    let mut shown = e.to_string();
    eprintln!("error: {shown}");
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !shown.contains(&text) {
            eprintln!("  caused by: {text}");
            shown.push_str(&text);
        }
        cause = c.source();
    }
}

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn read_dockerfile(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("reading Dockerfile {}: {e}", path.display()).into())
}

fn parse(args: ParseArgs) -> Result<(), Error> {
    let path = args
        .dockerfile_flag
        .or(args.dockerfile)
        .ok_or("give the Dockerfile: kiln parse [-f] DOCKERFILE")?;
    let src = read_dockerfile(&path)?;
    let ast = kiln_dockerfile::parse(&path.display().to_string(), &src)?;
    let out = match args.format {
        ParseFormat::Buildkit => kiln_dockerfile::dump::buildkit(&ast),
        ParseFormat::Json => kiln_dockerfile::dump::json(&ast),
    };
    print!("{out}");
    Ok(())
}
