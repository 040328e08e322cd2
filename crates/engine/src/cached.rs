//! A step through the layer cache: every step gets a key (see kiln-cache);
//! RUN and COPY/ADD steps are looked up before they run. A hit applies
//! the cached layer (no command runs); a miss runs the step and stores its
//! result. A cache that fails is dropped for the rest of the build, with a
//! warning: never a failed or wrong build.

use crate::clock::now_unclamped;
use crate::error::BuildError;
use crate::events::{Event, StepRecord};
use crate::stage::{Layer, StageState};
use crate::step::{apply, resolve, LayerClass, Resolved, StepCx};
use crate::text::first_line;
use kiln_cache::{CacheEntry, CacheOutcome, KeyParts, LayerCache, NewEntry};
use kiln_dockerfile::instructions::Instruction;
use kiln_image::LayerBlob;

/// Run one step through the cache; says what happened.
pub(crate) fn step(
    cx: &StepCx,
    state: &mut StageState,
    stage: &str,
    slot: &str,
    ins: &Instruction,
) -> Result<StepRecord, BuildError> {
    let started = std::time::Instant::now();
    let layers_before = state.layers.len();
    let cache = cx
        .build
        .cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let settings = cx.build.opts.cache.as_ref().filter(|_| cache.is_some());
    let keying = settings.is_some() || cx.build.shared_steps.is_some();
    let resolved = resolve(cx, state, ins, keying)?;
    let rules = resolved.rules;
    let shared = (cx.build.shared_steps.as_deref()).filter(|_| rules.shared_across_platforms);
    let keyed = keying.then(|| {
        let parts = key_parts(cx, state, &resolved);
        (parts.key(), parts)
    });
    let shared_slot = shared.zip(keyed.as_ref()).map(|(s, (key, _))| s.slot(key));
    // Held while this build runs the step: another with the same key waits.
    let mut held = shared_slot
        .as_ref()
        .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()));
    let outcome = match held.as_deref().cloned().flatten() {
        Some(entry) => {
            apply_hit(cx, state, entry)?;
            CacheOutcome::Shared
        }
        None => through_cache(cx, state, slot, resolved, keyed.as_ref(), layers_before)?,
    };
    if let (Some(held), Some((_, parts))) = (held.as_mut(), &keyed) {
        **held = Some(CacheEntry {
            parts: parts.clone(),
            created_by: last_created_by(state),
            created: now_unclamped(),
            layer: state.layers.get(layers_before).map(|l| l.blob.clone()),
        });
    }
    drop(held);
    if let Some((key, _)) = keyed {
        state.cache_key = key;
    }
    let new_layer = state.layers.get(layers_before).map(|l| &l.blob);
    let record = StepRecord {
        stage: stage.to_string(),
        line: cx.node.start_line,
        instruction: first_line(cx.node),
        is_run: rules.runs,
        cache: outcome,
        started: started.duration_since(cx.build.began).as_secs_f64(),
        seconds: started.elapsed().as_secs_f64(),
        layer_digest: new_layer.map(|l| l.digest.clone()),
        layer_size: new_layer.map(|l| l.size),
    };
    let _ = cx.build.events.send(Event::StepDone(record.clone()));
    Ok(record)
}

