//! Steps: one free function per instruction family over a borrowed
//! context (`StepCx`) and the stage's state, in two phases (`resolve`,
//! then `apply`; see `resolve.rs`).
//! A step never sees the engine: what it may read (the plan, options,
//! build context, the stage it copies from) is lent to it.

mod config;
mod copy;
mod inputs;
pub(crate) mod mounts;
mod resolve;
mod run;
mod workdir;

use crate::error::{BuildError, StepFailure};
use crate::events::Event;
use crate::layerstore::LayerStore;
use crate::options::BuildOptions;
use crate::source::ContextFs;
use crate::stage::{Layer, StageState};
use kiln_dockerfile::instructions::Instruction;
use kiln_dockerfile::shell::Lex;
use kiln_dockerfile::{Node as AstNode, Plan};
use kiln_image::config::rfc3339;
use kiln_image::History;
use kiln_layer::{write_layer_followed, BlobFollower, LayerOptions};
use kiln_registry::stream::{follow_upload, FollowedUpload, Uploaded};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::Sender;

pub(crate) use inputs::Inputs;
pub(crate) use resolve::{apply, resolve, LayerClass, Resolved};

/// What every step of a build may read.
pub(crate) struct BuildCx<'a> {
    pub plan: &'a Plan,
    pub opts: &'a BuildOptions,
    pub context: ContextFs,
    pub lex: Lex,
    /// Time for new files' mtimes and `created`.
    pub now: i64,
    pub clamp: Option<i64>,
    pub staging: PathBuf,
    pub blobs: PathBuf,
    pub layer_store: LayerStore,
    /// How RUN steps run, chosen before any stage starts.
    pub isolation: kiln_sandbox::Isolation,
    pub events: Sender<Event>,
    pub steps_run: AtomicUsize,
    /// Files ADD downloads, once per build.
    pub remote: crate::remote::Remote,
    /// When the build began (step times in the report count from it).
    pub began: std::time::Instant,
    /// The registries, and the pulled blobs: base layers are fetched
    /// only when a step reads their files.
    pub client: std::sync::Arc<kiln_registry::Client>,
    pub blob_store: kiln_registry::BlobStore,
    /// The layer cache, until it fails.
    pub cache: std::sync::Mutex<Option<std::sync::Arc<dyn kiln_cache::LayerCache>>>,
    /// Steps shared with the other builds of this process (platforms).
    pub shared_steps: Option<std::sync::Arc<crate::shared::SharedSteps>>,
    /// Layers being uploaded while they are written.
    pub uploads: std::sync::Mutex<Vec<FollowedUpload>>,
}

impl BuildCx<'_> {
    /// The build succeeded: the layers uploaded as they were written are
    /// stored (a failed build drops them instead, and none is). One that
    /// did not get there is uploaded from its file by the push.
    pub fn finish_uploads(&self) {
        let uploads = std::mem::take(&mut *crate::locks::lock(&self.uploads));
        for upload in uploads {
            match upload.finish() {
                Ok(Uploaded::Stored(digest)) => {
                    tracing::info!("uploaded layer {digest} as it was written")
                }
                Ok(Uploaded::AlreadyThere(digest)) => {
                    tracing::debug!("layer {digest}: the registry has it already")
                }
                Err(e) => tracing::debug!(
                    "uploading a layer as it was written failed (the push uploads it): {e}"
                ),
            }
        }
    }

    /// Where a stage's waiting layers come from.
    pub fn layers(&self) -> crate::layer_access::LayerAccess<'_> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let platform = &self.plan.options.target_platform;
        crate::layer_access::LayerAccess {
            layer_store: &self.layer_store,
            client: &self.client,
            work: self.opts.work_dir.join("indexes"),
            base_blobs: &self.opts.base_blobs,
            indexes: cache
                .zip(self.opts.cache.as_ref())
                .map(|(cache, settings)| crate::layer_index::Indexes {
                    cache,
                    // Not to the default cache in kiln's directory: the
                    // layer store beside it holds the layers themselves.
                    publish: settings.push
                        && !matches!(&settings.repo,
                            crate::options::CacheLocation::Layout(p) if p.starts_with(&self.opts.kiln_dir)),
                    os: &platform.os,
                    architecture: &platform.arch,
                }),
        }
    }
}

