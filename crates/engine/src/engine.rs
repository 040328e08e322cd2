//! The engine: walks the plan's stages in order and dispatches each
//! instruction: COPY/ADD and WORKDIR change the tree and commit a layer,
//! the rest change the image config. Every step gets a history entry.

use crate::copy::{copy_items, extract_archive, is_archive, CopyError, CopyOptions};
use crate::fstree::{FsTree, Node, NodeKind};
use crate::ignore::{clean, IgnoreMatcher};
use crate::layerstore::LayerStore;
use crate::metadata::{expose_ports, go_quoted_list, shell_wrap};
use crate::run::{decide, run as run_in_sandbox, Isolation, IsolationMode, Rootfs, StepRequest};
use crate::source::{expand_source, ContextFs, SourceFs, SourceItem, SrcEntry, SrcKind, TreeFs};
use crate::users::{resolve_chown, resolve_user};
pub use cached::{CacheLocation, CacheSettings, StepRecord};
use kiln_dockerfile::instructions::{from_node, CopyArgs, Instruction, RunArgs};
use kiln_dockerfile::shell::Lex;
use kiln_dockerfile::Command;
use kiln_dockerfile::{Heredoc, Node as AstNode, Plan, Platform, StageBase};
use kiln_image::config::{rfc3339, Empty};
use kiln_image::manifest::{MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR};
use kiln_image::{BuiltImage, Healthcheck, History, ImageConfig, LayerBlob};
use kiln_layer::{write_layer, Compression, Content, LayerOptions};
use kiln_registry::{pull, BlobStore, Client, Reference, RegistryOptions, WantedPlatform};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

mod cached;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub context_dir: PathBuf,
    /// The Dockerfile (its `<name>.dockerignore` beside it wins over the
    /// context's `.dockerignore`).
    pub dockerfile: PathBuf,
    /// `--label`s, added to the final image.
    pub labels: Vec<(String, String)>,
    /// Kaniko's `--reproducible`: every time is 0 unless SOURCE_DATE_EPOCH.
    pub reproducible: bool,
    pub source_date_epoch: Option<i64>,
    /// Where layer blobs and staged files go.
    pub work_dir: PathBuf,
    pub compression: Compression,
    /// kiln's local state: pulled blobs and extracted layers.
    pub kiln_dir: PathBuf,
    pub registry: RegistryOptions,
    /// `--isolation`.
    pub isolation: IsolationMode,
    /// `--ignore-path`: paths RUN changes are never taken from.
    pub ignore_paths: Vec<String>,
    /// `--cache`: the registry layer cache.
    pub cache: Option<CacheSettings>,
    /// `--cache-dir`: base images stored by `kiln warm`, used before any
    /// registry is asked.
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A step failed: file, line, column, the message and the line itself.
    #[error("{0}")]
    Step(kiln_dockerfile::ParseError),
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Image(#[from] kiln_image::ImageError),
}

/// A progress event, for the CLI's step lines.
#[derive(Debug, Clone)]
pub struct StepEvent {
    pub stage: String,
    pub index: usize,
    pub total: usize,
    pub text: String,
}

#[derive(Clone)]
struct StageState {
    tree: FsTree,
    config: ImageConfig,
    layers: Vec<LayerBlob>,
    /// Declared ARGs with values, visible to this stage's steps.
    args: BTreeMap<String, String>,
    cmd_set: bool,
    /// The stage's root on disk, once a RUN needed it (chroot modes).
    rootfs: Option<Rootfs>,
    /// Each layer as an overlay-ready directory, where known (base layers
    /// from the layer store, RUN upper directories).
    layer_dirs: Vec<Option<PathBuf>>,
    /// Cache key of the last step (the base for the first).
    cache_key: String,
}

struct Engine<'a> {
    plan: &'a Plan,
    opts: &'a BuildOptions,
    context: ContextFs,
    lex: Lex,
    states: HashMap<usize, StageState>,
    /// Time for new files' mtimes and `created`.
    now: i64,
    clamp: Option<i64>,
    staging: PathBuf,
    blobs: PathBuf,
    client: Client,
    blob_store: BlobStore,
    layer_store: LayerStore,
    /// Images pulled in this build (FROM and COPY --from), by reference.
    images: HashMap<String, StageState>,
    /// How RUN steps are isolated, decided at the first RUN.
    isolation: Option<Isolation>,
    steps_run: usize,
    /// The cache is used until the registry holding it fails.
    cache_enabled: bool,
    records: Vec<StepRecord>,
}

