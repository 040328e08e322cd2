//! RUN: the process (argv through SHELL, env, user, working directory),
//! run by the build's `Executor` on the stage's root, and its changes
//! folded into the tree and committed as the step's layer.

use super::workdir::working_dir;
use super::StepCx;
use crate::error::BuildError;
use crate::fold::apply_changes;
use crate::metadata::{go_quoted_list, shell_wrap};
use crate::stage::{Rootfs, StageState};
use crate::users::resolve_user;
use kiln_dockerfile::instructions::{Network, RunArgs, Security};
use kiln_dockerfile::Command;
use kiln_sandbox::{Process, SandboxError, StageRoot, StepRequest};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// Run `r` with its `mounts` (their words expanded).
pub fn run(
    cx: &StepCx,
    state: &mut StageState,
    r: &RunArgs,
    mounts: &[kiln_dockerfile::instructions::Mount],
) -> Result<(), BuildError> {
    if r.security == Security::Insecure {
        return Err(cx.error("RUN --security=insecure is not supported"));
    }
    // Another architecture's programs run only through an emulator the
    // kernel knows (binfmt_misc); without one, say so before running.
    let platform = state.platform();
    kiln_sandbox::emulation::check(&platform.arch, platform.variant.as_deref())
        .map_err(|e| cx.error(e))?;
    let isolation = &cx.build.isolation;
    let argv = run_argv(&state.config.config, r);
    let mut process = process(cx, state, argv.clone(), r.network)?;
    let n = cx.build.steps_run.fetch_add(1, Ordering::Relaxed) + 1;
    let work_dir = &cx.build.opts.work_dir;
    let step_dir = work_dir.join(step_dir_name(n));
    let mounts = super::mounts::prepare(cx, state, mounts, &step_dir)?;
    process.env.extend(mounts.env.iter().cloned());
    let (mut ignore, mut stubs) = ignored_paths(cx, state);
    ignore.extend(mounts.ignore.iter().cloned());
    stubs.extend(mounts.stubs.iter().cloned());
    let made: Vec<String> = ["/etc/resolv.conf", "/etc/hosts"]
        .map(|p| super::mounts::stub_paths(state, p).0)
        .into_iter()
        .chain(mounts.ignore.iter().cloned())
        .chain(stubs.iter().cloned())
        .collect();
    let touched = super::mounts::touched_parents(&state.tree, &made);
    let step = StepRequest {
        process,
        mounts: mounts.mounts.clone(),
        ignore,
        step_dir,
    };
    let line = cx.node.start_line;
    let events = cx.build.events.clone();
    let stage = (cx.build.plan.order.len() > 1).then(|| cx.stage.to_string());
    let output = move |text: &str| {
        let _ = events.send(crate::Event::Output {
            stage: stage.clone(),
            line,
            text: text.to_string(),
        });
    };
    let outcome = {
        let mut root = StageRootOnDisk {
            state,
            work_dir,
            step_dir: &step.step_dir,
            fixed: isolation.fixed_root(),
        };
        isolation
            .executor()
            .run(&step, &mut root, &output)
            .map_err(|e| cx.error(e))?
    };
    if outcome.exit_code != 0 {
        let hint = outcome.hint.map(|h| format!("; {h}")).unwrap_or_default();
        return Err(cx.error(format!(
            "the command {} did not complete successfully: exit code {}{hint}",
            go_quoted_list(&argv),
            outcome.exit_code
        )));
    }
    let changes = super::mounts::without_empty_stubs(outcome.changes, &stubs);
    let changes = super::mounts::without_touched_parents(changes, &touched, &state.tree);
    apply_changes(&mut state.tree, changes).map_err(|e| cx.error(e))?;
    if let (Some(upper), Some(fs)) = (&outcome.upper, state.rootfs.as_mut()) {
        fs.uppers.push(upper.clone());
    }
    if cx.commit(state, format!("RUN {}", argv.join(" ")))? {
        // The step's upper directory is its layer, ready to be a lower one.
        if let Some(layer) = state.layers.last_mut() {
            layer.dir = outcome.upper;
        }
    }
    Ok(())
}

/// A step's directory name: its number, and a part that differs from
/// build to build. The work directory spreads its subdirectories by a
/// hash of their names (kiln_layer::spread): a fixed name would put each
/// build's `step-1` in the block group the previous build's `step-1` was
/// just deleted from, whose freed inodes every new file then scans past.
fn step_dir_name(n: usize) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("step-{n}-{:x}{nanos:08x}", std::process::id())
}

