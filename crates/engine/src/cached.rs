//! The registry layer cache in the build: every step gets a key (see
//! kiln-cache); RUN and COPY/ADD steps are looked up before they run. A hit
//! applies the cached layer (no command runs); a miss runs the step and
//! stores its result. A cache registry that fails turns the cache off for
//! the rest of the build, with a warning: never a failed or wrong build.

use super::*;
use kiln_cache::{file_part, CacheEntry, KeyParts, LayoutCache, RegistryCache};
use sha2::{Digest as _, Sha256};

/// Where the cache lives.
#[derive(Debug, Clone)]
pub enum CacheLocation {
    /// A registry repository.
    Registry(Reference),
    /// A local OCI image layout (`--cache-repo oci:PATH`).
    Layout(PathBuf),
}

impl std::fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheLocation::Registry(r) => write!(f, "{}", r.name()),
            CacheLocation::Layout(p) => write!(f, "oci:{}", p.display()),
        }
    }
}

/// One place to look entries up in and store them to.
enum Backend<'a> {
    Registry(RegistryCache<'a>),
    Layout(LayoutCache),
}

impl Backend<'_> {
    fn lookup(&self, key: &str, now: i64) -> Result<Option<CacheEntry>, String> {
        match self {
            Backend::Registry(c) => c.lookup(key, now).map_err(|e| e.to_string()),
            Backend::Layout(c) => c.lookup(key, now),
        }
    }

    fn lookup_slot(&self, slot: &str) -> Result<Option<CacheEntry>, String> {
        match self {
            Backend::Registry(c) => c.lookup_slot(slot).map_err(|e| e.to_string()),
            Backend::Layout(c) => c.lookup_slot(slot),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        key: &str,
        slot: &str,
        parts: &KeyParts,
        created_by: &str,
        layer: Option<&LayerBlob>,
        now: i64,
        platform: (&str, &str),
    ) -> Result<(), String> {
        match self {
            Backend::Registry(c) => c
                .store(key, slot, parts, created_by, layer, now, platform)
                .map_err(|e| e.to_string()),
            Backend::Layout(c) => c.store(key, slot, parts, created_by, layer, now, platform),
        }
    }
}

/// `--cache` and its companions.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// The cache repository.
    pub repo: CacheLocation,
    /// Seconds an entry stays valid.
    pub ttl: i64,
    pub run_layers: bool,
    pub copy_layers: bool,
    /// Store misses (`--no-push-cache` turns this off).
    pub push: bool,
    /// Say why each miss missed (`--explain-cache`).
    pub explain: bool,
}

/// What happened to one step (for `--report`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepRecord {
    pub stage: String,
    pub line: usize,
    pub instruction: String,
    /// `hit`, `miss`, `not cached` (a step the cache does not keep) or `off`.
    pub cache: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_size: Option<u64>,
}

fn sha256_file(path: &std::path::Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).ok()?;
    Some(hex::encode(h.finalize()))
}

