//! Flags into the engine's options, checked before any work starts.

use crate::cli::{BuildArgs, CompressionArg, IsolationArg};
use crate::Error;
use kiln_dockerfile::{BuildArgs as ArgMap, PlanOptions, Platform};
use kiln_engine::context::{ContextSource, GitOptions};
use kiln_engine::{
    BuildOptions, CacheLocation, CacheSettings, IsolationMode, Output, SecretSource,
};
use kiln_layer::Compression;
use kiln_registry::{Reference, RegistryOptions};
use std::path::{Path, PathBuf};

pub fn isolation(arg: IsolationArg) -> IsolationMode {
    match arg {
        IsolationArg::Auto => IsolationMode::Auto,
        IsolationArg::Userns => IsolationMode::Userns,
        IsolationArg::Chroot => IsolationMode::Chroot,
        IsolationArg::InPlace => IsolationMode::InPlace,
    }
}

/// Where the image goes; destinations are parsed before any work.
pub fn outputs(args: &BuildArgs, platforms: usize) -> Result<Vec<Output>, Error> {
    let local = args.oci_layout_path.is_some() || args.tar_path.is_some();
    if let (Some(path), true) = (&args.tar_path, platforms > 1) {
        return Err(format!(
            "--tar-path {}: a docker archive holds one platform's image and --platform names {platforms}: build one platform for --tar-path, or write --oci-layout-path (an index) or push",
            path.display()
        )
        .into());
    }
    if !local && args.destinations.is_empty() && args.tags.is_empty() {
        return Err(
            "no output: give -d/--destination to push, or --oci-layout-path DIR / --tar-path FILE"
                .into(),
        );
    }
    if !local && args.destinations.is_empty() && !args.push {
        return Err("-t names the image, and kiln keeps no local image store: add --push to push it, or --tar-path FILE to `docker load` it".into());
    }
    if args.no_push && !local {
        return Err("--no-push without --oci-layout-path or --tar-path would build an image and throw it away".into());
    }
    let names = names(args);
    let mut outputs = Vec::new();
    if let Some(dir) = &args.oci_layout_path {
        let tags: Vec<String> = names.iter().map(|d| with_tag(d)).collect();
        let ref_name = tags
            .first()
            .and_then(|t| t.rsplit_once(':').map(|(_, tag)| tag.to_string()))
            .filter(|t| !t.contains('/'))
            .unwrap_or_else(|| "latest".to_string());
        outputs.push(Output::OciLayout {
            dir: dir.clone(),
            ref_name,
        });
    }
    if let Some(path) = &args.tar_path {
        outputs.push(Output::DockerArchive {
            path: path.clone(),
            tags: names.iter().map(|d| with_tag(d)).collect(),
        });
    }
    let pushed = destinations(args)?;
    if !args.no_push && !pushed.is_empty() {
        outputs.push(Output::Registry(pushed));
    }
    Ok(outputs)
}

/// Which base blobs the outputs need: all of them for a file output (it
/// writes every layer), else those from a registry other than a push's.
pub fn base_blobs(outputs: &[Output]) -> kiln_engine::BaseBlobs {
    let mut pushed = Vec::new();
    for output in outputs {
        match output {
            Output::Registry(destinations) => {
                pushed.extend(destinations.iter().map(|d| d.registry.clone()))
            }
            Output::OciLayout { .. } | Output::DockerArchive { .. } => {
                return kiln_engine::BaseBlobs::Kept
            }
        }
    }
    kiln_engine::BaseBlobs::PushedTo(pushed)
}

/// Every name given: `-d` (Kaniko) and `-t` (docker build).
pub fn names(args: &BuildArgs) -> Vec<String> {
    args.destinations
        .iter()
        .chain(&args.tags)
        .cloned()
        .collect()
}

