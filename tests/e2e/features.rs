//! Front-end and COPY features beyond docker 20.10's built-in frontend:
//! heredocs, --exclude, --parents, per-Dockerfile ignore files, build
//! args, targets, stage scoping, ONBUILD, platform ARGs.

use crate::common::*;
use serde_json::json;
use std::path::Path;

/// Build `ctx` (with extra args/env) into an OCI layout; return the config
/// and the unpacked bundle (whose directory also holds the layout).
fn build_and_unpack(
    ctx: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (serde_json::Value, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let mut build = kiln_build(ctx).oci_layout(&layout).args(args);
    for (k, v) in env {
        build = build.env(k, v);
    }
    build.ok();
    let config = skopeo_inspect(&format!("oci:{}:latest", layout.display()), true);
    let bundle = umoci_unpack(&layout, "latest");
    (config, bundle)
}

fn read(bundle: &tempfile::TempDir, p: &str) -> String {
    std::fs::read_to_string(bundle.path().join("b/rootfs").join(p))
        .unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn exists(bundle: &tempfile::TempDir, p: &str) -> bool {
    bundle
        .path()
        .join("b/rootfs")
        .join(p)
        .symlink_metadata()
        .is_ok()
}

#[test]
fn heredocs_exclude_parents_and_dockerfile_specific_ignore() {
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(&c.join("src/a.rs"), "a");
    write(&c.join("src/a_test.rs"), "t");
    write(&c.join("src/deep/b.rs"), "b");
    write(&c.join("docs/x.md"), "x");
    write(&c.join("only-generic-ignores-this"), "g");
    write(&c.join("only-specific-ignores-this"), "s");
    write(&c.join(".dockerignore"), "only-generic-ignores-this\n");
    write(
        &c.join("build.Dockerfile.dockerignore"),
        "only-specific-ignores-this\n",
    );
    write(
        &c.join("build.Dockerfile"),
        "FROM scratch\n\
         ARG NAME=world\n\
         ENV GREETING=hello\n\
         COPY <<EOF /greeting\n\
         $GREETING $NAME\n\
         EOF\n\
         COPY <<-\"RAW\" <<TWO /docs/\n\
         \t$GREETING stays\n\
         \tRAW\n\
         second\n\
         TWO\n\
         COPY --exclude=*_test.rs src/ /src/\n\
         COPY --parents src/deep/b.rs docs/x.md /p/\n\
         COPY only-* /ignores/\n",
    );
    let (_, root) = build_and_unpack(
        c,
        &["-f", c.join("build.Dockerfile").to_str().unwrap()],
        &[],
    );
    assert_eq!(read(&root, "greeting"), "hello world\n");
    assert_eq!(read(&root, "docs/RAW"), "$GREETING stays\n");
    assert_eq!(read(&root, "docs/TWO"), "second\n");
    assert!(exists(&root, "src/a.rs") && exists(&root, "src/deep/b.rs"));
    assert!(!exists(&root, "src/a_test.rs"), "--exclude");
    assert_eq!(read(&root, "p/src/deep/b.rs"), "b");
    assert_eq!(read(&root, "p/docs/x.md"), "x");
    // build.Dockerfile.dockerignore replaces .dockerignore.
    assert!(exists(&root, "ignores/only-generic-ignores-this"));
    assert!(!exists(&root, "ignores/only-specific-ignores-this"));
}

const STAGES: &str = r#"ARG BASE=scratch
ARG GLOBAL=g-default
FROM ${BASE} AS first
ARG GLOBAL
ARG FROM_ENV
ARG WITH_DEFAULT=d
ARG TARGETARCH
ENV SEEN_GLOBAL=$GLOBAL SEEN_ENV=${FROM_ENV:-unset} SEEN_DEFAULT=$WITH_DEFAULT ARCH=$TARGETARCH
ONBUILD COPY f /from-onbuild
WORKDIR rel
WORKDIR sub
COPY f ./here
SHELL ["/bin/bash", "-ec"]
CMD echo shell form

FROM first AS second
ENV NOT_GLOBAL=x${GLOBAL}x
ENTRYPOINT ["/entry"]

FROM scratch AS unused
RUN this stage is not needed for --target second and never runs
"#;

#[test]
fn build_args_targets_scoping_and_onbuild() {
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(&c.join("f"), "f");
    write(&c.join("Dockerfile"), STAGES);
    let (config, root) = build_and_unpack(
        c,
        &[
            "--target",
            "second",
            "--build-arg",
            "GLOBAL=from-cli",
            "--build-arg",
            "FROM_ENV",
        ],
        &[("FROM_ENV", "from-environment")],
    );
    let env: Vec<String> = serde_json::from_value(config["config"]["Env"].clone()).unwrap();
    let arch = std::env::consts::ARCH
        .replace("x86_64", "amd64")
        .replace("aarch64", "arm64");
    for want in [
        "SEEN_GLOBAL=from-cli".to_string(),
        "SEEN_ENV=from-environment".to_string(),
        "SEEN_DEFAULT=d".to_string(),
        format!("ARCH={arch}"),
        // A stage built on another inherits its declared ARGs (BuildKit,
        // docker 20.10 too): GLOBAL as `first` declared it.
        "NOT_GLOBAL=xfrom-clix".to_string(),
    ] {
        assert!(env.contains(&want), "{want} not in {env:?}");
    }
    assert_eq!(config["config"]["WorkingDir"], "/rel/sub");
    assert_eq!(config["config"]["Shell"], json!(["/bin/bash", "-ec"]));
    // ENTRYPOINT in a new stage drops the CMD inherited from its base.
    assert_eq!(config["config"]["Entrypoint"], json!(["/entry"]));
    assert!(config["config"]["Cmd"].is_null(), "{}", config["config"]);
    assert!(
        config["config"]["OnBuild"].is_null(),
        "triggers are consumed by the stage that runs them"
    );
    assert_eq!(read(&root, "rel/sub/here"), "f");
    assert_eq!(
        read(&root, "from-onbuild"),
        "f",
        "ONBUILD of the base stage ran"
    );

    // The first stage alone: its CMD is wrapped by its SHELL; the trigger stays.
    let (config, _) = build_and_unpack(c, &["--target", "first"], &[]);
    assert_eq!(
        config["config"]["Cmd"],
        json!(["/bin/bash", "-ec", "echo shell form"])
    );
    assert_eq!(config["config"]["OnBuild"], json!(["COPY f /from-onbuild"]));
    let env: Vec<String> = serde_json::from_value(config["config"]["Env"].clone()).unwrap();
    assert!(
        env.contains(&"SEEN_GLOBAL=g-default".to_string()),
        "{env:?}"
    );
    assert!(env.contains(&"SEEN_ENV=unset".to_string()), "{env:?}");
}