/// One step's view: the build, the instruction's node (for locations),
/// and the stage or image a `COPY --from` reads.
pub(crate) struct StepCx<'a> {
    pub build: &'a BuildCx<'a>,
    pub node: &'a AstNode,
    pub copy_from: Option<&'a StageState>,
    /// The stages built so far and the images fetched, for `RUN
    /// --mount=...,from=`.
    pub stages: &'a crate::stage::Stages,
    pub images: &'a crate::stage::Images,
    /// The stage's name (or index), for output lines.
    pub stage: &'a str,
    /// Whether the stage's layers go into the image as written (the
    /// target stage's own): then they are uploaded as they are written.
    pub in_image: bool,
}

/// A layer's upload, following its file as it is written.
struct UploadAlongside(FollowedUpload);

impl BlobFollower for UploadAlongside {
    fn opened(&mut self, file: std::fs::File) {
        self.0.opened(file);
    }

    fn written(&mut self, len: u64) {
        self.0.written(len);
    }
}

impl StepCx<'_> {
    pub fn error(&self, cause: impl Into<StepFailure>) -> BuildError {
        BuildError::at(&self.build.plan.ast, self.node, cause)
    }

    pub fn expand(&self, state: &StageState, word: &str) -> Result<String, BuildError> {
        self.build
            .lex
            .process_word(word, &|k: &str| state.lookup(k))
            .map_err(|e| self.error(e))
    }

    pub fn history(&self, state: &mut StageState, created_by: String, empty_layer: bool) {
        state.config.history.push(History {
            created: Some(rfc3339(self.build.now)),
            created_by: Some(created_by),
            author: None,
            comment: Some("kiln.dockerfile.v0".into()),
            empty_layer,
        });
    }

    /// Commit a step that changed the tree without running anything
    /// (COPY, ADD, WORKDIR), bringing a written-out root up to date.
    pub fn commit_and_refresh(
        &self,
        state: &mut StageState,
        created_by: String,
    ) -> Result<(), BuildError> {
        let (changed, deleted) = state.tree.pending();
        if self.commit(state, created_by)? {
            crate::root::refresh(state, &changed, &deleted, self.build.isolation.fixed_root())
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// Write this step's changes as a layer (none: an empty history
    /// entry). Returns whether a layer was added.
    pub fn commit(&self, state: &mut StageState, created_by: String) -> Result<bool, BuildError> {
        let entries = state.tree.take_changes();
        self.commit_entries(state, entries, created_by)
    }

    /// Write `entries` as the step's layer (none: an empty history entry).
    pub fn commit_entries(
        &self,
        state: &mut StageState,
        entries: Vec<kiln_layer::Entry>,
        created_by: String,
    ) -> Result<bool, BuildError> {
        if entries.is_empty() {
            self.history(state, created_by, true);
            return Ok(false);
        }
        let options = LayerOptions {
            compression: self.build.opts.compression,
            clamp_mtime: self.build.clamp,
            threads: 0,
        };
        let mut upload = match &self.build.opts.upload_layers_to {
            Some(dest) if self.in_image => Some(UploadAlongside(follow_upload(
                self.build.client.clone(),
                dest.clone(),
            ))),
            _ => None,
        };
        let follower = upload.as_mut().map(|u| u as &mut dyn BlobFollower);
        let info = write_layer_followed(entries, &self.build.blobs, &options, follower)
            .map_err(|e| self.error(e))?;
        if let Some(UploadAlongside(mut upload)) = upload {
            upload.complete(&format!("sha256:{}", info.digest));
            crate::locks::lock(&self.build.uploads).push(upload);
        }
        state.push_applied(Layer {
            blob: crate::written::blob_of(info),
            dir: None,
        });
        self.history(state, created_by, false);
        Ok(true)
    }
}

/// Run one instruction on the stage (no key: nothing read for it only).
pub(crate) fn dispatch(
    cx: &StepCx,
    state: &mut StageState,
    ins: &Instruction,
) -> Result<(), BuildError> {
    let resolved = resolve(cx, state, ins, false)?;
    apply(cx, state, resolved)
}
