//! BuildKit's build checks: the `# check=` directive, `kiln build --check`,
//! and the rules that need base images' configs and the context.

use crate::common::*;
use crate::registry::{push_busybox_base, reg_args};
use crate::support::{Options, TestRegistry};

/// BuildKit's build checks: warnings in a build, `--check` reports and
/// builds nothing, `# check=error=true` fails the build, `skip=` skips.
#[test]
fn build_checks() {
    let ctx = tempfile::tempdir().unwrap();
    write(&ctx.path().join("a.txt"), "a\n");
    let dockerfile = |text: &str| write(&ctx.path().join("Dockerfile"), text);
    dockerfile("FROM scratch AS Base\nCOPY a.txt /a\nCMD /a\n");
    let out = tempfile::tempdir().unwrap();
    let log = kiln_build(ctx.path())
        .oci_layout(&out.path().join("l"))
        .ok();
    assert!(
        log.contains("Dockerfile:1:1: StageNameCasing: Stage name 'Base' should be lowercase"),
        "{log}"
    );
    assert!(log.contains("JSONArgsRecommended"), "{log}");
    let (code, err) = kiln_build(ctx.path()).arg("--check").fails();
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("2 build check finding(s)"), "{err}");
    assert!(!err.contains("[1/"), "--check builds nothing: {err}");
    dockerfile("# check=error=true\nFROM scratch AS Base\nCOPY a.txt /a\n");
    let (code, err) = kiln_build(ctx.path())
        .oci_layout(&out.path().join("l2"))
        .fails();
    assert_eq!(code, Some(3), "{err}");
    dockerfile("# check=skip=StageNameCasing;error=true\nFROM scratch AS Base\nCOPY a.txt /a\n");
    kiln_build(ctx.path())
        .oci_layout(&out.path().join("l3"))
        .ok();
    kiln_build(ctx.path()).arg("--check").ok();
}

/// UndefinedVar knows the base image's Env (fetched from the registry, no
/// layer read), CopyIgnoredFile (experimental) knows `.dockerignore`,
/// InvalidBaseImagePlatform the base's platform; shell-form RUN is never
/// judged; a build with findings still builds.
#[test]
fn checks_that_read_base_images_and_the_context() {
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-checks", "ENV APP_HOME=/srv\n");
    let ctx = tempfile::tempdir().unwrap();
    write(&ctx.path().join("a.txt"), "a\n");
    write(&ctx.path().join("secret.txt"), "s\n");
    write(&ctx.path().join(".dockerignore"), "secret.txt\n");
    let dockerfile = format!(
        "# check=experimental=CopyIgnoredFile\n\
         FROM {base} AS app\n\
         WORKDIR $APP_HOME\n\
         COPY a.txt $APP_HOEM/\n\
         COPY a.txt ./secret.txt /x/\n\
         RUN echo $ONLY_THE_SHELL_SEES_THIS\n\
         FROM --platform=linux/s390x {base} AS other\n"
    );
    write(&ctx.path().join("Dockerfile"), &dockerfile);
    let (code, err) = kiln_build(ctx.path())
        .arg("--check")
        .args(reg_args(&reg))
        .fails();
    assert_eq!(code, Some(3), "{err}");
    for expected in [
        "Dockerfile:4:1: UndefinedVar: Usage of undefined variable '$APP_HOEM' (did you mean $APP_HOME?)",
        "Dockerfile:5:1: CopyIgnoredFile: Attempting to Copy file \"secret.txt\" that is excluded by .dockerignore",
        "Dockerfile:7:1: InvalidBaseImagePlatform: Base image",
        "expected \"linux/s390x\" for current build",
        "Dockerfile:7:1: FromPlatformFlagConstDisallowed",
        "4 build check finding(s)",
    ] {
        assert!(err.contains(expected), "{expected:?} missing from: {err}");
    }
    assert!(
        !err.contains("APP_HOME'"),
        "the base image defines it: {err}"
    );
    assert!(!err.contains("ONLY_THE_SHELL"), "RUN is not judged: {err}");

    // The same checks in a build: warnings, and the image is built.
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM {base}\nWORKDIR $APP_HOME\nCOPY a.txt $APP_HOEM/\n"),
    );
    let out = tempfile::tempdir().unwrap();
    let log = kiln_build(ctx.path())
        .oci_layout(&out.path().join("l"))
        .args(reg_args(&reg))
        .ok();
    assert!(
        log.contains("Dockerfile:3:1: UndefinedVar: Usage of undefined variable '$APP_HOEM'"),
        "{log}"
    );
}