/// The step through the layer cache (when there is one): a hit applies
/// the entry, else the step runs and a miss is stored.
fn through_cache(
    cx: &StepCx,
    state: &mut StageState,
    slot: &str,
    resolved: Resolved,
    keyed: Option<&(String, KeyParts)>,
    layers_before: usize,
) -> Result<CacheOutcome, BuildError> {
    // The cache as it is now; a failure turns it off for every stage.
    let shared = &cx.build.cache;
    let mut cache = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let turn_off = || *shared.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let settings = cx.build.opts.cache.as_ref().filter(|_| cache.is_some());
    let mut outcome = CacheOutcome::Off;
    if let (Some(settings), Some((key, parts))) = (settings, keyed) {
        let cacheable = match resolved.rules.layers {
            LayerClass::Run => settings.run_layers,
            LayerClass::Copy => settings.copy_layers,
            LayerClass::None => false,
        };
        outcome = CacheOutcome::NotCached;
        if let (true, Some(c)) = (cacheable, cache.as_deref()) {
            outcome = match c.lookup(key, now_unclamped()) {
                Ok(Some(entry)) => {
                    apply_hit(cx, state, entry)?;
                    CacheOutcome::Hit
                }
                Ok(None) if settings.explain => CacheOutcome::Miss(explain(c, slot, parts)),
                Ok(None) => CacheOutcome::Miss(Vec::new()),
                Err(e) => {
                    tracing::warn!(
                        "the layer cache at {} failed ({e}); building without it",
                        c.describe()
                    );
                    turn_off();
                    cache = None;
                    CacheOutcome::Off
                }
            };
            let _ = cx.build.events.send(Event::Cache {
                line: cx.node.start_line,
                outcome: outcome.clone(),
            });
        }
    }
    if outcome != CacheOutcome::Hit {
        apply(cx, state, resolved)?;
    }
    let push = settings.is_some_and(|s| s.push);
    if let (CacheOutcome::Miss(_), Some((key, parts)), Some(c), true) =
        (&outcome, keyed, cache.as_deref(), push)
    {
        if let Err(e) = store(cx, c, state, layers_before, key, slot, parts) {
            tracing::warn!(
                "storing in the layer cache at {} failed ({e}); building without it",
                c.describe()
            );
            turn_off();
        }
    }
    Ok(outcome)
}

/// The history text of the stage's last step.
fn last_created_by(state: &StageState) -> String {
    state
        .config
        .history
        .last()
        .and_then(|h| h.created_by.clone())
        .unwrap_or_default()
}

/// Why a step missed, against the latest entry of its slot.
fn explain(cache: &dyn LayerCache, slot: &str, parts: &KeyParts) -> Vec<String> {
    let mut reasons = match cache.lookup_slot(slot) {
        Ok(Some(closest)) => parts.explain(&closest.parts),
        _ => vec!["no earlier entry for this step".into()],
    };
    if reasons.is_empty() {
        reasons.push("the entry expired".into());
    }
    reasons
}

fn store(
    cx: &StepCx,
    cache: &dyn LayerCache,
    state: &StageState,
    layers_before: usize,
    key: &str,
    slot: &str,
    parts: &KeyParts,
) -> Result<(), kiln_cache::CacheError> {
    let layer: Option<&LayerBlob> = state.layers.get(layers_before).map(|l| &l.blob);
    let created_by = last_created_by(state);
    let platform = &cx.build.plan.options.target_platform;
    cache.store(&NewEntry {
        key,
        slot,
        parts,
        created_by: &created_by,
        layer,
        created: now_unclamped(),
        os: &platform.os,
        architecture: &platform.arch,
    })
}

/// A hit: the cached layer joins the image; no command runs. Its files
/// reach the tree only when a later step reads them.
fn apply_hit(cx: &StepCx, state: &mut StageState, entry: CacheEntry) -> Result<(), BuildError> {
    match entry.layer {
        Some(layer) => {
            state.layers.push(Layer {
                dir: None,
                blob: layer,
            });
            cx.history(state, entry.created_by, false);
        }
        None => cx.history(state, entry.created_by, true),
    }
    // A stage directory written out before no longer matches the stage.
    state.rootfs = None;
    Ok(())
}

/// The parts of a step's key, made from what the step resolved: its
/// stage (the parent key, platform, env, USER, WORKDIR, SHELL), its
/// words, the args it can see, and what it reads (`Resolved::inputs`).
/// The one place a key is made, whatever the instruction.
fn key_parts(cx: &StepCx, state: &StageState, resolved: &Resolved) -> KeyParts {
    let c = &state.config.config;
    let node = cx.node;
    let args = match resolved.rules.sees_all_args {
        true => state.args.clone(),
        false => state
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
        // The stage's own: a `FROM --platform=$BUILDPLATFORM` stage has the
        // same keys whichever platform the build targets.
        platform: state.platform().to_string(),
        args,
        env: c.env.clone().unwrap_or_default(),
        files: resolved.inputs.files.clone(),
        from_stage: resolved.inputs.from_stage.clone(),
        ..Default::default()
    };
    parts.config.insert("user".into(), c.user.clone());
    parts.config.insert("workdir".into(), c.working_dir.clone());
    if let Some(shell) = &c.shell {
        parts.config.insert("shell".into(), shell.join(" "));
    }
    parts
}
