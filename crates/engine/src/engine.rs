//! The engine walks the plan: the stages the target needs, in order; for
//! each, its base (scratch, an earlier stage, an image), the images its
//! `COPY --from`s name, ONBUILD triggers of its base, then its steps
//! through the cache (`cached.rs`) and `step::dispatch`.

use crate::error::BuildError;
use crate::events::{Event, StepRecord};
use crate::ignore::IgnoreMatcher;
use crate::image_source::ImageSource;
use crate::layerstore::LayerStore;
use crate::locks::lock;
use crate::options::{BuildOptions, CacheLocation};
use crate::source::ContextFs;
use crate::stage::{Images, StageState, Stages};
use crate::step::{dispatch, BuildCx, StepCx};
use crate::text::first_line;
use kiln_cache::{LayerCache, LayoutCache, RegistryCache};
use kiln_dockerfile::instructions::{from_node, Instruction};
use kiln_dockerfile::shell::Lex;
use kiln_dockerfile::{CopySource, Node as AstNode, Plan, Platform, Stage, StageBase};
use kiln_image::config::rfc3339;
use kiln_image::{BuiltImage, OciLayout};
use kiln_registry::{BlobStore, Client};
use kiln_sandbox::Isolation;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::sync::Mutex;

/// What a build runs on. `None`s are made from the options: the executor
/// this machine allows, the cache `--cache` names.
#[derive(Default)]
pub struct Services {
    pub isolation: Option<Isolation>,
    pub cache: Option<Box<dyn LayerCache>>,
    /// Shared with builds of other platforms in this process.
    pub shared_steps: Option<Arc<crate::shared::SharedSteps>>,
}

pub(crate) struct Engine<'a> {
    pub(crate) build: BuildCx<'a>,
    states: Mutex<Stages>,
    /// Images used in this build (FROM and COPY --from), by reference.
    images: Mutex<Images>,
    /// The images pulled, by reference and manifest digest (provenance).
    pulled: Mutex<Vec<kiln_attest::Material>>,
    /// Each step's record with its stage's place in the plan and its own.
    records: Mutex<Vec<((usize, usize), StepRecord)>>,
    /// Steps announced so far.
    started: AtomicUsize,
}

/// A finished build: the image, what happened to each step, and what the
/// attestations need.
#[derive(Debug, Clone)]
pub struct Finished {
    pub image: BuiltImage,
    pub records: Vec<StepRecord>,
    /// Base images, URLs and git sources the build resolved.
    pub materials: Vec<kiln_attest::Material>,
    /// The SBOM scans asked for (`opts.attest.sbom`): the image first.
    pub scanned: Vec<crate::sbom::Scanned>,
}

/// Build the plan's target stage; progress goes to `events`.
pub fn build(
    plan: &Plan,
    opts: &BuildOptions,
    services: Services,
    events: Sender<Event>,
) -> Result<Finished, BuildError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let clamp = opts.source_date_epoch.or(opts.reproducible.then_some(0));
    let client = Arc::new(Client::new(opts.registry.clone()));
    let blob_store = BlobStore::new(opts.kiln_dir.join("blobs"));
    let cache: Option<Arc<dyn LayerCache>> = match services.cache {
        Some(c) => Some(Arc::from(c)),
        None => cache_from_options(opts, &client, &blob_store).map(Arc::from),
    };
    let isolation = match services.isolation {
        Some(i) => i,
        None => crate::isolation::choose_isolation(opts)?,
    };
    let engine = Engine {
        build: BuildCx {
            plan,
            opts,
            context: ContextFs {
                root: opts.context_dir.clone(),
                ignore: load_ignore(opts)?,
            },
            lex: Lex::new(plan.ast.escape),
            now: clamp.map_or(now, |c| now.min(c)),
            clamp,
            staging: opts.work_dir.join("staging"),
            blobs: opts.work_dir.join("blobs"),
            layer_store: LayerStore::new(opts.kiln_dir.join("layers")),
            isolation,
            events,
            steps_run: Default::default(),
            remote: crate::remote::Remote::new(opts.work_dir.join("downloads")),
            began: std::time::Instant::now(),
            client,
            blob_store,
            cache: Mutex::new(cache),
            shared_steps: services.shared_steps,
            uploads: Mutex::new(Vec::new()),
        },
        states: Mutex::new(HashMap::new()),
        images: Mutex::new(HashMap::new()),
        pulled: Mutex::new(Vec::new()),
        records: Mutex::new(Vec::new()),
        started: AtomicUsize::new(0),
    };
    engine.build_stages()?;
    engine.build.finish_uploads();
    let last = lock(&engine.states)
        .remove(&plan.target)
        .ok_or(BuildError::NoTarget)?;
    let mut last = Arc::try_unwrap(last).unwrap_or_else(|shared| (*shared).clone());
    if !opts.labels.is_empty() {
        let labels = last.config.config.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(opts.labels.iter().cloned());
    }
    last.config.created = Some(rfc3339(engine.build.now));
    let scanned = match &opts.attest.sbom {
        Some(request) => engine.scan(&mut last, request)?,
        None => Vec::new(),
    };
    let image = BuiltImage::new(last.config.clone(), last.blobs())?;
    let mut materials = engine.build.remote.materials();
    materials.extend(lock(&engine.pulled).drain(..));
    materials.sort();
    let mut records = engine
        .records
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    records.sort_by_key(|(place, _)| *place);
    Ok(Finished {
        image,
        records: records.into_iter().map(|(_, r)| r).collect(),
        materials,
        scanned,
    })
}

