//! In-place mode, for kiln's own image where namespaces and mounts are
//! blocked (the Kubernetes-pod case): the container's own `/` is the build
//! root, as Kaniko does it, so RUN steps get the container's /proc and
//! /dev. What must never enter a layer or be replaced (kiln's own files,
//! its state, mount points such as volumes and /etc/resolv.conf, /var/run)
//! is kept: never removed, never written, never snapshotted. Snapshots are
//! a metadata walk of the whole root (no overlay upper to read here).

use crate::executor::{create_dir, Executor, OutputSink, StageRoot, StepOutcome, StepRequest};
use crate::guard::Guarded;
use crate::spec::{RootSpec, RunSpec};
use crate::{run_step, SandboxError};
use std::path::{Path, PathBuf};

/// A root the executor runs in where it is, with what to keep out.
#[derive(Debug, Clone)]
pub struct FixedRoot {
    pub root: PathBuf,
    /// Absolute paths kept as they are (and everything below them).
    pub keep: Vec<String>,
}

impl FixedRoot {
    /// Whether `path` (absolute) is kept.
    pub fn keeps(&self, path: &str) -> bool {
        self.keep
            .iter()
            .any(|k| path == k || path.starts_with(&format!("{}/", k.trim_end_matches('/'))))
    }
}

pub struct InPlaceExecutor {
    pub fixed: FixedRoot,
    /// inotify watches on the root, kept from step to step.
    watcher: std::sync::Mutex<Option<crate::watch::Watcher>>,
    /// kiln's own files as they were before any step: put back after a
    /// step that replaced them.
    guarded: std::sync::Mutex<Guarded>,
}

/// kiln's binary and the programs beside it in kiln's image.
fn guarded_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::env::current_exe().into_iter().collect();
    if let Some(home) = kiln_image_home() {
        if let Ok(entries) = std::fs::read_dir(home.join("bin")) {
            files.extend(entries.flatten().map(|e| e.path()));
        }
        files.push(home.join(IMAGE_MARKER));
    }
    files.sort();
    files.dedup();
    files
}

/// The marker kiln's image carries in `$KILN_HOME`.
pub const IMAGE_MARKER: &str = ".kiln-image";

/// kiln's own directory in its image (`$KILN_HOME`), if this is kiln's image.
pub fn kiln_image_home() -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var_os("KILN_HOME")?);
    home.join(IMAGE_MARKER).is_file().then_some(home)
}

/// Mount points (other than `/`) from /proc/self/mountinfo: volumes, the
/// files docker binds (/etc/resolv.conf, /etc/hosts, /etc/hostname),
/// /proc, /sys, /dev.
pub fn mount_points() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p != "/")
        .collect();
    points.sort();
    points.dedup();
    points
}

/// mountinfo escapes space, tab, newline and backslash as `\\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl InPlaceExecutor {
    /// The container's `/`, keeping `keep` and every mount point.
    pub fn new(mut keep: Vec<String>) -> Result<InPlaceExecutor, SandboxError> {
        keep.extend(mount_points());
        keep.sort();
        keep.dedup();
        let running = std::env::current_exe().ok();
        let guarded = Guarded::keep(&guarded_files(), running.as_deref())?;
        Ok(InPlaceExecutor {
            fixed: FixedRoot {
                root: PathBuf::from("/"),
                keep,
            },
            watcher: std::sync::Mutex::new(None),
            guarded: std::sync::Mutex::new(guarded),
        })
    }

    /// Steps run as root in kiln's own container: what one did to kiln's
    /// files is undone (they are kept out of the image all along).
    fn put_back_guarded(&self) -> Result<(), SandboxError> {
        let mut guarded = self.guarded.lock().unwrap_or_else(|e| e.into_inner());
        let put_back = guarded.put_back()?;
        if !put_back.is_empty() {
            let names: Vec<String> = put_back.iter().map(|p| p.display().to_string()).collect();
            tracing::warn!(
                "the step changed kiln's own file(s) {}: refused and put back (kiln's files are not the image's; later steps run the real kiln)",
                names.join(", ")
            );
        }
        Ok(())
    }
}