/// Build the plan's target stage.
pub fn build(
    plan: &Plan,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(StepEvent),
) -> Result<BuiltImage, BuildError> {
    build_with_records(plan, opts, progress).map(|(image, _)| image)
}

/// Build, and say for each step what happened (cache, time, layer).
pub fn build_with_records(
    plan: &Plan,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(StepEvent),
) -> Result<(BuiltImage, Vec<StepRecord>), BuildError> {
    let ignore = load_ignore(opts)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let clamp = opts.source_date_epoch.or(opts.reproducible.then_some(0));
    let mut engine = Engine {
        plan,
        opts,
        context: ContextFs {
            root: opts.context_dir.clone(),
            ignore,
        },
        lex: Lex::new(plan.ast.escape),
        states: HashMap::new(),
        now: clamp.map_or(now, |c| now.min(c)),
        clamp,
        staging: opts.work_dir.join("staging"),
        blobs: opts.work_dir.join("blobs"),
        client: Client::new(opts.registry.clone()),
        blob_store: BlobStore::new(opts.kiln_dir.join("blobs")),
        layer_store: LayerStore::new(opts.kiln_dir.join("layers")),
        images: HashMap::new(),
        isolation: None,
        steps_run: 0,
        cache_enabled: opts.cache.is_some(),
        records: Vec::new(),
    };
    let total: usize = plan.order.iter().map(|i| plan.stages[*i].steps.len()).sum();
    let mut done = 0;
    for &index in &plan.order {
        let state = engine.build_stage(index, &mut |text| {
            done += 1;
            progress(StepEvent {
                stage: plan.stages[index].label(),
                index: done,
                total,
                text,
            })
        })?;
        engine.states.insert(index, state);
    }
    let mut final_state = engine
        .states
        .remove(&plan.target)
        .ok_or_else(|| BuildError::Setup("target stage was not built".into()))?;
    if !opts.labels.is_empty() {
        let labels = final_state
            .config
            .config
            .labels
            .get_or_insert_with(BTreeMap::new);
        for (k, v) in &opts.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    final_state.config.created = Some(rfc3339(engine.now));
    let records = std::mem::take(&mut engine.records);
    Ok((
        BuiltImage::new(final_state.config, final_state.layers)?,
        records,
    ))
}

fn load_ignore(opts: &BuildOptions) -> Result<IgnoreMatcher, BuildError> {
    let mut beside = opts.dockerfile.clone().into_os_string();
    beside.push(".dockerignore");
    let candidates = [
        PathBuf::from(beside),
        opts.context_dir.join(".dockerignore"),
    ];
    for path in candidates {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return IgnoreMatcher::parse(&text)
                    .map_err(|e| BuildError::Setup(format!("{}: {e}", path.display())));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(BuildError::Setup(format!(
                    "reading {}: {e}",
                    path.display()
                )))
            }
        }
    }
    Ok(IgnoreMatcher::default())
}