fn process(
    cx: &StepCx,
    state: &StageState,
    argv: Vec<String>,
    network: Network,
) -> Result<Process, BuildError> {
    // The image's Env, then the ARGs the step can see (not persisted).
    let config = &state.config.config;
    let mut env: Vec<String> = config.env.clone().unwrap_or_default();
    for (k, v) in &state.args {
        if config.env_get(k).is_none() {
            env.push(format!("{k}={v}"));
        }
    }
    let user = resolve_user(&state.tree, &config.user).map_err(|e| cx.error(e))?;
    // HOME is the user's unless the image sets it (BuildKit's RUN).
    if config.env_get("HOME").is_none() {
        env.push(format!("HOME={}", user.home));
    }
    Ok(Process {
        argv,
        env,
        cwd: working_dir(state),
        uid: user.uid,
        gid: user.gid,
        groups: user.groups,
        no_network: network == Network::None,
    })
}

/// `--ignore-path`, and what the sandbox adds to a root that lacks it
/// (/etc/resolv.conf and /etc/hosts, and the parents made for them).
fn ignored_paths(cx: &StepCx, state: &StageState) -> (Vec<String>, Vec<String>) {
    let mut ignore = cx.build.opts.ignore_paths.clone();
    let mut stubs = Vec::new();
    for p in ["/etc/resolv.conf", "/etc/hosts"] {
        let (at, parents) = super::mounts::stub_paths(state, p);
        if state.tree.get(&at).is_none() {
            ignore.push(at);
            stubs.extend(parents);
        }
    }
    (ignore, stubs)
}

/// The command a RUN executes: exec form as is; shell form through SHELL,
/// with heredocs passed to the shell as written (a RUN that is only a
/// heredoc runs the heredoc's text as the script).
pub(crate) fn run_argv(config: &kiln_image::ContainerConfig, r: &RunArgs) -> Vec<String> {
    match &r.command {
        Command::Exec(v) => v.clone(),
        Command::Shell(line) => {
            let trimmed = line.trim();
            let script = match r.heredocs.as_slice() {
                [] => line.clone(),
                [h] if super::copy::heredoc_for(trimmed, &r.heredocs).is_some() => {
                    h.effective_content()
                }
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

/// The stage's root on disk, in the form the executor asks for.
struct StageRootOnDisk<'a> {
    state: &'a mut StageState,
    work_dir: &'a Path,
    step_dir: &'a Path,
    fixed: Option<&'a kiln_sandbox::FixedRoot>,
}

impl StageRoot for StageRootOnDisk<'_> {
    fn lowers(&mut self) -> Result<Vec<PathBuf>, SandboxError> {
        if let Some(dirs) = layer_directories(self.state, self.work_dir) {
            tracing::debug!(
                "root: {} layer directories stacked as overlay lower layers",
                dirs.len()
            );
            return Ok(dirs);
        }
        let fs = self.written_out()?;
        let mut lowers: Vec<PathBuf> = fs.uppers.iter().rev().cloned().collect();
        lowers.push(fs.base.clone());
        Ok(lowers)
    }

    fn directory(&mut self) -> Result<PathBuf, SandboxError> {
        Ok(self.written_out()?.base.clone())
    }

    fn paths(&self) -> Vec<String> {
        self.state.tree.paths()
    }
}

impl StageRootOnDisk<'_> {
    fn written_out(&mut self) -> Result<&Rootfs, SandboxError> {
        let stash = self.work_dir.join("stash");
        crate::root::write_out(self.state, self.step_dir, self.fixed, &stash)
    }
}

/// The stage's layers as overlay lower directories, top first: stored
/// and RUN layers as they are, other layers (COPY, ADD, WORKDIR)
/// extracted from their blobs once. `None` when a layer cannot be used
/// this way (the stage is then written out instead).
fn layer_directories(state: &mut StageState, work_dir: &Path) -> Option<Vec<PathBuf>> {
    for layer in state.layers.iter_mut().filter(|l| l.dir.is_none()) {
        let dir = work_dir
            .join("layers")
            .join(layer.blob.digest.trim_start_matches("sha256:"));
        if !dir.join(".ready").exists() {
            let root = dir.join("root");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&root).ok()?;
            let file = std::fs::File::open(&layer.blob.path).ok()?;
            let options = kiln_layer::apply::ExtractOptions {
                overlay_markers: true,
            };
            let got =
                kiln_layer::apply::extract_layer_with(file, &root, &layer.blob.digest, &options)
                    .ok()?;
            if !got.overlay_ready {
                return None;
            }
            std::fs::write(dir.join(".ready"), "").ok()?;
        }
        layer.dir = Some(dir.join("root"));
    }
    let dirs: Vec<PathBuf> = state
        .layers
        .iter()
        .rev()
        .filter_map(|l| l.dir.clone())
        .collect();
    // The mount options must fit in a page.
    let length: usize = dirs.iter().map(|d| d.as_os_str().len() + 1).sum();
    if dirs.is_empty() || length > 3000 {
        return None;
    }
    Some(dirs)
}
