//! The caller's side: start the helper for a step, stream its output line
//! by line with the step's prefix, and return its exit code.

use crate::spec::{RootSpec, RunSpec};
use crate::SandboxError;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

pub struct StepOutput {
    pub exit_code: i32,
}

/// Run a step through `kiln __run`. `log` receives each output line.
pub fn run_step(
    spec: &RunSpec,
    work: &Path,
    log: &(dyn Fn(&str) + Sync),
) -> Result<StepOutput, SandboxError> {
    let spec_path = work.join("step.json");
    let json = serde_json::to_vec(spec).map_err(|e| SandboxError::Setup(e.to_string()))?;
    std::fs::write(&spec_path, json).map_err(|e| SandboxError::Io {
        context: format!("writing {}", spec_path.display()),
        source: e,
    })?;
    let mut child = crate::own_binary::command()?
        .arg("__run")
        .arg(&spec_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SandboxError::Io {
            context: "starting the sandbox".into(),
            source: e,
        })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    std::thread::scope(|s| {
        if let Some(out) = stdout {
            s.spawn(move || {
                for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
                    log(&String::from_utf8_lossy(&line));
                }
            });
        }
        if let Some(err) = stderr {
            s.spawn(move || {
                for line in BufReader::new(err).split(b'\n').map_while(Result::ok) {
                    log(&String::from_utf8_lossy(&line));
                }
            });
        }
    });
    let status = child.wait().map_err(|e| SandboxError::Io {
        context: "waiting for the step".into(),
        source: e,
    })?;
    Ok(StepOutput {
        exit_code: status.code().unwrap_or(128),
    })
}

/// Whether namespaced steps with an overlay root work here: runs `true`-
/// like probe (an empty overlay, /proc, /dev) through the helper.
/// `Err` says why not: the helper's own lines, or what failed before.
pub fn probe_mounts(work: &Path, userxattr: bool) -> Result<(), SandboxError> {
    // A work directory is mounted once: a volatile mount marks it
    // (`work/incompat/volatile`) and the kernel refuses it afterwards.
    let _ = std::fs::remove_dir_all(work);
    let dirs = ["lower", "upper", "work", "merged"].map(|d| work.join(d));
    for d in &dirs {
        std::fs::create_dir_all(d)
            .map_err(|e| SandboxError::io(format!("creating {}", d.display()), e))?;
    }
    let spec = RunSpec {
        root: RootSpec::Overlay {
            lowers: vec![dirs[0].clone()],
            upper: dirs[1].clone(),
            work: dirs[2].clone(),
            merged: dirs[3].clone(),
            userxattr,
            host_files: Default::default(),
        },
        // The helper's own exec fails on an empty root: exit 127 proves the
        // mounts worked, 125 that they did not.
        process: crate::Process {
            argv: vec!["/probe".into()],
            cwd: "/".into(),
            ..Default::default()
        },
        hostname: "kiln".into(),
        mounts: Vec::new(),
    };
    let lines = std::sync::Mutex::new(Vec::new());
    let out = run_step(&spec, work, &|l: &str| {
        lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(l.to_string())
    })?;
    let _ = std::fs::remove_dir_all(work);
    if out.exit_code == 127 {
        Ok(())
    } else {
        Err(SandboxError::Unavailable(
            lines.into_inner().unwrap_or_default().join("; "),
        ))
    }
}