/// The first line of an instruction, for messages.
fn first_line(node: &AstNode) -> String {
    node.original
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

impl Engine<'_> {
    fn step_error(&self, node: &AstNode, message: impl Into<String>) -> BuildError {
        BuildError::Step(self.plan.ast.error_in(node, message))
    }

    fn build_stage(
        &mut self,
        index: usize,
        progress: &mut dyn FnMut(String),
    ) -> Result<StageState, BuildError> {
        let stage = &self.plan.stages[index];
        let mut state = match &stage.base {
            StageBase::Scratch => {
                let platform = match &stage.platform {
                    Some(p) => Platform::parse(p).map_err(|e| self.step_error(&stage.from, e))?,
                    None => self.plan.options.target_platform.clone(),
                };
                let mut config = ImageConfig {
                    architecture: platform.arch.clone(),
                    os: platform.os.clone(),
                    variant: platform.variant.clone(),
                    ..Default::default()
                };
                config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
                StageState {
                    tree: FsTree::new(self.now),
                    config,
                    layers: Vec::new(),
                    args: BTreeMap::new(),
                    cmd_set: false,
                    rootfs: None,
                    layer_dirs: Vec::new(),
                    cache_key: format!("scratch:{platform}"),
                }
            }
            StageBase::Stage(i) => {
                let mut s = self
                    .states
                    .get(i)
                    .cloned()
                    .ok_or_else(|| self.step_error(&stage.from, "base stage was not built"))?;
                s.args.clear();
                s.cmd_set = false;
                // Overlay roots are read-only below the steps: a new stage
                // can stack on them. A directory root changes as steps run.
                if !matches!(self.isolation, Some(Isolation::Overlay { .. })) {
                    s.rootfs = None;
                }
                s
            }
            StageBase::Image(r) => {
                let platform = match &stage.platform {
                    Some(p) => Platform::parse(p).map_err(|e| self.step_error(&stage.from, e))?,
                    None => self.plan.options.target_platform.clone(),
                };
                let from = stage.from.clone();
                let mut s = self.image_state(r, &platform, &from)?;
                s.args.clear();
                s.cmd_set = false;
                s
            }
        };
        // ONBUILD triggers of the base run first, then are cleared.
        if let Some(triggers) = state.config.config.on_build.take() {
            for t in triggers {
                let ast = kiln_dockerfile::parse(&self.plan.ast.file, &t).map_err(|e| {
                    self.step_error(&stage.from, format!("ONBUILD trigger {t:?}: {}", e.message))
                })?;
                for node in &ast.nodes {
                    let ins = from_node(node)
                        .map_err(|m| self.step_error(&stage.from, format!("ONBUILD {t:?}: {m}")))?;
                    progress(format!("ONBUILD {}", first_line(node)));
                    self.dispatch(&mut state, &stage.from, &ins)?;
                    state.cache_key = kiln_image::sha256_hex(
                        format!("{}\nONBUILD {t}", state.cache_key).as_bytes(),
                    );
                }
            }
        }
        for (i, step) in stage.steps.iter().enumerate() {
            progress(first_line(&step.node));
            let slot = format!(
                "{}:{}:{i}",
                self.opts
                    .dockerfile
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                stage.label()
            );
            self.step(
                &mut state,
                &stage.label(),
                slot,
                &step.node,
                &step.instruction,
            )?;
        }
        Ok(state)
    }

    fn expand(&self, state: &StageState, node: &AstNode, word: &str) -> Result<String, BuildError> {
        self.lex
            .process_word(word, &|k: &str| lookup(state, k))
            .map_err(|e| self.step_error(node, e.to_string()))
    }

    fn history(&self, state: &mut StageState, created_by: String, empty_layer: bool) {
        state.config.history.push(History {
            created: Some(rfc3339(self.now)),
            created_by: Some(created_by),
            author: None,
            comment: Some("kiln.dockerfile.v0".into()),
            empty_layer,
        });
    }

    /// Write this step's changes as a layer (none: an empty history entry).
    fn commit(
        &self,
        state: &mut StageState,
        node: &AstNode,
        created_by: String,
    ) -> Result<(), BuildError> {
        let entries = state.tree.take_changes();
        if entries.is_empty() {
            self.history(state, created_by, true);
            return Ok(());
        }
        let options = LayerOptions {
            compression: self.opts.compression,
            clamp_mtime: self.clamp,
        };
        let info = write_layer(entries, &self.blobs, &options)
            .map_err(|e| self.step_error(node, e.to_string()))?;
        state.layers.push(LayerBlob {
            digest: format!("sha256:{}", info.digest),
            diff_id: format!("sha256:{}", info.diff_id),
            size: info.size,
            uncompressed_size: info.uncompressed_size,
            media_type: match info.compression {
                Compression::None => MEDIA_TYPE_LAYER_TAR.into(),
                Compression::Gzip(_) => MEDIA_TYPE_LAYER_GZIP.into(),
            },
            path: info.path,
            source: None,
        });
        state.layer_dirs.push(None);
        self.history(state, created_by, false);
        Ok(())
    }

    fn dispatch(
        &mut self,
        state: &mut StageState,
        node: &AstNode,
        ins: &Instruction,
    ) -> Result<(), BuildError> {
        match ins {
            Instruction::From { .. } => Err(self.step_error(node, "FROM is not allowed here")),
            Instruction::Run(r) => self.run(state, node, r),
            Instruction::Arg(decls) => {
                for (k, default) in decls {
                    let value = match self.plan.options.build_args.get(k) {
                        Some(v) => Some(v.clone()),
                        None => match default {
                            Some(d) => Some(self.expand(state, node, d)?),
                            None => self.plan.meta_args.get(k).cloned(),
                        },
                    };
                    match value {
                        Some(v) => {
                            state.args.insert(k.clone(), v);
                        }
                        None => {
                            state.args.remove(k);
                        }
                    }
                }
                Ok(())
            }
            Instruction::Env(pairs) => {
                let mut expanded = Vec::new();
                for (k, v) in pairs {
                    let k = self.expand(state, node, k)?;
                    if k.is_empty() {
                        return Err(self.step_error(node, "ENV names can not be blank"));
                    }
                    expanded.push((k, self.expand(state, node, v)?));
                }
                let text: Vec<String> = expanded.iter().map(|(k, v)| format!("{k}={v}")).collect();
                for (k, v) in expanded {
                    state.config.config.env_set(&k, &v);
                }
                self.history(state, format!("ENV {}", text.join(" ")), true);
                Ok(())
            }
            Instruction::Label(pairs) => {
                let mut text = Vec::new();
                for (k, v) in pairs {
                    let k = self.expand(state, node, k)?;
                    let v = self.expand(state, node, v)?;
                    if k.is_empty() {
                        return Err(self.step_error(node, "LABEL names can not be blank"));
                    }
                    text.push(format!("{k}={v}"));
                    state
                        .config
                        .config
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(k, v);
                }
                self.history(state, format!("LABEL {}", text.join(" ")), true);
                Ok(())
            }
            Instruction::Maintainer(m) => {
                state.config.author = Some(m.clone());
                self.history(state, format!("MAINTAINER {m}"), true);
                Ok(())
            }
            Instruction::Cmd(c) => {
                let cmd = shell_wrap(&state.config.config, c);
                self.history(state, format!("CMD {}", go_quoted_list(&cmd)), true);
                state.config.config.cmd = Some(cmd);
                state.cmd_set = true;
                Ok(())
            }
            Instruction::Entrypoint(c) => {
                let ep = shell_wrap(&state.config.config, c);
                self.history(state, format!("ENTRYPOINT {}", go_quoted_list(&ep)), true);
                state.config.config.entrypoint = Some(ep);
                // A new ENTRYPOINT drops a CMD inherited from the base.
                if !state.cmd_set {
                    state.config.config.cmd = None;
                }
                Ok(())
            }
            Instruction::Shell(s) => {
                state.config.config.shell = Some(s.clone());
                self.history(state, format!("SHELL [{}]", s.join(" ")), true);
                Ok(())
            }
            Instruction::Expose(ports) => {
                let mut words = Vec::new();
                for p in ports {
                    words.push(self.expand(state, node, p)?);
                }
                let parsed = expose_ports(&words).map_err(|e| self.step_error(node, e))?;
                let map = state
                    .config
                    .config
                    .exposed_ports
                    .get_or_insert_with(BTreeMap::new);
                for p in &parsed {
                    map.insert(p.clone(), Empty {});
                }
                let shown: Vec<String> = parsed.iter().map(|p| format!("{p}:{{}}")).collect();
                self.history(state, format!("EXPOSE map[{}]", shown.join(" ")), true);
                Ok(())
            }
            Instruction::Volume(vols) => {
                let mut added = Vec::new();
                for v in vols {
                    let v = self.expand(state, node, v)?;
                    if v.trim().is_empty() {
                        return Err(
                            self.step_error(node, "VOLUME specified can not be an empty string")
                        );
                    }
                    state
                        .config
                        .config
                        .volumes
                        .get_or_insert_with(BTreeMap::new)
                        .insert(v.clone(), Empty {});
                    added.push(v);
                }
                self.history(state, format!("VOLUME [{}]", added.join(" ")), true);
                Ok(())
            }
            Instruction::User(u) => {
                let u = self.expand(state, node, u)?;
                state.config.config.user = u.clone();
                self.history(state, format!("USER {u}"), true);
                Ok(())
            }
            Instruction::StopSignal(s) => {
                let s = self.expand(state, node, s)?;
                state.config.config.stop_signal = s.clone();
                self.history(state, format!("STOPSIGNAL {s}"), true);
                Ok(())
            }
            Instruction::Healthcheck(h) => {
                let hc = Healthcheck {
                    test: h.test.clone(),
                    interval: h.interval_ns,
                    timeout: h.timeout_ns,
                    start_period: h.start_period_ns,
                    start_interval: h.start_interval_ns,
                    retries: h.retries,
                };
                self.history(
                    state,
                    format!("HEALTHCHECK {}", go_quoted_list(&h.test)),
                    true,
                );
                state.config.config.healthcheck = Some(hc);
                Ok(())
            }
            Instruction::Onbuild(trigger) => {
                state
                    .config
                    .config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(trigger.clone());
                Ok(())
            }
            Instruction::Workdir(w) => self.workdir(state, node, w),
            Instruction::Copy(c) => self.copy(state, node, c, false),
            Instruction::Add(c) => self.copy(state, node, c, true),
        }
    }

    fn workdir(
        &mut self,
        state: &mut StageState,
        node: &AstNode,
        w: &str,
    ) -> Result<(), BuildError> {
        let w = self.expand(state, node, w)?;
        let joined = if w.starts_with('/') {
            w.clone()
        } else {
            let base = if state.config.config.working_dir.is_empty() {
                "/".to_string()
            } else {
                state.config.config.working_dir.clone()
            };
            format!("{base}/{w}")
        };
        let path = clean(&joined);
        state.config.config.working_dir = path.clone();
        // The directory belongs to the current USER, as BuildKit makes it.
        let user = state.config.config.user.clone();
        let (uid, gid) = if user.is_empty() {
            (0, 0)
        } else {
            resolve_chown(&state.tree, &user).map_err(|e| self.step_error(node, e.to_string()))?
        };
        let now = self.now;
        state
            .tree
            .mkdir_all(&path, &mut |t| Node {
                kind: NodeKind::Dir,
                mode: 0o755,
                uid,
                gid,
                mtime: now,
                xattrs: BTreeMap::new(),
                inode: t.new_inode(),
            })
            .map_err(|e| self.step_error(node, e.to_string()))?;
        self.commit(state, node, format!("WORKDIR {path}"))
    }

    fn copy(
        &mut self,
        state: &mut StageState,
        node: &AstNode,
        c: &CopyArgs,
        is_add: bool,
    ) -> Result<(), BuildError> {
        let kw = if is_add { "ADD" } else { "COPY" };
        if let Some(f) = &c.from {
            let f = self.expand(state, node, f)?;
            if self.stage_index(&f).is_none() {
                let platform = self.plan.options.target_platform.clone();
                self.image_state(&f, &platform, node)?;
            }
        }
        let err = |e: &dyn std::fmt::Display| self.step_error(node, e.to_string());
        if c.checksum.is_some() {
            return Err(self.step_error(node, "--checksum can only be used with a URL source"));
        }
        let chown = match &c.chown {
            Some(spec) => {
                let spec = self.expand(state, node, spec)?;
                Some(resolve_chown(&state.tree, &spec).map_err(|e| err(&e))?)
            }
            None => None,
        };
        let chmod = match &c.chmod {
            Some(m) => {
                let m = self.expand(state, node, m)?;
                Some(
                    u32::from_str_radix(&m, 8)
                        .ok()
                        .filter(|v| *v <= 0o7777)
                        .ok_or_else(|| {
                            self.step_error(
                                node,
                                format!("invalid --chmod={m}: expected an octal mode such as 0755"),
                            )
                        })?,
                )
            }
            None => None,
        };
        let opts = CopyOptions {
            chown,
            chmod,
            now: self.now,
        };
        let raw_dest = self.expand(state, node, &c.dest)?;
        let dest = if raw_dest.starts_with('/') {
            raw_dest.clone()
        } else {
            let wd = if state.config.config.working_dir.is_empty() {
                "/".to_string()
            } else {
                state.config.config.working_dir.clone()
            };
            let keep_slash = raw_dest.ends_with('/') || raw_dest == "." || raw_dest.ends_with("/.");
            let mut d = clean(&format!("{wd}/{raw_dest}"));
            if keep_slash && !d.ends_with('/') {
                d.push('/');
            }
            d
        };
        if c.sources.len() > 1 && !dest.ends_with('/') {
            return Err(self.step_error(
                node,
                format!("When using {kw} with more than one source file, the destination must be a directory and end with a /"),
            ));
        }
        let excludes = if c.excludes.is_empty() {
            None
        } else {
            let mut text = String::new();
            for e in &c.excludes {
                text.push_str(&self.expand(state, node, e)?);
                text.push('\n');
            }
            Some(
                IgnoreMatcher::parse(&text)
                    .map_err(|e| self.step_error(node, format!("--exclude: {e}")))?,
            )
        };

        // Sources: heredocs, another stage, or the build context.
        let from_state;
        let source_fs: Box<dyn SourceFs + '_> = match &c.from {
            Some(f) => {
                let f = self.expand(state, node, f)?;
                from_state = match self.stage_index(&f) {
                    Some(idx) => self.states.get(&idx).ok_or_else(|| {
                        self.step_error(node, format!("--from={f}: stage was not built"))
                    })?,
                    // Not a stage: an image reference (pulled above).
                    None => self.images.get(&f).ok_or_else(|| {
                        self.step_error(node, format!("--from={f}: image was not pulled"))
                    })?,
                };
                Box::new(TreeFs {
                    tree: &from_state.tree,
                    name: f,
                })
            }
            None => Box::new(ContextFs {
                root: self.context.root.clone(),
                ignore: self.context.ignore.clone(),
            }),
        };
        let mut items: Vec<SourceItem> = Vec::new();
        let mut archives: Vec<(PathBuf, String)> = Vec::new();
        let mut shown_sources = Vec::new();
        for src in &c.sources {
            if let Some(h) = heredoc_for(src, &c.heredocs) {
                let mut content = h.effective_content();
                if h.expand {
                    let mut lex = self.lex;
                    lex.raw_quotes = true;
                    lex.raw_escapes = true;
                    content = lex
                        .process_word(&content, &|k: &str| lookup(state, k))
                        .map_err(|e| err(&e))?;
                }
                items.push(SourceItem {
                    name: h.name.clone(),
                    path: h.name.clone(),
                    entries: vec![SrcEntry {
                        rel: String::new(),
                        kind: SrcKind::File {
                            size: content.len() as u64,
                            content: Content::Bytes(Arc::new(content.into_bytes())),
                        },
                        mode: 0o644,
                        uid: 0,
                        gid: 0,
                        mtime: self.now,
                        link_key: None,
                        xattrs: BTreeMap::new(),
                    }],
                });
                shown_sources.push(src.clone());
                continue;
            }
            let src = self.expand(state, node, src)?;
            shown_sources.push(src.clone());
            if is_add && (src.contains("://") || src.starts_with("git@")) {
                return Err(self.step_error(
                    node,
                    format!("ADD {src}: remote sources (URLs, git) are not supported yet; download the file into the context"),
                ));
            }
            let found = expand_source(source_fs.as_ref(), &src).map_err(|e| err(&e))?;
            for mut item in found {
                if let Some(ex) = &excludes {
                    let keep: Vec<SrcEntry> = item
                        .entries
                        .iter()
                        .filter(|e| e.rel.is_empty() || !ex.excluded(&e.rel))
                        .cloned()
                        .collect();
                    item.entries = keep;
                }
                let archive_path = match (&item.root().kind, is_add && c.from.is_none()) {
                    (
                        SrcKind::File {
                            content: Content::Path(p),
                            ..
                        },
                        true,
                    ) if is_archive(p) => Some(p.clone()),
                    _ => None,
                };
                match archive_path {
                    Some(p) => archives.push((p, item.path.clone())),
                    None => items.push(item),
                }
            }
        }
        let parents_dest = |item: &SourceItem| -> String {
            let dir = crate::fstree::parent_of(&format!("/{}", item.path)).to_string();
            format!("{}/", clean(&format!("{dest}/{dir}")))
        };
        if c.parents {
            for item in &items {
                copy_items(
                    &mut state.tree,
                    std::slice::from_ref(item),
                    &parents_dest(item),
                    &opts,
                )
                .map_err(|e| err(&e))?;
            }
        } else {
            // Several wildcard matches go into a directory, like several sources.
            let dest_for_items = if items.len() > 1 && !dest.ends_with('/') {
                format!("{dest}/")
            } else {
                dest.clone()
            };
            copy_items(&mut state.tree, &items, &dest_for_items, &opts)
                .map_err(|e: CopyError| err(&e))?;
        }
        for (path, name) in &archives {
            extract_archive(&mut state.tree, path, name, &dest, &opts, &self.staging)
                .map_err(|e| err(&e))?;
        }
        let created_by = format!("{kw} {} {}", shown_sources.join(" "), raw_dest);
        self.commit(state, node, created_by)
    }

    fn run(
        &mut self,
        state: &mut StageState,
        node: &AstNode,
        r: &RunArgs,
    ) -> Result<(), BuildError> {
        if !r.mounts.is_empty() {
            return Err(self.step_error(node, "RUN --mount is not supported yet"));
        }
        if r.security.as_deref().is_some_and(|s| s != "sandbox") {
            return Err(self.step_error(node, "RUN --security=insecure is not supported"));
        }
        let no_network = match r.network.as_deref() {
            None | Some("default") | Some("host") => false,
            Some("none") => true,
            Some(other) => {
                return Err(self.step_error(
                    node,
                    format!("RUN --network={other}: expected default, none or host"),
                ))
            }
        };
        if self.isolation.is_none() {
            let iso = decide(self.opts.isolation, &self.opts.work_dir)
                .map_err(|e| self.step_error(node, e))?;
            self.isolation = Some(iso);
        }
        let Some(iso) = self.isolation.clone() else {
            return Err(self.step_error(node, "no isolation"));
        };
        let argv = run_argv(&state.config.config, r);
        // The image's Env, then the ARGs the step can see (not persisted).
        let mut env: Vec<String> = state.config.config.env.clone().unwrap_or_default();
        for (k, v) in &state.args {
            if state.config.config.env_get(k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        let (uid, gid, groups) = resolve_user(&state.tree, &state.config.config.user)
            .map_err(|e| self.step_error(node, e.to_string()))?;
        let cwd = if state.config.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            state.config.config.working_dir.clone()
        };
        self.steps_run += 1;
        let req = StepRequest {
            argv: argv.clone(),
            env,
            cwd,
            uid,
            gid,
            groups,
            no_network,
            ignore: self.opts.ignore_paths.clone(),
            step_dir: self.opts.work_dir.join(format!("step-{}", self.steps_run)),
        };
        let line = node.start_line;
        let log = move |l: &str| tracing::info!("  line {line} | {l}");
        let lowers = match iso {
            Isolation::Overlay { .. } => self.layer_directories(state),
            _ => None,
        };
        let result = run_in_sandbox(&mut state.tree, &mut state.rootfs, lowers, &iso, req, &log)
            .map_err(|e| self.step_error(node, e))?;
        let code = result.exit_code;
        if code != 0 {
            return Err(self.step_error(
                node,
                format!(
                    "the command {} did not complete successfully: exit code {code}",
                    go_quoted_list(&argv)
                ),
            ));
        }
        let before = state.layers.len();
        self.commit(state, node, format!("RUN {}", argv.join(" ")))?;
        // The step's upper directory is its layer, ready to be a lower one.
        if state.layers.len() > before {
            if let Some(slot) = state.layer_dirs.last_mut() {
                *slot = result.upper;
            }
        }
        Ok(())
    }

    /// The stage's layers as overlay lower directories, top first: stored
    /// and RUN layers as they are, other layers (COPY, ADD, WORKDIR)
    /// extracted from their blobs once. `None` when a layer cannot be used
    /// this way (the caller then writes the tree out instead).
    fn layer_directories(&mut self, state: &mut StageState) -> Option<Vec<PathBuf>> {
        while state.layer_dirs.len() < state.layers.len() {
            state.layer_dirs.push(None);
        }
        for (i, layer) in state.layers.iter().enumerate() {
            if state.layer_dirs[i].is_some() {
                continue;
            }
            let dir = self
                .opts
                .work_dir
                .join("layers")
                .join(layer.digest.trim_start_matches("sha256:"));
            if !dir.join(".ready").exists() {
                let root = dir.join("root");
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&root).ok()?;
                let file = std::fs::File::open(&layer.path).ok()?;
                let options = kiln_layer::apply::ExtractOptions {
                    overlay_markers: true,
                };
                let got =
                    kiln_layer::apply::extract_layer_with(file, &root, &layer.digest, &options)
                        .ok()?;
                if !got.overlay_ready {
                    return None;
                }
                std::fs::write(dir.join(".ready"), "").ok()?;
            }
            state.layer_dirs[i] = Some(dir.join("root"));
        }
        let dirs: Vec<PathBuf> = state.layer_dirs.iter().rev().flatten().cloned().collect();
        // The mount options must fit in a page.
        let length: usize = dirs.iter().map(|d| d.as_os_str().len() + 1).sum();
        if dirs.is_empty() || length > 3000 {
            return None;
        }
        Some(dirs)
    }

    /// The state an image starts a stage with: its file system from the
    /// layer store (pulled and extracted when missing), its config and
    /// layers. Cached per reference for the build.
    fn image_state(
        &mut self,
        reference: &str,
        platform: &Platform,
        node: &AstNode,
    ) -> Result<StageState, BuildError> {
        if let Some(s) = self.images.get(reference) {
            return Ok(s.clone());
        }
        let r = Reference::parse(reference).map_err(|e| self.step_error(node, e.to_string()))?;
        let wanted = WantedPlatform {
            os: platform.os.clone(),
            architecture: platform.arch.clone(),
            variant: platform.variant.clone(),
        };
        let local = match &self.opts.cache_dir {
            Some(dir) => kiln_registry::local::load_local(dir, &r)
                .map_err(|e| self.step_error(node, e.to_string()))?,
            None => None,
        };
        let pulled = match local {
            Some(p) => {
                tracing::info!("using {r} from --cache-dir");
                p
            }
            None => {
                tracing::info!("pulling {r}");
                pull(&self.client, &self.blob_store, &r, &wanted)
                    .map_err(|e| self.step_error(node, e.to_string()))?
            }
        };
        let diff_ids = pulled.config.rootfs.diff_ids.clone();
        if diff_ids.len() != pulled.layers.len() {
            return Err(self.step_error(
                node,
                format!(
                    "{r}: the config lists {} layers, the manifest {}",
                    diff_ids.len(),
                    pulled.layers.len()
                ),
            ));
        }
        let mut tree = FsTree::new(self.now);
        let mut layers = Vec::new();
        let mut layer_dirs = Vec::new();
        for (layer, diff_id) in pulled.layers.iter().zip(&diff_ids) {
            let what = format!("layer {} of {r}", layer.digest);
            let media_type = oci_layer_media_type(&layer.media_type).ok_or_else(|| {
                self.step_error(
                    node,
                    format!("{what}: unsupported media type {:?}", layer.media_type),
                )
            })?;
            let stored = self
                .layer_store
                .get_or_extract(diff_id, &layer.path, &what)
                .map_err(|e| self.step_error(node, e))?;
            tree.apply_layer(&stored.root, &stored.entries)
                .map_err(|e| self.step_error(node, format!("{what}: {e}")))?;
            layer_dirs.push(stored.overlay_ready.then(|| stored.root.clone()));
            layers.push(LayerBlob {
                digest: layer.digest.clone(),
                diff_id: diff_id.clone(),
                size: layer.size,
                uncompressed_size: stored.uncompressed_size,
                media_type,
                path: layer.path.clone(),
                source: Some(pulled.source.name()),
            });
        }
        let mut config = pulled.config;
        if config.config.env_get("PATH").is_none() {
            config.config.env_set("PATH", DEFAULT_PATH);
        }
        if config.architecture != platform.arch || config.os != platform.os {
            tracing::warn!(
                "{r} is {}/{}, not the requested {}/{}",
                config.os,
                config.architecture,
                platform.os,
                platform.arch
            );
        }
        let state = StageState {
            tree,
            config,
            layers,
            args: BTreeMap::new(),
            cmd_set: false,
            rootfs: None,
            layer_dirs,
            cache_key: format!("image:{}", pulled.manifest_digest),
        };
        self.images.insert(reference.to_string(), state.clone());
        Ok(state)
    }

    fn stage_index(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.plan
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                lower
                    .parse::<usize>()
                    .ok()
                    .filter(|i| *i < self.plan.stages.len())
            })
    }
}