impl Engine<'_> {
    pub(super) fn step(
        &mut self,
        state: &mut StageState,
        stage: &str,
        slot: String,
        node: &AstNode,
        ins: &Instruction,
    ) -> Result<(), BuildError> {
        let started = std::time::Instant::now();
        let layers_before = state.layers.len();
        let mut record = StepRecord {
            stage: stage.to_string(),
            line: node.start_line,
            instruction: first_line(node),
            cache: "off".into(),
            reasons: Vec::new(),
            seconds: 0.0,
            layer_digest: None,
            layer_size: None,
        };
        let settings = self.opts.cache.clone().filter(|_| self.cache_enabled);
        let mut key = None;
        let mut parts = None;
        if let Some(settings) = &settings {
            let p = self.key_parts(state, node, ins)?;
            key = Some(p.key());
            parts = Some(p);
            let cacheable = match ins {
                Instruction::Run(_) => settings.run_layers,
                Instruction::Copy(_) | Instruction::Add(_) => settings.copy_layers,
                _ => false,
            };
            record.cache = if cacheable {
                "miss".into()
            } else {
                "not cached".into()
            };
            if cacheable {
                let k = key.clone().unwrap_or_default();
                let cache = self.backend(settings);
                match cache.lookup(&k, self.now_unclamped()) {
                    Ok(Some(entry)) => {
                        self.apply_cached(state, node, entry)?;
                        record.cache = "hit".into();
                        tracing::info!("  line {} | cache hit", node.start_line);
                    }
                    Ok(None) => {
                        if settings.explain {
                            record.reasons = match cache.lookup_slot(&slot) {
                                Ok(Some(closest)) => parts
                                    .as_ref()
                                    .map(|p| p.explain(&closest.parts))
                                    .unwrap_or_default(),
                                _ => vec!["no earlier entry for this step".into()],
                            };
                            if record.reasons.is_empty() {
                                record.reasons.push("the entry expired".into());
                            }
                            tracing::info!(
                                "  line {} | cache miss: {}",
                                node.start_line,
                                record.reasons.join("; ")
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(
                            "the layer cache at {} failed ({e}); building without it",
                            settings.repo
                        );
                        self.cache_enabled = false;
                        record.cache = "off".into();
                    }
                }
            }
        }
        if record.cache != "hit" {
            self.dispatch(state, node, ins)?;
            if record.cache == "miss" {
                if let (Some(settings), Some(k), Some(p)) = (&settings, &key, &parts) {
                    if settings.push {
                        let layer = (state.layers.len() > layers_before)
                            .then(|| state.layers.last().cloned())
                            .flatten();
                        let created_by = state
                            .config
                            .history
                            .last()
                            .and_then(|h| h.created_by.clone())
                            .unwrap_or_default();
                        let cache = self.backend(settings);
                        let platform = &self.plan.options.target_platform;
                        if let Err(e) = cache.store(
                            k,
                            &slot,
                            p,
                            &created_by,
                            layer.as_ref(),
                            self.now_unclamped(),
                            (&platform.os, &platform.arch),
                        ) {
                            tracing::warn!("storing in the layer cache at {} failed ({e}); building without it", settings.repo);
                            self.cache_enabled = false;
                        }
                    }
                }
            }
        }
        if let Some(k) = key {
            state.cache_key = k;
        }
        if state.layers.len() > layers_before {
            if let Some(l) = state.layers.last() {
                record.layer_digest = Some(l.digest.clone());
                record.layer_size = Some(l.size);
            }
        }
        record.seconds = started.elapsed().as_secs_f64();
        self.records.push(record);
        Ok(())
    }

    fn backend(&self, settings: &CacheSettings) -> Backend<'_> {
        match &settings.repo {
            CacheLocation::Registry(r) => Backend::Registry(RegistryCache {
                client: &self.client,
                store: &self.blob_store,
                repo: r.clone(),
                ttl: settings.ttl,
            }),
            CacheLocation::Layout(p) => Backend::Layout(LayoutCache {
                dir: p.clone(),
                ttl: settings.ttl,
            }),
        }
    }

    /// Real time for entry ages (not clamped by SOURCE_DATE_EPOCH).
    fn now_unclamped(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    /// A hit: the cached layer joins the image and the tree; no command runs.
    fn apply_cached(
        &mut self,
        state: &mut StageState,
        node: &AstNode,
        entry: kiln_cache::CacheEntry,
    ) -> Result<(), BuildError> {
        match entry.layer {
            Some(layer) => {
                let what = format!("cached layer {}", layer.digest);
                let stored = self
                    .layer_store
                    .get_or_extract(&layer.diff_id, &layer.path, &what)
                    .map_err(|e| self.step_error(node, e))?;
                state
                    .tree
                    .apply_layer(&stored.root, &stored.entries)
                    .map_err(|e| self.step_error(node, format!("{what}: {e}")))?;
                state
                    .layer_dirs
                    .push(stored.overlay_ready.then(|| stored.root.clone()));
                state.layers.push(LayerBlob {
                    uncompressed_size: stored.uncompressed_size,
                    ..layer
                });
                self.history(state, entry.created_by, false);
            }
            None => self.history(state, entry.created_by, true),
        }
        // A stage directory written out before no longer matches the tree.
        state.rootfs = None;
        Ok(())
    }

    /// The parts of a step's key: what its result depends on.
    fn key_parts(
        &mut self,
        state: &StageState,
        node: &AstNode,
        ins: &Instruction,
    ) -> Result<KeyParts, BuildError> {
        let c = &state.config.config;
        // A RUN sees every build arg in scope (they are its environment);
        // other steps only those their words name.
        let args = match ins {
            Instruction::Run(_) => state.args.clone(),
            _ => state
                .args
                .iter()
                .filter(|(k, _)| {
                    node.original.contains(&format!("${k}"))
                        || node.original.contains(&format!("${{{k}"))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let mut parts = KeyParts {
            parent: state.cache_key.clone(),
            instruction: node.original.clone(),
            platform: self.plan.options.target_platform.to_string(),
            args,
            env: c.env.clone().unwrap_or_default(),
            ..Default::default()
        };
        parts.config.insert("user".into(), c.user.clone());
        parts.config.insert("workdir".into(), c.working_dir.clone());
        if let Some(shell) = &c.shell {
            parts.config.insert("shell".into(), shell.join(" "));
        }
        if let Instruction::Copy(copy) | Instruction::Add(copy) = ins {
            self.copy_key_files(state, node, copy, &mut parts)?;
        }
        Ok(parts)
    }

    /// Mode, owner and content of every file a COPY/ADD reads. A source
    /// that cannot be read is left out: the step itself then fails.
    fn copy_key_files(
        &mut self,
        state: &StageState,
        node: &AstNode,
        c: &CopyArgs,
        parts: &mut KeyParts,
    ) -> Result<(), BuildError> {
        let from = match &c.from {
            Some(f) => {
                let f = self.expand(state, node, f)?;
                match self.stage_index(&f) {
                    Some(i) => Some(self.states.get(&i).cloned().ok_or_else(|| {
                        self.step_error(node, format!("--from={f}: stage was not built"))
                    })?),
                    None => {
                        let platform = self.plan.options.target_platform.clone();
                        Some(self.image_state(&f, &platform, node)?)
                    }
                }
            }
            None => None,
        };
        parts.from_stage = from.as_ref().map(|s| s.cache_key.clone());
        for src in &c.sources {
            if let Some(h) = heredoc_for(src, &c.heredocs) {
                parts.files.insert(
                    format!("<<{}", h.name),
                    hex::encode(Sha256::digest(h.content.as_bytes())),
                );
                continue;
            }
            let Ok(src) = self.expand(state, node, src) else {
                continue;
            };
            let found = match &from {
                Some(s) => expand_source(
                    &TreeFs {
                        tree: &s.tree,
                        name: String::new(),
                    },
                    &src,
                ),
                None => expand_source(&self.context, &src),
            };
            let Ok(items) = found else { continue };
            for item in items {
                for e in &item.entries {
                    let path = if e.rel.is_empty() {
                        item.path.clone()
                    } else {
                        format!("{}/{}", item.path, e.rel)
                    };
                    let value = match &e.kind {
                        SrcKind::File { content, .. } => {
                            let sha = match content {
                                Content::Path(p) => sha256_file(p).unwrap_or_default(),
                                Content::Bytes(b) => hex::encode(Sha256::digest(b.as_slice())),
                            };
                            file_part(e.mode, e.uid, e.gid, Some(&sha))
                        }
                        SrcKind::Symlink(t) => {
                            file_part(e.mode, e.uid, e.gid, Some(&format!("-> {t}")))
                        }
                        SrcKind::Dir => file_part(e.mode, e.uid, e.gid, None),
                        other => file_part(e.mode, e.uid, e.gid, Some(&format!("{other:?}"))),
                    };
                    parts.files.insert(path, value);
                }
            }
        }
        Ok(())
    }
}
