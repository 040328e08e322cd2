//! How this build's steps run, chosen once before any stage starts (the
//! `--isolation` asked for, the probe, in-place mode's detection).

use crate::error::BuildError;
use crate::options::BuildOptions;
use kiln_sandbox::Isolation;

/// The isolation `opts` asks for and this machine allows.
pub fn choose_isolation(opts: &BuildOptions) -> Result<Isolation, BuildError> {
    // kiln's state and the context stay where they are, out of layers.
    let mut keep: Vec<String> = [&opts.kiln_dir, &opts.work_dir, &opts.context_dir]
        .iter()
        .map(|p| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    keep.extend(opts.ignore_paths.iter().cloned());
    if opts.ignore_var_run {
        keep.push("/var/run".into());
    }
    let in_place = kiln_sandbox::InPlaceOptions {
        force: opts.force,
        keep,
    };
    kiln_sandbox::detect(opts.isolation, &opts.work_dir, &in_place).map_err(BuildError::Isolation)
}