/// The OCI media type of a layer blob (docker's names map to OCI's).
fn oci_layer_media_type(media_type: &str) -> Option<String> {
    Some(
        match media_type {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.oci.image.layer.v1.tar+gzip" => MEDIA_TYPE_LAYER_GZIP,
            "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.oci.image.layer.v1.tar" => MEDIA_TYPE_LAYER_TAR,
            "application/vnd.oci.image.layer.v1.tar+zstd" => {
                "application/vnd.oci.image.layer.v1.tar+zstd"
            }
            _ => return None,
        }
        .to_string(),
    )
}

/// The command a RUN executes: exec form as is; shell form through SHELL,
/// with heredocs passed to the shell as written (a RUN that is only a
/// heredoc runs the heredoc's text as the script).
fn run_argv(config: &kiln_image::ContainerConfig, r: &RunArgs) -> Vec<String> {
    match &r.command {
        Command::Exec(v) => v.clone(),
        Command::Shell(line) => {
            let trimmed = line.trim();
            let script = match r.heredocs.as_slice() {
                [] => line.clone(),
                [h] if heredoc_for(trimmed, &r.heredocs).is_some() => h.effective_content(),
                hs => {
                    let mut s = line.clone();
                    for h in hs {
                        s.push('\n');
                        s.push_str(&h.content);
                        if !h.content.ends_with('\n') && !h.content.is_empty() {
                            s.push('\n');
                        }
                        s.push_str(&h.name);
                    }
                    s
                }
            };
            shell_wrap(config, &Command::Shell(script))
        }
    }
}

/// A variable as a step sees it: ENV wins over ARG.
fn lookup(state: &StageState, key: &str) -> Option<String> {
    state
        .config
        .config
        .env_get(key)
        .map(String::from)
        .or_else(|| state.args.get(key).cloned())
}

/// The heredoc a COPY source word (`<<EOF`, `<<-"EOF"`) names.
fn heredoc_for<'h>(src: &str, heredocs: &'h [Heredoc]) -> Option<&'h Heredoc> {
    let rest = src.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name = rest.trim_matches(|c| c == '"' || c == '\'');
    heredocs.iter().find(|h| h.name == name)
}