/// What is pushed: every `-d`, and the `-t` names with `--push`.
fn destinations(args: &BuildArgs) -> Result<Vec<Reference>, Error> {
    let tags = args.tags.iter().filter(|_| args.push);
    args.destinations
        .iter()
        .chain(tags)
        .map(|d| Reference::parse(d).map_err(|e| format!("-d {d}: {e}").into()))
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

/// Where the context comes from: `-c/--context` or the positional one.
pub fn context_source(args: &BuildArgs) -> Result<ContextSource, Error> {
    if let Some(bucket) = &args.kaniko.bucket {
        return Err(format!("--bucket {bucket}: cloud storage contexts are not supported: download the archive and pass --context tar://FILE").into());
    }
    let text = args
        .context
        .as_deref()
        .or(args.context_arg.as_deref())
        .unwrap_or(".");
    Ok(ContextSource::parse(text)?)
}

/// Kaniko's `--git` options.
pub fn git_options(args: &BuildArgs) -> Result<GitOptions, Error> {
    Ok(match &args.git {
        Some(text) => GitOptions::parse(text)?,
        None => GitOptions::default(),
    })
}

/// The Dockerfile: `--dockerfile` as given or inside the context.
pub fn dockerfile(args: &BuildArgs, context: &Path) -> PathBuf {
    match &args.dockerfile {
        Some(p) if p.is_absolute() || p.exists() => p.clone(),
        Some(p) => context.join(p),
        None => context.join("Dockerfile"),
    }
}

/// `--platform`/`--custom-platform`: one platform or a comma-separated
/// list (each built; several make an index), the machine's by default.
pub fn platforms(args: &BuildArgs) -> Result<Vec<Platform>, Error> {
    let Some(list) = &args.custom_platform else {
        return Ok(vec![Platform::host()]);
    };
    let mut platforms: Vec<Platform> = Vec::new();
    for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = Platform::parse(p).map_err(|e| format!("--platform {p}: {e}"))?;
        if platforms.contains(&parsed) {
            return Err(format!("--platform {list}: {parsed} is named twice").into());
        }
        platforms.push(parsed);
    }
    if platforms.is_empty() {
        return Err(format!("--platform {list:?}: no platform").into());
    }
    Ok(platforms)
}

pub fn plan_options(args: &BuildArgs, platform: &Platform) -> Result<PlanOptions, Error> {
    Ok(PlanOptions {
        build_args: build_arg_map(&args.build_args)?,
        target: args.target.clone(),
        target_platform: platform.clone(),
        ..PlanOptions::default()
    })
}

pub fn build_options(
    args: &BuildArgs,
    context_dir: PathBuf,
    dockerfile: PathBuf,
    kiln_dir: PathBuf,
    work_dir: &Path,
) -> Result<BuildOptions, Error> {
    let cache = cache_settings(args, &destinations(args)?, &kiln_dir)?;
    Ok(BuildOptions {
        context_dir,
        dockerfile,
        labels: labels(&args.labels)?,
        reproducible: args.reproducible,
        source_date_epoch: source_date_epoch()?,
        work_dir: work_dir.to_path_buf(),
        compression: compression(args)?,
        kiln_dir,
        registry: registry_options(args)?,
        isolation: isolation(args.isolation),
        ignore_paths: args.ignore_paths.clone(),
        ignore_var_run: args.ignore_var_run,
        force: args.force,
        secrets: secrets(&args.secrets)?,
        ssh: ssh_agents(&args.ssh)?,
        jobs: match args.jobs {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        cache,
        cache_dir: args.cache_dir.clone(),
        upload_layers_to: match args.no_push {
            true => None,
            false => destinations(args)?.into_iter().next(),
        },
        base_blobs: Default::default(),
        attest: Default::default(),
    })
}

fn build_arg_map(items: &[String]) -> Result<ArgMap, Error> {
    let mut map = ArgMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                map.insert(k.to_string(), v.to_string());
            }
            Some(_) => return Err(format!("--build-arg {item:?}: empty name").into()),
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

/// `KEY=VALUE` items of a flag.
fn pairs(flag: &str, items: &[String], expected: &str) -> Result<Vec<(String, String)>, Error> {
    items
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() && (flag == "--label" || !v.is_empty()) => {
                Ok((k.to_string(), v.to_string()))
            }
            _ => Err(format!("{flag} {l:?}: expected {expected}").into()),
        })
        .collect()
}