/// The cache `--cache` asks for.
fn cache_from_options(
    opts: &BuildOptions,
    client: &Arc<Client>,
    blob_store: &BlobStore,
) -> Option<Box<dyn LayerCache>> {
    let settings = opts.cache.as_ref()?;
    Some(match &settings.repo {
        CacheLocation::Registry(r) => Box::new(RegistryCache {
            client: client.clone(),
            store: blob_store.clone(),
            repo: r.clone(),
            ttl: settings.ttl,
        }),
        CacheLocation::Layout(p) => Box::new(LayoutCache {
            layout: OciLayout::new(p),
            ttl: settings.ttl,
        }),
    })
}

/// The build's `.dockerignore`: `<Dockerfile>.dockerignore` beside the
/// Dockerfile, else the context's (none: an empty matcher).
pub fn load_ignore(opts: &BuildOptions) -> Result<IgnoreMatcher, BuildError> {
    let mut beside = opts.dockerfile.clone().into_os_string();
    beside.push(".dockerignore");
    let candidates = [
        PathBuf::from(beside),
        opts.context_dir.join(".dockerignore"),
    ];
    for path in candidates {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return IgnoreMatcher::parse(&text).map_err(|source| BuildError::Ignore {
                    path: path.display().to_string(),
                    source,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(BuildError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        }
    }
    Ok(IgnoreMatcher::default())
}

/// The state a `COPY --from` reads.
fn copy_source<'s>(
    states: &'s Stages,
    images: &'s Images,
    source: Option<&CopySource>,
) -> Option<&'s StageState> {
    match source? {
        CopySource::Stage(i) => states.get(i).map(|s| &**s),
        CopySource::Image(r) => images.get(r).map(|s| &**s),
    }
}

impl<'a> Engine<'a> {
    /// The SBOM scans: the target's files (its waiting layers extracted
    /// first), then each other stage that asks (`BUILDKIT_SBOM_SCAN_STAGE`
    /// as a build arg or the stage's own ARG), then the context when
    /// `BUILDKIT_SBOM_SCAN_CONTEXT` asks.
    fn scan(
        &self,
        last: &mut StageState,
        request: &kiln_attest::SbomRequest,
    ) -> Result<Vec<crate::sbom::Scanned>, BuildError> {
        let plan = self.build.plan;
        let target = &plan.stages[plan.target];
        last.force(&self.build.layers())
            .map_err(|e| self.error(&target.from, e))?;
        let mut out = vec![crate::sbom::scan_tree("", &last.tree)];
        let asks = |state: &StageState| {
            request.scan_stages
                || state
                    .args
                    .get("BUILDKIT_SBOM_SCAN_STAGE")
                    .is_some_and(|v| kiln_attest::parse_bool(v) == Some(true))
        };
        let states = lock(&self.states);
        for index in &plan.order {
            let Some(state) = states.get(index).filter(|_| *index != plan.target) else {
                continue;
            };
            if !asks(state) {
                continue;
            }
            let stage = &plan.stages[*index];
            let tree = state
                .files(&self.build.layers())
                .map_err(|e| self.error(&stage.from, e))?;
            let name = stage
                .name
                .clone()
                .unwrap_or_else(|| format!("stage-{index}"));
            out.push(crate::sbom::scan_tree(&name, tree));
        }
        if request.scan_context {
            let started = std::time::Instant::now();
            let inventory =
                kiln_attest::scan(&kiln_attest::DirFiles::new(&self.build.opts.context_dir));
            tracing::info!(
                "sbom: {} packages found in the context in {:.3}s",
                inventory.packages.len(),
                started.elapsed().as_secs_f64()
            );
            out.push(crate::sbom::Scanned {
                name: "context".into(),
                inventory,
            });
        }
        Ok(out)
    }

