//! What kiln's `main` calls before anything else: the two ways the
//! binary runs itself (re-executed inside a user namespace, and as the
//! step helper `kiln __run SPEC`), and the re-exec for a build.

use crate::detect::IsolationMode;

/// Call first in `main`, while the process is single-threaded. `Some(code)`:
/// this process was the step helper, or entering the namespace failed;
/// exit with `code`. `None`: carry on as the CLI.
pub fn entrypoint() -> Option<i32> {
    // Nothing kiln's parent left open may reach a helper or a step.
    crate::descriptors::close_inherited_on_exec();
    if let Err(e) = crate::finish_entering() {
        eprintln!("error: {e}");
        return Some(1);
    }
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "__run") {
        return Some(match args.next() {
            Some(spec) => crate::helper::helper_main(std::path::Path::new(&spec)),
            None => 125,
        });
    }
    None
}

/// Before a build: unless chroot is asked for, an unprivileged kiln runs
/// the rest of the build as root of a user namespace (its subordinate IDs
/// mapped). `Some(code)`: the build ran in the re-executed kiln, which
/// exited with `code`.
pub fn enter_for_build(mode: IsolationMode) -> Option<i32> {
    if matches!(mode, IsolationMode::Chroot | IsolationMode::InPlace) {
        return None;
    }
    match crate::enter_user_namespace() {
        Ok(code) => code,
        Err(e) => {
            tracing::warn!("{e}; RUN steps will not be possible");
            None
        }
    }
}