fn labels(items: &[String]) -> Result<Vec<(String, String)>, Error> {
    pairs("--label", items, "KEY=VALUE")
}

/// `--registry-certificate REGISTRY=PATH` items.
pub fn certificates(items: &[String]) -> Result<Vec<(String, PathBuf)>, Error> {
    let pairs = pairs("--registry-certificate", items, "REGISTRY=PATH")?;
    Ok(pairs
        .into_iter()
        .map(|(r, p)| (r, PathBuf::from(p)))
        .collect())
}

fn source_date_epoch() -> Result<Option<i64>, Error> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("SOURCE_DATE_EPOCH={v:?}: expected seconds since 1970").into()),
        Err(_) => Ok(None),
    }
}

/// The cache settings from `--cache` and its companions: a registry (or
/// OCI layout) cache with `--cache`, none with `--cache=false` or
/// `--no-cache`, else the local cache in kiln's directory, which keeps
/// every step, as `docker build` does.
fn cache_settings(
    args: &BuildArgs,
    destinations: &[Reference],
    kiln_dir: &Path,
) -> Result<Option<CacheSettings>, Error> {
    let ttl_ns = kiln_dockerfile::instructions::parse_duration(&args.cache_ttl)
        .map_err(|e| format!("--cache-ttl {}: {e}", args.cache_ttl))?;
    match (args.cache, args.no_cache) {
        (_, true) | (Some(false), _) => return Ok(None),
        (None, false) => {
            return Ok(Some(CacheSettings {
                repo: CacheLocation::Layout(kiln_dir.join("cache")),
                ttl: ttl_ns / 1_000_000_000,
                run_layers: true,
                copy_layers: true,
                push: true,
                explain: args.explain_cache,
            }))
        }
        (Some(true), false) => {}
    }
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
    Ok(Some(CacheSettings {
        repo,
        ttl: ttl_ns / 1_000_000_000,
        run_layers: args.cache_run_layers,
        copy_layers: args.cache_copy_layers,
        push: !args.no_push_cache,
        explain: args.explain_cache,
    }))
}

/// `--kiln-dir`, else `$KILN_DIR`, else `${XDG_CACHE_HOME:-$HOME/.cache}/kiln`.
pub fn kiln_dir(flag: Option<PathBuf>) -> Result<PathBuf, Error> {
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

/// docker build's `--secret id=ID,src=PATH` / `id=ID,env=VAR` (and
/// `type=file|env`, `source=`).
fn secrets(items: &[String]) -> Result<Vec<(String, SecretSource)>, Error> {
    items
        .iter()
        .map(|item| {
            let mut id = None;
            let mut source = None;
            for field in item.split(',') {
                match field.split_once('=') {
                    Some(("id", v)) => id = Some(v.to_string()),
                    Some(("src" | "source", v)) => source = Some(SecretSource::File(v.into())),
                    Some(("env", v)) => source = Some(SecretSource::Env(v.into())),
                    Some(("type", "file" | "env")) => {}
                    _ => {
                        return Err(format!(
                            "--secret {item:?}: expected id=ID,src=PATH or id=ID,env=VAR"
                        )
                        .into())
                    }
                }
            }
            let id = id.ok_or_else(|| format!("--secret {item:?}: no id="))?;
            // docker: with no src, a variable named like the id.
            let source = source.unwrap_or_else(|| SecretSource::Env(id.clone()));
            Ok((id, source))
        })
        .collect()
}

/// docker build's `--ssh default` (`$SSH_AUTH_SOCK`) or `--ssh ID=SOCKET`.
fn ssh_agents(items: &[String]) -> Result<Vec<(String, PathBuf)>, Error> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((id, socket)) => Ok((id.to_string(), PathBuf::from(socket))),
            None => std::env::var_os("SSH_AUTH_SOCK")
                .map(|s| (item.clone(), PathBuf::from(s)))
                .ok_or_else(|| {
                    format!("--ssh {item}: $SSH_AUTH_SOCK is not set; give --ssh {item}=SOCKET")
                        .into()
                }),
        })
        .collect()
}

