//! `kiln build` and `kiln warm`: flags to options, the engine, the outputs.

use crate::cli::{BuildArgs, WarmArgs};
use crate::exit::usage;
use crate::options;
use crate::Error;
use kiln_dockerfile::{Plan, Platform};
use kiln_engine::{Built, DigestFiles, Finished, Services, SharedSteps, StepRecord};
use kiln_image::BuiltImage;
use kiln_registry::Reference;

pub fn build(args: BuildArgs) -> Result<(), Error> {
    options::warn_meaningless(&args);
    let platforms = options::platforms(&args).map_err(usage)?;
    let outputs = match args.check {
        true => Vec::new(),
        false => options::outputs(&args, platforms.len()).map_err(usage)?,
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
    // Builds, and each step's files, land in block groups of their own
    // (kiln_layer::spread: file creation near recent deletions is slow).
    kiln_layer::spread::create_spread_dir(&tmp)
        .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&tmp)
        .map_err(|e| format!("creating a work directory in {}: {e}", tmp.display()))?;
    kiln_layer::spread::spread_subdirectories(work.path());
    let (context, git_context) =
        source.prepare_traced(work.path(), &git, args.context_sub_path.as_deref())?;
    let dockerfile = options::dockerfile(&args, &context);
    let src = crate::read_dockerfile(&dockerfile).map_err(usage)?;
    let ast = kiln_dockerfile::parse(&dockerfile.display().to_string(), &src)?;
    let several = platforms.len() > 1;
    let pushing = outputs
        .iter()
        .any(|o| matches!(o, kiln_engine::Output::Registry(_)));
    let attest = crate::attest::request(&args, pushing).map_err(usage)?;
    let mut targets = Vec::new();
    for platform in &platforms {
        let plan_options = options::plan_options(&args, platform).map_err(usage)?;
        let plan = match Plan::new(ast.clone(), plan_options) {
            Ok(plan) => plan,
            Err(e) => {
                crate::checks::report_unplannable(&ast);
                return Err(e.into());
            }
        };
        // Each platform's steps and blobs in a folder of its own.
        let work_dir = match several {
            true => work.path().join(platform.to_string().replace('/', "-")),
            false => work.path().to_path_buf(),
        };
        let mut build_options = options::build_options(
            &args,
            context.clone(),
            dockerfile.clone(),
            kiln_dir.clone(),
            &work_dir,
        )
        .map_err(usage)?;
        build_options.attest = attest.clone();
        build_options.base_blobs = options::base_blobs(&outputs);
        // Platforms build at once and one may fail while another is
        // done: the registry hears nothing until all are.
        if several {
            build_options.upload_layers_to = None;
        }
        targets.push((platform.clone(), plan, build_options));
    }
    for unused in targets[0].1.unused_build_args() {
        tracing::warn!("build arg {unused} was given but no ARG declares it");
    }
    let mut checked = false;
    for (_, plan, build_options) in &targets {
        checked |= crate::checks::run(plan, build_options, args.check)?;
    }
    if checked {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let started_at = std::time::SystemTime::now();
    let mode = crate::render::mode(args.progress);
    let (finished, records) = build_all(&targets, mode)?;
    let names = options::names(&args);
    let run = crate::attest::RunFacts {
        args: &args,
        request: &targets[0].2.attest,
        dockerfile: &dockerfile,
        dockerfile_text: &src,
        context: &context,
        git_context: git_context.clone(),
        started: started_at,
        clamp: targets[0]
            .2
            .source_date_epoch
            .or(args.reproducible.then_some(0)),
        names: names.clone(),
        work: work.path(),
    };
    let built = assemble(&run, finished)?;
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
    let exported = kiln_engine::export(&built, &outputs, &targets[0].2.registry, &files);
    if let Some(bar) = pushing {
        bar.finish_and_clear();
    }
    exported?;
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&kiln_engine::report_json(&records))?;
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    crate::render::summary(
        &built,
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

/// The images and their attestations as the outputs take them: one
/// image alone, or an index of each platform's image and, after them,
/// their attestation manifests.
fn assemble(run: &crate::attest::RunFacts, finished: Vec<Finished>) -> Result<Built, Error> {
    let attestations = match run.request.any() {
        true => crate::attest::attach(run, &finished)?,
        false => Vec::new(),
    };
    let mut images: Vec<BuiltImage> = finished.into_iter().map(|f| f.image).collect();
    if images.len() == 1 && attestations.is_empty() {
        let image = images.pop().ok_or("nothing was built")?;
        return Ok(Built::Image(Box::new(image)));
    }
    let index = kiln_image::ImageIndex::of_built(&images, &attestations)
        .map_err(|e| format!("making the image index: {e}"))?;
    Ok(Built::Index {
        images,
        attestations,
        index,
    })
}

/// Builds each platform's image (at once, unless `--jobs 1`). Steps with
/// the same key run once across platforms.
fn build_all(
    targets: &[(Platform, Plan, kiln_engine::BuildOptions)],
    mode: crate::render::Mode,
) -> Result<(Vec<Finished>, Vec<StepRecord>), Error> {
    let several = targets.len() > 1;
    let shared = several.then(|| std::sync::Arc::new(SharedSteps::default()));
    // Chosen once, before any platform's stage starts; they share it.
    let isolation = kiln_engine::choose_isolation(&targets[0].2)?;
    let one = |(platform, plan, options): &(Platform, Plan, kiln_engine::BuildOptions)| {
        let (sender, receiver) = std::sync::mpsc::channel();
        let prefix = several.then(|| platform.to_string());
        let renderer = std::thread::spawn(move || crate::render::render(receiver, mode, prefix));
        let services = Services {
            shared_steps: shared.clone(),
            isolation: Some(isolation.clone()),
            ..Services::default()
        };
        let built = kiln_engine::build(plan, options, services, sender);
        let mut records = renderer.join().unwrap_or_default();
        if several {
            for r in &mut records {
                r.stage = format!("{platform} {}", r.stage);
            }
        }
        built.map(|finished| (finished, records))
    };
    let results: Vec<Result<(Finished, Vec<StepRecord>), kiln_engine::BuildError>> =
        if several && targets[0].2.jobs > 1 {
            std::thread::scope(|s| {
                let handles: Vec<_> = targets.iter().map(|t| s.spawn(move || one(t))).collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(kiln_engine::BuildError::Panicked))
                    })
                    .collect()
            })
        } else {
            // One after another; the first failure stops the rest.
            let mut results = Vec::new();
            for t in targets {
                let r = one(t);
                let failed = r.is_err();
                results.push(r);
                if failed {
                    break;
                }
            }
            results
        };
    let mut images = Vec::new();
    let mut records = Vec::new();
    for ((platform, _, _), r) in targets.iter().zip(results) {
        let (finished, recs) = r.map_err(|e| match several {
            true => Error::from(kiln_engine::BuildError::Platform {
                platform: platform.to_string(),
                source: Box::new(e),
            }),
            false => Error::from(e),
        })?;
        images.push(finished);
        records.extend(recs);
    }
    Ok((images, records))
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
    let registry = options::registry_access(&args.registry)?;
    kiln_engine::warm(&args.cache_dir, &images, &platform, registry)?;
    Ok(())
}