impl Executor for InPlaceExecutor {
    fn describe(&self) -> &'static str {
        "in-place (the container's own root)"
    }

    fn run(
        &self,
        step: &StepRequest,
        root: &mut dyn StageRoot,
        output: OutputSink<'_>,
    ) -> Result<StepOutcome, SandboxError> {
        if step.process.no_network {
            return Err(crate::directory::no_network_namespace("in-place mode"));
        }
        create_dir(&step.step_dir)?;
        let root_dir = root.directory()?;
        let mut ignore = step.ignore.clone();
        ignore.extend(self.fixed.keep.iter().cloned());
        let mut watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        // What kiln itself wrote since the last step (COPY, a new stage) is
        // taken in first; where that fails, the watches start over.
        if !watcher.as_mut().is_some_and(|w| w.resync()) {
            *watcher = crate::watch::Watcher::start(&root_dir, &ignore);
        }
        let before = match watcher.as_ref() {
            Some(_) => None,
            None => Some(
                kiln_snapshot::index(&root_dir, &ignore)
                    .map_err(|e| SandboxError::io("indexing the root", e))?,
            ),
        };
        // chroot to `/` changes nothing: the helper only starts the step in
        // its own process group, as its user.
        let spec = RunSpec::new(
            RootSpec::Chroot {
                root: root_dir.clone(),
            },
            &step.process,
        );
        let staged = crate::staged::stage(&root_dir, &step.mounts)?;
        let out = run_step(&spec, &step.step_dir, output);
        staged.finish()?;
        let out = out?;
        self.put_back_guarded()?;
        if out.exit_code != 0 {
            return Ok(StepOutcome::failed(out.exit_code, None));
        }
        let started = std::time::Instant::now();
        let diff_error = |e| SandboxError::io("diffing the root", e);
        let (changes, how) = match (before, watcher.as_mut().map(|w| w.changes())) {
            (Some(before), _) => (
                kiln_snapshot::tree_diff(&root_dir, &before, &ignore).map_err(diff_error)?,
                "a walk of the whole root",
            ),
            (None, Some(Some(changes))) => (changes, "inotify"),
            (None, _) => {
                *watcher = None;
                let all = crate::watch::all_changes(&root_dir, &root.paths(), &ignore)
                    .map_err(diff_error)?;
                (all, "a walk of the whole root (inotify lost events)")
            }
        };
        Ok(StepOutcome::succeeded(changes, None, how, started))
    }
}

/// Remove everything under `fixed.root` except what it keeps (the kept
/// paths' parent directories stay, emptied of the rest).
pub fn clear_root(fixed: &FixedRoot) -> Result<(), SandboxError> {
    clear_dir(&fixed.root, fixed)
}

fn clear_dir(dir: &Path, fixed: &FixedRoot) -> Result<(), SandboxError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SandboxError::io(format!("reading {}", dir.display()), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let abs = path.to_string_lossy().into_owned();
        if fixed.keeps(&abs) {
            continue;
        }
        let holds_kept = fixed
            .keep
            .iter()
            .any(|k| k.starts_with(&format!("{}/", abs.trim_end_matches('/'))));
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let result = if holds_kept && is_dir {
            clear_dir(&path, fixed)
        } else if is_dir {
            std::fs::remove_dir_all(&path)
                .map_err(|e| SandboxError::io(format!("removing {abs}"), e))
        } else {
            std::fs::remove_file(&path).map_err(|e| SandboxError::io(format!("removing {abs}"), e))
        };
        result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_and_keeping() {
        assert_eq!(unescape("/mnt/my\\040volume"), "/mnt/my volume");
        let f = FixedRoot {
            root: "/".into(),
            keep: vec!["/kiln".into(), "/etc/resolv.conf".into()],
        };
        assert!(f.keeps("/kiln/bin/kiln") && f.keeps("/etc/resolv.conf"));
        assert!(!f.keeps("/kilnx") && !f.keeps("/etc/passwd"));
    }

    #[test]
    fn clearing_keeps_what_it_must() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for p in ["kiln/bin", "etc", "usr/bin"] {
            std::fs::create_dir_all(r.join(p)).unwrap();
        }
        for p in [
            "kiln/bin/kiln",
            "etc/resolv.conf",
            "etc/passwd",
            "usr/bin/x",
        ] {
            std::fs::write(r.join(p), p).unwrap();
        }
        let root = r.to_string_lossy().into_owned();
        let f = FixedRoot {
            root: r.to_path_buf(),
            keep: vec![format!("{root}/kiln"), format!("{root}/etc/resolv.conf")],
        };
        clear_root(&f).unwrap();
        assert!(r.join("kiln/bin/kiln").is_file() && r.join("etc/resolv.conf").is_file());
        assert!(!r.join("etc/passwd").exists() && !r.join("usr").exists());
    }
}