/// `--registry-client-cert REGISTRY=CERT,KEY` items.
fn client_certificates(items: &[String]) -> Result<Vec<(String, PathBuf, PathBuf)>, Error> {
    let pairs = pairs("--registry-client-cert", items, "REGISTRY=CERT,KEY")?;
    pairs
        .into_iter()
        .map(|(r, files)| match files.split_once(',') {
            Some((c, k)) if !c.is_empty() && !k.is_empty() => {
                Ok((r, PathBuf::from(c), PathBuf::from(k)))
            }
            _ => Err(
                format!("--registry-client-cert {r}={files}: expected REGISTRY=CERT,KEY").into(),
            ),
        })
        .collect()
}

/// `--registry-mirror`s, and `$KANIKO_REGISTRY_MIRROR` as Kaniko reads it.
fn mirrors(args: &BuildArgs) -> Vec<String> {
    let mut mirrors = args.registry_mirrors.clone();
    if let Ok(env) = std::env::var("KANIKO_REGISTRY_MIRROR") {
        mirrors.extend(env.split(',').filter(|m| !m.is_empty()).map(String::from));
    }
    mirrors
}

fn registry_options(args: &BuildArgs) -> Result<RegistryOptions, Error> {
    let registry_maps = pairs(
        "--registry-map",
        &args.registry_maps,
        "ORIGINAL=MIRROR[;MIRROR...]",
    )?
    .into_iter()
    .map(|(orig, mirrors)| {
        let list = mirrors
            .split(';')
            .filter(|x| !x.is_empty())
            .map(String::from);
        (orig, list.collect())
    })
    .collect();
    Ok(RegistryOptions {
        // Kaniko's pull-only variants: kiln uses one setting for both ways.
        insecure: args.insecure || args.insecure_pull,
        insecure_registries: args.insecure_registries.clone(),
        skip_tls_verify: args.skip_tls_verify || args.skip_tls_verify_pull,
        skip_tls_verify_registries: args.skip_tls_verify_registries.clone(),
        certificates: certificates(&args.registry_certificates)?,
        client_certificates: client_certificates(&args.registry_client_certs)?,
        mirrors: mirrors(args),
        registry_maps,
        skip_default_registry_fallback: args.skip_default_registry_fallback,
        pull_retries: args.image_download_retry,
        push_retries: args.push_retry,
        credentials: Vec::new(),
        timeout: Some(registry_timeout(&args.registry_timeout)?),
    })
}

/// `--registry-timeout`: a duration (`30s`, `2m`), more than zero.
fn registry_timeout(text: &str) -> Result<std::time::Duration, Error> {
    let ns = kiln_dockerfile::instructions::parse_duration(text)
        .map_err(|e| format!("--registry-timeout {text}: {e}"))?;
    if ns <= 0 {
        return Err(format!("--registry-timeout {text}: must be more than zero").into());
    }
    Ok(std::time::Duration::from_nanos(ns as u64))
}

/// Kaniko and docker flags that change nothing here, each with why.
pub fn warn_meaningless(args: &BuildArgs) {
    let k = &args.kaniko;
    let set = |b: Option<bool>| b.is_some();
    let notes: [(bool, &str, &str); 13] = [
        (k.snapshot_mode.is_some(), "--snapshot-mode", "kiln reads a step's changes from its overlay upper directory, or compares metadata then content"),
        (set(k.single_snapshot), "--single-snapshot", "kiln keeps one layer per changing step"),
        (set(k.skip_unused_stages), "--skip-unused-stages", "kiln always builds only the stages the target needs"),
        (set(k.cleanup), "--cleanup", "kiln's builds leave nothing in the container's file system"),
        (set(k.use_new_run), "--use-new-run", "kiln's RUN always reads only what changed"),
        (set(k.compressed_caching), "--compressed-caching", "kiln streams layers to disk and never holds one in memory"),
        (k.image_fs_extract_retry.is_some(), "--image-fs-extract-retry", "extraction is local; downloads retry with --image-download-retry"),
        (set(k.force_build_metadata), "--force-build-metadata", "metadata steps add history entries without layers, as docker's do"),
        (set(k.skip_push_permission_check), "--skip-push-permission-check", "kiln does not check permissions before building; a refused push fails with the registry's answer"),
        (set(k.preserve_context), "--preserve-context", "kiln never changes the context"),
        (set(k.materialize), "--materialize", "kiln writes a stage's file system out only when a step needs it"),
        (set(k.push_ignore_immutable_tag_errors), "--push-ignore-immutable-tag-errors", "not supported: a refused tag fails the push"),
        (args.pull, "--pull", "kiln always asks the registry for a base image's current digest"),
    ];
    for (given, flag, why) in notes {
        if given {
            tracing::warn!("{flag} has no effect in kiln: {why}");
        }
    }
}

