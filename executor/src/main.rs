//! The `kiln` binary.

mod cli;
mod logging;

use clap::Parser;
use cli::{BuildArgs, Cli, Command, CompressionArg, ParseArgs, ParseFormat};
use kiln_build::{BuildOptions, StepEvent};
use kiln_dockerfile::{BuildArgs as ArgMap, Plan, PlanOptions};
use kiln_layer::Compression;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(&cli.verbosity) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Build(args) => build(args),
        Command::Parse(args) => parse(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_dockerfile(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading Dockerfile {}: {e}", path.display()))
}

fn parse(args: ParseArgs) -> Result<(), String> {
    let path = args
        .dockerfile_flag
        .or(args.dockerfile)
        .ok_or("give the Dockerfile: kiln parse [-f] DOCKERFILE")?;
    let src = read_dockerfile(&path)?;
    let ast =
        kiln_dockerfile::parse(&path.display().to_string(), &src).map_err(|e| e.to_string())?;
    let out = match args.format {
        ParseFormat::Buildkit => kiln_dockerfile::dump::buildkit(&ast),
        ParseFormat::Json => kiln_dockerfile::dump::json(&ast),
    };
    print!("{out}");
    Ok(())
}

fn build_arg_map(items: &[String]) -> Result<ArgMap, String> {
    let mut map = ArgMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                map.insert(k.to_string(), v.to_string());
            }
            Some(_) => return Err(format!("--build-arg {item:?}: empty name")),
            // A bare name takes its value from the environment (unset: ignored).
            None => {
                if let Ok(v) = std::env::var(item) {
                    map.insert(item.clone(), v);
                }
            }
        }
    }
    Ok(map)
}

fn labels(items: &[String]) -> Result<Vec<(String, String)>, String> {
    items
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("--label {l:?}: expected KEY=VALUE")),
        })
        .collect()
}

/// `name` -> `name:latest`; a tag or digest stays as given.
fn with_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

fn source_date_epoch() -> Result<Option<i64>, String> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("SOURCE_DATE_EPOCH={v:?}: expected seconds since 1970")),
        Err(_) => Ok(None),
    }
}

fn build(args: BuildArgs) -> Result<(), String> {
    if args.oci_layout_path.is_none() && args.tar_path.is_none() && args.destinations.is_empty() {
        return Err(
            "no output: give --oci-layout-path DIR and/or --tar-path FILE \
                    (pushing with -d/--destination arrives with registry support)"
                .into(),
        );
    }
    if !args.destinations.is_empty() && !args.no_push {
        return Err(format!(
            "-d {}: pushing to a registry is not supported yet; add --no-push to use the name only for the outputs",
            args.destinations[0]
        ));
    }
    if args.oci_layout_path.is_none() && args.tar_path.is_none() {
        return Err("--no-push without --oci-layout-path or --tar-path would build an image and throw it away".into());
    }
    let context = args.context.clone();
    if !context.is_dir() {
        return Err(format!("context {}: not a directory", context.display()));
    }
    let dockerfile = match &args.dockerfile {
        Some(p) if p.is_absolute() || p.exists() => p.clone(),
        Some(p) => context.join(p),
        None => context.join("Dockerfile"),
    };
    let src = read_dockerfile(&dockerfile)?;
    let file_name = dockerfile.display().to_string();
    let ast = kiln_dockerfile::parse(&file_name, &src).map_err(|e| e.to_string())?;
    let options = PlanOptions {
        build_args: build_arg_map(&args.build_args)?,
        target: args.target.clone(),
        ..PlanOptions::default()
    };
    let plan = Plan::new(ast, options).map_err(|e| e.to_string())?;
    for unused in plan.unused_build_args() {
        tracing::warn!("build arg {unused} was given but no ARG declares it");
    }
    let work = tempfile::Builder::new()
        .prefix("kiln-build-")
        .tempdir()
        .map_err(|e| format!("creating a work directory: {e}"))?;
    let build_options = BuildOptions {
        context_dir: context,
        dockerfile: dockerfile.clone(),
        labels: labels(&args.labels)?,
        reproducible: args.reproducible,
        source_date_epoch: source_date_epoch()?,
        work_dir: work.path().to_path_buf(),
        compression: match args.compression {
            CompressionArg::Gzip => Compression::Gzip(args.compression_level),
            CompressionArg::None => Compression::None,
        },
    };
    let started = std::time::Instant::now();
    let several_stages = plan.order.len() > 1;
    let image = kiln_build::build(&plan, &build_options, &mut |e: StepEvent| {
        if several_stages {
            tracing::info!("[{}/{}] stage {}: {}", e.index, e.total, e.stage, e.text);
        } else {
            tracing::info!("[{}/{}] {}", e.index, e.total, e.text);
        }
    })
    .map_err(|e| e.to_string())?;

    let tags: Vec<String> = args.destinations.iter().map(|d| with_tag(d)).collect();
    if let Some(dir) = &args.oci_layout_path {
        let ref_name = tags
            .first()
            .and_then(|t| t.rsplit_once(':').map(|(_, tag)| tag.to_string()))
            .filter(|t| !t.contains('/'))
            .unwrap_or_else(|| "latest".to_string());
        kiln_image::layout::write_oci_layout(dir, &image, &ref_name)
            .map_err(|e| format!("writing OCI layout {}: {e}", dir.display()))?;
        tracing::info!("wrote OCI layout {} (ref {ref_name})", dir.display());
    }
    if let Some(path) = &args.tar_path {
        kiln_image::docker_archive::write_docker_archive(path, &image, &tags)
            .map_err(|e| format!("writing docker archive {}: {e}", path.display()))?;
        tracing::info!("wrote docker archive {}", path.display());
    }
    if let Some(path) = &args.digest_file {
        write_digest(path, &image.manifest_digest)?;
    }
    tracing::info!(
        "built {} ({} layers) in {:.1}s",
        image.manifest_digest,
        image.layers.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn write_digest(path: &PathBuf, digest: &str) -> Result<(), String> {
    std::fs::write(path, digest).map_err(|e| format!("writing digest file {}: {e}", path.display()))
}
