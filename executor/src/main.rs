//! The `kiln` binary.

mod cli;
mod logging;

use clap::Parser;
use cli::{BuildArgs, Cli, Command, CompressionArg, IsolationArg, ParseArgs, ParseFormat};
use kiln_build::{BuildOptions, StepEvent};
use kiln_dockerfile::{BuildArgs as ArgMap, Plan, PlanOptions, Platform};
use kiln_layer::Compression;
use kiln_registry::{Reference, RegistryOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Re-executed inside a user namespace: finish the handshake first,
    // while the process is single-threaded.
    if let Err(e) = kiln_sandbox::finish_entering() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    // The sandbox helper: kiln runs itself to set up each RUN step.
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if raw.get(1).map(|a| a == "__run").unwrap_or(false) {
        let Some(spec) = raw.get(2) else {
            return ExitCode::from(125);
        };
        let code = kiln_sandbox::helper::helper_main(std::path::Path::new(spec));
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let cli = Cli::parse();
    if let Err(e) = logging::init(&cli.verbosity) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    // Not root: build as root of a user namespace (subordinate IDs mapped).
    if let Command::Build(args) = &cli.command {
        if args.isolation != IsolationArg::Chroot {
            match kiln_sandbox::enter_user_namespace() {
                Ok(Some(code)) => return ExitCode::from(code.clamp(0, 255) as u8),
                Ok(None) => {}
                Err(e) => tracing::warn!("{e}; RUN steps will not be possible"),
            }
        }
    }
    let result = match cli.command {
        Command::Build(args) => build(*args),
        Command::Parse(args) => parse(args),
        Command::Warm(args) => warm(args),
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
            "no output: give -d/--destination to push, or --oci-layout-path DIR / --tar-path FILE"
                .into(),
        );
    }
    if args.no_push && args.oci_layout_path.is_none() && args.tar_path.is_none() {
        return Err("--no-push without --oci-layout-path or --tar-path would build an image and throw it away".into());
    }
    // Destinations are checked before any work.
    let destinations: Vec<Reference> = args
        .destinations
        .iter()
        .map(|d| Reference::parse(d).map_err(|e| format!("-d {d}: {e}")))
        .collect::<Result<_, _>>()?;
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
    let mut options = PlanOptions {
        build_args: build_arg_map(&args.build_args)?,
        target: args.target.clone(),
        ..PlanOptions::default()
    };
    if let Some(p) = &args.custom_platform {
        options.target_platform =
            Platform::parse(p).map_err(|e| format!("--custom-platform {p}: {e}"))?;
    }
    let plan = Plan::new(ast, options).map_err(|e| e.to_string())?;
    for unused in plan.unused_build_args() {
        tracing::warn!("build arg {unused} was given but no ARG declares it");
    }
    let kiln_dir = kiln_dir(args.kiln_dir.clone())?;
    let tmp = kiln_dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&tmp)
        .map_err(|e| format!("creating a work directory in {}: {e}", tmp.display()))?;
    let registry = registry_options(&args)?;
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
        kiln_dir,
        registry: registry.clone(),
        isolation: match args.isolation {
            IsolationArg::Auto => kiln_build::IsolationMode::Auto,
            IsolationArg::Userns => kiln_build::IsolationMode::Userns,
            IsolationArg::Chroot => kiln_build::IsolationMode::Chroot,
        },
        ignore_paths: args.ignore_paths.clone(),
        cache: cache_settings(&args, &destinations)?,
        cache_dir: args.cache_dir.clone(),
    };
    let started = std::time::Instant::now();
    let several_stages = plan.order.len() > 1;
    let (image, records) =
        kiln_build::build_with_records(&plan, &build_options, &mut |e: StepEvent| {
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
        let open_tar = |layer: &kiln_image::LayerBlob| -> std::io::Result<Box<dyn std::io::Read>> {
            let file = std::fs::File::open(&layer.path)?;
            Ok(kiln_layer::open_archive(file)?.1)
        };
        kiln_image::docker_archive::write_docker_archive(path, &image, &tags, &open_tar)
            .map_err(|e| format!("writing docker archive {}: {e}", path.display()))?;
        tracing::info!("wrote docker archive {}", path.display());
    }
    if !args.no_push && !destinations.is_empty() {
        let client = kiln_registry::Client::new(registry);
        let mut with_digest = String::new();
        let mut with_tag_digest = String::new();
        for dest in &destinations {
            let report = kiln_registry::push(&client, dest, &image)
                .map_err(|e| format!("pushing {dest}: {e}"))?;
            tracing::info!(
                "pushed {dest}@{} ({} blobs uploaded, {} mounted, {} already there)",
                image.manifest_digest,
                report.uploaded,
                report.mounted,
                report.existing
            );
            with_digest.push_str(&format!("{}@{}\n", dest.name(), image.manifest_digest));
            with_tag_digest.push_str(&format!(
                "{}:{}@{}\n",
                dest.name(),
                dest.tag.as_deref().unwrap_or("latest"),
                image.manifest_digest
            ));
        }
        if let Some(path) = &args.image_name_with_digest_file {
            write_digest(path, &with_digest)?;
        }
        if let Some(path) = &args.image_name_tag_with_digest_file {
            write_digest(path, &with_tag_digest)?;
        }
    }
    if let Some(path) = &args.digest_file {
        write_digest(path, &image.manifest_digest)?;
    }
    if let Some(path) = &args.report {
        write_report(path, &records)?;
    }
    tracing::info!(
        "built {} ({} layers) in {:.1}s",
        image.manifest_digest,
        image.layers.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn warm(args: cli::WarmArgs) -> Result<(), String> {
    let platform = match &args.custom_platform {
        Some(p) => Platform::parse(p).map_err(|e| format!("--custom-platform {p}: {e}"))?,
        None => Platform::host(),
    };
    let certificates = args
        .registry_certificates
        .iter()
        .map(|c| match c.split_once('=') {
            Some((r, p)) if !r.is_empty() && !p.is_empty() => Ok((r.to_string(), PathBuf::from(p))),
            _ => Err(format!(
                "--registry-certificate {c:?}: expected REGISTRY=PATH"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let client = kiln_registry::Client::new(RegistryOptions {
        insecure_registries: args.insecure_registries.clone(),
        skip_tls_verify_registries: args.skip_tls_verify_registries.clone(),
        certificates,
        pull_retries: 3,
        ..Default::default()
    });
    std::fs::create_dir_all(&args.cache_dir)
        .map_err(|e| format!("creating {}: {e}", args.cache_dir.display()))?;
    let wanted = kiln_registry::WantedPlatform {
        os: platform.os.clone(),
        architecture: platform.arch.clone(),
        variant: platform.variant.clone(),
    };
    for image in &args.images {
        let r = Reference::parse(image).map_err(|e| format!("-i {image}: {e}"))?;
        let digest = kiln_registry::local::warm(&client, &args.cache_dir, &r, &wanted)
            .map_err(|e| format!("warming {r}: {e}"))?;
        tracing::info!("stored {r}@{digest} in {}", args.cache_dir.display());
    }
    Ok(())
}

/// The cache settings from `--cache` and its companions.
fn cache_settings(
    args: &BuildArgs,
    destinations: &[Reference],
) -> Result<Option<kiln_build::CacheSettings>, String> {
    if !args.cache {
        return Ok(None);
    }
    use kiln_build::CacheLocation;
    let repo = match (&args.cache_repo, destinations.first()) {
        (Some(r), _) if r.starts_with("oci:") => CacheLocation::Layout(PathBuf::from(&r[4..])),
        (Some(r), _) => CacheLocation::Registry(
            Reference::parse(r).map_err(|e| format!("--cache-repo {r}: {e}"))?,
        ),
        (None, Some(d)) => CacheLocation::Registry(
            Reference::parse(&format!("{}/cache", d.name()))
                .map_err(|e| format!("--cache-repo: {e}"))?,
        ),
        (None, None) => return Err(
            "--cache needs --cache-repo (or a -d destination to put <repository>/cache next to)"
                .into(),
        ),
    };
    let ttl_ns = kiln_dockerfile::instructions::parse_duration(&args.cache_ttl)
        .map_err(|e| format!("--cache-ttl {}: {e}", args.cache_ttl))?;
    Ok(Some(kiln_build::CacheSettings {
        repo,
        ttl: ttl_ns / 1_000_000_000,
        run_layers: args.cache_run_layers,
        copy_layers: args.cache_copy_layers,
        push: !args.no_push_cache,
        explain: args.explain_cache,
    }))
}

fn write_report(path: &PathBuf, records: &[kiln_build::StepRecord]) -> Result<(), String> {
    let count = |c: &str| records.iter().filter(|r| r.cache == c).count();
    let report = serde_json::json!({
        "steps": records,
        "totals": {
            "steps": records.len(),
            "hits": count("hit"),
            "misses": count("miss"),
            "runs_executed": records.iter().filter(|r| r.instruction.to_ascii_uppercase().starts_with("RUN") && r.cache != "hit").count(),
            "seconds": records.iter().map(|r| r.seconds).sum::<f64>(),
        }
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// `--kiln-dir`, else `$KILN_DIR`, else `${XDG_CACHE_HOME:-$HOME/.cache}/kiln`.
fn kiln_dir(flag: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(d) = flag {
        return Ok(d);
    }
    if let Some(d) = std::env::var_os("KILN_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("kiln"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".cache").join("kiln")),
        None => Err("no place for kiln's state: give --kiln-dir or set KILN_DIR".into()),
    }
}

fn registry_options(args: &BuildArgs) -> Result<RegistryOptions, String> {
    let certificates = args
        .registry_certificates
        .iter()
        .map(|c| match c.split_once('=') {
            Some((r, p)) if !r.is_empty() && !p.is_empty() => Ok((r.to_string(), PathBuf::from(p))),
            _ => Err(format!(
                "--registry-certificate {c:?}: expected REGISTRY=PATH"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let registry_maps = args
        .registry_maps
        .iter()
        .map(|m| match m.split_once('=') {
            Some((orig, mirrors)) if !orig.is_empty() && !mirrors.is_empty() => Ok((
                orig.to_string(),
                mirrors
                    .split(';')
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect(),
            )),
            _ => Err(format!(
                "--registry-map {m:?}: expected ORIGINAL=MIRROR[;MIRROR...]"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RegistryOptions {
        // Kaniko's pull-only variants: kiln uses one setting for both ways.
        insecure: args.insecure || args.insecure_pull,
        insecure_registries: args.insecure_registries.clone(),
        skip_tls_verify: args.skip_tls_verify || args.skip_tls_verify_pull,
        skip_tls_verify_registries: args.skip_tls_verify_registries.clone(),
        certificates,
        mirrors: args.registry_mirrors.clone(),
        registry_maps,
        skip_default_registry_fallback: args.skip_default_registry_fallback,
        pull_retries: args.image_download_retry,
        push_retries: args.push_retry,
        credentials: Vec::new(),
    })
}

fn write_digest(path: &PathBuf, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}
