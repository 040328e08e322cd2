//! Namespaces with an overlayfs root: the stage's layers are the lower
//! directories, the step writes to a fresh upper directory, and the
//! snapshot reads only that (O(changed files)).

use crate::executor::{
    create_dir, host_files, Executor, OutputSink, StageRoot, StepOutcome, StepRequest,
};
use crate::spec::{HostFiles, RootSpec, RunSpec};
use crate::{run_step, SandboxError};
use std::path::PathBuf;

pub struct OverlayExecutor {
    /// Mount with `userxattr` (inside a user namespace).
    pub userxattr: bool,
}

impl Executor for OverlayExecutor {
    fn describe(&self) -> &'static str {
        if self.userxattr {
            "user namespaces with an overlay root"
        } else {
            "namespaces with an overlay root"
        }
    }

    fn run(
        &self,
        step: &StepRequest,
        root: &mut dyn StageRoot,
        output: OutputSink<'_>,
    ) -> Result<StepOutcome, SandboxError> {
        let dir = &step.step_dir;
        create_dir(dir)?;
        let lowers = distinct_lowers(root.lowers()?);
        let [upper, work, merged] = ["upper", "work", "merged"].map(|d| dir.join(d));
        for d in [&upper, &work, &merged] {
            create_dir(d)?;
        }
        let (resolv, hosts) = host_files(dir);
        let root = RootSpec::Overlay {
            lowers,
            upper: upper.clone(),
            work,
            merged,
            userxattr: self.userxattr,
            host_files: HostFiles {
                resolv_conf: Some(resolv),
                hosts: Some(hosts),
            },
        };
        let spec = RunSpec {
            mounts: step.mounts.clone(),
            ..RunSpec::new(root, &step.process)
        };
        let out = run_step(&spec, dir, output)?;
        if out.exit_code != 0 {
            return Ok(StepOutcome::failed(out.exit_code, None));
        }
        let started = std::time::Instant::now();
        let changes = kiln_snapshot::upper_changes(&upper, &step.ignore)
            .map_err(|e| SandboxError::io("reading the step's changes", e))?;
        Ok(StepOutcome::succeeded(
            changes,
            Some(upper),
            "the upper directory",
            started,
        ))
    }
}

/// The lower directories with each one kept only where it is highest.
/// overlayfs refuses a directory given twice (ELOOP: overlapping layers),
/// and an image may hold one layer twice (two identical COPY layers, a
/// base image's repeated layer). Dropping the lower copy changes nothing
/// seen: every entry, whiteout and opaque marker it holds is also in the
/// copy above it, which shadows it.
fn distinct_lowers(top_first: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    top_first
        .into_iter()
        .filter(|d| seen.insert(d.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::distinct_lowers;
    use std::path::PathBuf;

    #[test]
    fn a_repeated_lower_is_kept_where_it_is_highest() {
        let p = |s: &str| PathBuf::from(s);
        let top_first = vec![p("/l/c"), p("/l/a"), p("/l/b"), p("/l/a"), p("/l/base")];
        assert_eq!(
            distinct_lowers(top_first),
            [p("/l/c"), p("/l/a"), p("/l/b"), p("/l/base")]
        );
    }
}