    fn error(&self, node: &AstNode, cause: impl Into<crate::error::StepFailure>) -> BuildError {
        BuildError::at(&self.build.plan.ast, node, cause)
    }

    fn platform(&self, stage: &Stage) -> Result<Platform, BuildError> {
        match &stage.platform {
            Some(p) => Platform::parse(p).map_err(|e| self.error(&stage.from, e)),
            None => Ok(self.build.plan.options.target_platform.clone()),
        }
    }

    /// Build the plan's stages, those that do not depend on each other at
    /// the same time (`--jobs`; one at a time where the root is shared, in
    /// place). Stops at the first failure.
    fn build_stages(&self) -> Result<(), BuildError> {
        let plan = self.build.plan;
        let total: usize = plan.order.iter().map(|i| plan.stages[*i].steps.len()).sum();
        let jobs = match self.shares_one_root() {
            true => 1,
            false => self.build.opts.jobs.max(1),
        };
        let needed: HashSet<usize> = plan.order.iter().copied().collect();
        let mut pending: Vec<usize> = plan.order.clone();
        let mut done: HashSet<usize> = HashSet::new();
        let mut failure = None;
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel();
            let mut running = 0;
            loop {
                while running < jobs && failure.is_none() {
                    let ready = pending.iter().position(|i| {
                        plan.stages[*i]
                            .deps
                            .iter()
                            .all(|d| done.contains(d) || !needed.contains(d))
                    });
                    let Some(pos) = ready else { break };
                    let index = pending.remove(pos);
                    let tx = tx.clone();
                    scope.spawn(move || {
                        let built = self.build_stage(&plan.stages[index], total);
                        let _ = tx.send((index, built));
                    });
                    running += 1;
                }
                if running == 0 {
                    break;
                }
                let Ok((index, built)) = rx.recv() else { break };
                running -= 1;
                match built {
                    Ok(state) => {
                        lock(&self.states).insert(index, Arc::new(state));
                        done.insert(index);
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// In-place mode builds every stage in the one root: one at a time.
    fn shares_one_root(&self) -> bool {
        self.build.isolation.fixed_root().is_some()
    }

    fn build_stage(&self, stage: &'a Stage, total: usize) -> Result<StageState, BuildError> {
        let platform = self.platform(stage)?;
        let place = self
            .build
            .plan
            .order
            .iter()
            .position(|i| *i == stage.index)
            .unwrap_or(0);
        // In-place mode clears the root for this stage: the files earlier
        // stages left there and still name move aside first.
        if let Some(fixed) = self.build.isolation.fixed_root() {
            let stash = self.build.opts.work_dir.join("stash");
            for s in lock(&self.states).values_mut() {
                let s = Arc::make_mut(s);
                crate::root::stash_contents(&mut s.tree, fixed, &stash).map_err(|e| {
                    BuildError::at(
                        &self.build.plan.ast,
                        &stage.from,
                        format!("moving earlier stages' files aside: {e}"),
                    )
                })?;
                s.rootfs = None;
            }
        }
        let mut state = match &stage.base {
            StageBase::Scratch => StageState::scratch(&platform, self.build.now),
            StageBase::Stage(i) => {
                let base = lock(&self.states)
                    .get(i)
                    .cloned()
                    .ok_or_else(|| self.error(&stage.from, "base stage was not built"))?;
                // A stage built on another keeps its declared ARGs
                // (BuildKit: ds.buildArgs = append(ds.buildArgs,
                // ds.base.buildArgs...) in dockerfile2llb/convert.go).
                let mut s = base.as_base();
                s.args = base.args.clone();
                // A directory root changes as steps run: the new stage
                // writes out its own. Overlay roots are read-only below.
                if self.build.isolation.changes_root_in_place() {
                    s.rootfs = None;
                }
                s
            }
            StageBase::Image(r) => self.image(r, &platform, &stage.from)?.as_base(),
        };
        // Images the stage copies or mounts from are fetched before its
        // steps run.
        let target = self.build.plan.options.target_platform.clone();
        for step in &stage.steps {
            if let Some(CopySource::Image(r)) = &step.copy_from {
                self.image(r, &target, &step.node)?;
            }
        }
        for r in &stage.image_deps {
            self.image(r, &target, &stage.from)?;
        }
        let announce = |text: String| {
            let index = self.started.fetch_add(1, Ordering::Relaxed) + 1;
            let _ = self.build.events.send(Event::StepStarted {
                stage: stage.label(),
                index,
                total,
                text,
                several_stages: self.build.plan.order.len() > 1,
            });
        };
        self.onbuild_triggers(stage, &mut state, &announce)?;
        // What this stage's steps may read: the stages and images so far.
        let label = stage.label();
        let states = lock(&self.states).clone();
        let images = lock(&self.images).clone();
        for (i, step) in stage.steps.iter().enumerate() {
            announce(first_line(&step.node));
            let slot = format!(
                "{}:{}:{i}",
                self.build
                    .opts
                    .dockerfile
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                stage.label()
            );
            let cx = StepCx {
                build: &self.build,
                node: &step.node,
                copy_from: copy_source(&states, &images, step.copy_from.as_ref()),
                stages: &states,
                images: &images,
                stage: &label,
                in_image: stage.index == self.build.plan.target,
            };
            let record =
                crate::cached::step(&cx, &mut state, &stage.label(), &slot, &step.instruction)?;
            lock(&self.records).push(((place, i), record));
        }
        Ok(state)
    }

    /// ONBUILD triggers of the base run first, then are cleared.
    fn onbuild_triggers(
        &self,
        stage: &Stage,
        state: &mut StageState,
        announce: &dyn Fn(String),
    ) -> Result<(), BuildError> {
        let Some(triggers) = state.config.config.on_build.take() else {
            return Ok(());
        };
        for t in triggers {
            let ast = kiln_dockerfile::parse(&self.build.plan.ast.file, &t).map_err(|e| {
                self.error(&stage.from, format!("ONBUILD trigger {t:?}: {}", e.message))
            })?;
            for node in &ast.nodes {
                let ins = from_node(node)
                    .map_err(|m| self.error(&stage.from, format!("ONBUILD {t:?}: {m}")))?;
                announce(format!("ONBUILD {}", first_line(node)));
                let from = match &ins {
                    Instruction::Copy(c) => match &c.from {
                        Some(f) => Some(self.trigger_source(f, &stage.from)?),
                        None => None,
                    },
                    _ => None,
                };
                let states = lock(&self.states).clone();
                let images = lock(&self.images).clone();
                let cx = StepCx {
                    build: &self.build,
                    node: &stage.from,
                    copy_from: copy_source(&states, &images, from.as_ref()),
                    stages: &states,
                    images: &images,
                    stage: &stage.label(),
                    in_image: stage.index == self.build.plan.target,
                };
                dispatch(&cx, state, &ins)?;
                state.cache_key =
                    kiln_image::sha256_hex(format!("{}\nONBUILD {t}", state.cache_key).as_bytes());
            }
        }
        Ok(())
    }

    /// A trigger's `COPY --from` (triggers are not in the plan): a stage
    /// by name or index, else an image, fetched now.
    fn trigger_source(&self, from: &str, node: &AstNode) -> Result<CopySource, BuildError> {
        match self.build.plan.stage_index(from) {
            Some(i) => Ok(CopySource::Stage(i)),
            None => {
                let platform = self.build.plan.options.target_platform.clone();
                self.image(from, &platform, node)?;
                Ok(CopySource::Image(from.to_string()))
            }
        }
    }

    /// An image's stage state, fetched once per build.
    fn image(
        &self,
        reference: &str,
        platform: &Platform,
        node: &AstNode,
    ) -> Result<Arc<StageState>, BuildError> {
        // One fetch at a time: a second stage naming the image waits for it.
        let mut images = lock(&self.images);
        // By reference for the target platform (what `COPY --from` and
        // mounts look up); another platform's (`FROM --platform=...`) is
        // an image of its own.
        let key = match *platform == self.build.plan.options.target_platform {
            true => reference.to_string(),
            false => format!("{reference} ({platform})"),
        };
        if let Some(s) = images.get(&key) {
            return Ok(s.clone());
        }
        let source = ImageSource {
            opts: self.build.opts,
            client: &self.build.client,
            blob_store: &self.build.blob_store,
            now: self.build.now,
        };
        let started = std::time::Instant::now();
        let _ = self.build.events.send(Event::Pulling {
            reference: reference.to_string(),
        });
        let (state, digest) = source
            .stage_state(reference, platform)
            .map_err(|e| self.error(node, e))?;
        lock(&self.pulled).push(kiln_attest::Material {
            uri: kiln_attest::statement::docker_purl(reference, Some(&platform.to_string())),
            digest: (
                "sha256".into(),
                digest.trim_start_matches("sha256:").to_string(),
            ),
        });
        let _ = self.build.events.send(Event::Pulled {
            reference: reference.to_string(),
            layers: state.layers.len(),
            seconds: started.elapsed().as_secs_f64(),
        });
        let state = Arc::new(state);
        images.insert(key, state.clone());
        Ok(state)
    }
}