/// A flag's value that is not one the flag takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagValueError {
    #[error("--compression-level {level}: {algorithm} takes {min} to {max}")]
    CompressionLevel {
        level: i32,
        algorithm: &'static str,
        min: i32,
        max: i32,
    },
    #[error("--kiln-dir-max-size {0:?}: expected a size such as 10GiB")]
    Size(String),
    #[error("--kiln-dir-max-size {text:?}: unknown unit {unit:?}")]
    SizeUnit { text: String, unit: String },
}

/// `--compression` and `--compression-level` (each algorithm's own range).
fn compression(args: &BuildArgs) -> Result<Compression, FlagValueError> {
    let level = args.compression_level;
    match args.compression {
        // Level 3 by measurement (docs/benchmarks.md): W3's layer is as
        // small as at 6, and written faster.
        CompressionArg::Gzip => match level.unwrap_or(3) {
            l @ 0..=9 => Ok(Compression::Gzip(l as u32)),
            l => Err(FlagValueError::CompressionLevel {
                level: l,
                algorithm: "gzip",
                min: 0,
                max: 9,
            }),
        },
        CompressionArg::Zstd => match level.unwrap_or(3) {
            l @ 1..=19 => Ok(Compression::Zstd(l)),
            l => Err(FlagValueError::CompressionLevel {
                level: l,
                algorithm: "zstd",
                min: 1,
                max: 19,
            }),
        },
        CompressionArg::None => Ok(Compression::None),
    }
}

/// `--kiln-dir-max-size`: bytes, with an optional unit (`KB`, `MB`, `GB`,
/// `TB` in powers of 1000; `KiB`, `MiB`, `GiB`, `TiB` in powers of 1024);
/// 0 means no limit.
pub fn max_size(text: &str) -> Result<Option<u64>, FlagValueError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| FlagValueError::Size(text.to_string()))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000_u64.pow(2),
        "g" | "gb" => 1000_u64.pow(3),
        "t" | "tb" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        u => {
            return Err(FlagValueError::SizeUnit {
                text: text.to_string(),
                unit: u.to_string(),
            })
        }
    };
    Ok((n > 0).then(|| n.saturating_mul(factor)))
}

/// Registry options of the commands that only reach registries (`warm`,
/// `manifest push`).
pub fn registry_access(args: &crate::cli::RegistryAccessArgs) -> Result<RegistryOptions, Error> {
    Ok(RegistryOptions {
        insecure_registries: args.insecure_registries.clone(),
        skip_tls_verify_registries: args.skip_tls_verify_registries.clone(),
        certificates: certificates(&args.registry_certificates)?,
        pull_retries: 3,
        push_retries: 3,
        timeout: Some(registry_timeout(&args.registry_timeout)?),
        ..Default::default()
    })
}

#[cfg(test)]
mod size_tests {
    use super::max_size;

    #[test]
    fn sizes_with_units() {
        assert_eq!(max_size("10GiB"), Ok(Some(10 << 30)));
        assert_eq!(max_size("500MB"), Ok(Some(500_000_000)));
        assert_eq!(max_size("4096"), Ok(Some(4096)));
        assert_eq!(max_size("0"), Ok(None));
        assert!(max_size("ten").is_err());
        assert!(max_size("3 parsecs").is_err());
    }
}
