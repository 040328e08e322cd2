//! `kiln build` and `kiln warm`: flags to options, the engine, the outputs.

use crate::cli::{BuildArgs, WarmArgs};
use crate::exit::usage;
use crate::options;
use crate::Error;
use kiln_dockerfile::{Plan, Platform};
use kiln_engine::{DigestFiles, Services};
use kiln_registry::Reference;

pub fn build(args: BuildArgs) -> Result<(), Error> {
    options::warn_meaningless(&args);
    let outputs = match args.check {
        true => Vec::new(),
        false => options::outputs(&args).map_err(usage)?,
    };
    let source = options::context_source(&args).map_err(usage)?;
    let git = options::git_options(&args).map_err(usage)?;
    let kiln_dir = options::kiln_dir(args.kiln_dir.clone()).map_err(usage)?;
    let max_size = options::max_size(&args.kiln_dir_max_size).map_err(|e| usage(e.into()))?;
    // Held while the build runs: no other build's eviction removes what
    // this one uses.
    let hold = kiln_engine::evict::hold(&kiln_dir)
        .map_err(|e| format!("locking {}: {e}", kiln_dir.display()))?;
    let tmp = kiln_dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&tmp)
        .map_err(|e| format!("creating a work directory in {}: {e}", tmp.display()))?;
    let context = source.prepare(work.path(), &git, args.context_sub_path.as_deref())?;
    let dockerfile = options::dockerfile(&args, &context);
    let src = crate::read_dockerfile(&dockerfile).map_err(usage)?;
    let ast = kiln_dockerfile::parse(&dockerfile.display().to_string(), &src)?;
    let plan = match Plan::new(ast.clone(), options::plan_options(&args).map_err(usage)?) {
        Ok(plan) => plan,
        Err(e) => {
            crate::checks::report_unplannable(&ast);
            return Err(e.into());
        }
    };
    for unused in plan.unused_build_args() {
        tracing::warn!("build arg {unused} was given but no ARG declares it");
    }
    let build_options =
        options::build_options(&args, context, dockerfile, kiln_dir.clone(), work.path())
            .map_err(usage)?;
    if crate::checks::run(&plan, &build_options, args.check)? {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let (sender, receiver) = std::sync::mpsc::channel();
    let mode = crate::render::mode(args.progress);
    let renderer = std::thread::spawn(move || crate::render::render(receiver, mode));
    let built = kiln_engine::build(&plan, &build_options, Services::default(), sender);
    let records = renderer.join().unwrap_or_default();
    let (image, _) = built?;
    let files = DigestFiles {
        digest: args.digest_file.clone(),
        name_with_digest: args.image_name_with_digest_file.clone(),
        name_tag_with_digest: args.image_name_tag_with_digest_file.clone(),
        iid: args.iidfile.clone(),
        metadata: args.metadata_file.clone(),
        names: options::names(&args),
    };
    let pushing = (mode == crate::render::Mode::Tty)
        .then(|| crate::render::pushing(&outputs))
        .flatten();
    let exported = kiln_engine::export(&image, &outputs, &build_options.registry, &files);
    if let Some(bar) = pushing {
        bar.finish_and_clear();
    }
    exported?;
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&kiln_engine::report_json(&records))?;
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    crate::render::summary(
        &image,
        &options::names(&args),
        &records,
        started.elapsed().as_secs_f64(),
    );
    drop(work);
    if let Some(max) = max_size {
        evict(&kiln_dir, max, hold, &args.kiln_dir_max_size);
    }
    Ok(())
}

/// `--kiln-dir-max-size`: a failure to evict is a warning, never a failed
/// build.
fn evict(kiln_dir: &std::path::Path, max: u64, hold: kiln_engine::evict::Hold, limit: &str) {
    match kiln_engine::evict::evict(kiln_dir, max, hold) {
        Ok(Some(e)) if e.removed > 0 => tracing::info!(
            "{}: removed {} least recently used item(s) ({:.1} MiB) to stay under {limit}",
            kiln_dir.display(),
            e.removed,
            e.freed as f64 / 1048576.0
        ),
        Ok(Some(_)) => {}
        Ok(None) => tracing::debug!("other builds use {}: nothing evicted", kiln_dir.display()),
        Err(e) => tracing::warn!("keeping {} under {limit}: {e}", kiln_dir.display()),
    }
}

pub fn warm(args: WarmArgs) -> Result<(), Error> {
    let platform = match &args.custom_platform {
        Some(p) => Platform::parse(p).map_err(|e| format!("--custom-platform {p}: {e}"))?,
        None => Platform::host(),
    };
    let images = args
        .images
        .iter()
        .map(|i| Reference::parse(i).map_err(|e| format!("-i {i}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let registry = kiln_registry::RegistryOptions {
        insecure_registries: args.insecure_registries.clone(),
        skip_tls_verify_registries: args.skip_tls_verify_registries.clone(),
        certificates: options::certificates(&args.registry_certificates)?,
        pull_retries: 3,
        ..Default::default()
    };
    kiln_engine::warm(&args.cache_dir, &images, &platform, registry)?;
    Ok(())
}
