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

/// `COPY --parents` copies the directories leading to each source as the
/// context has them (mode; the copy's time; root's, or --chown's, owner;
/// --chmod applied), makes a new destination 0755 (--chmod applied too),
/// keeps the owner of a directory already there, and takes a `/./` pivot:
/// what BuildKit 0.32 (dockerfile2llb/convert_copy.go) writes, checked
/// there by hand (docker 20.10's BuildKit 0.8 has no --parents).
#[test]
fn copy_parents_keeps_the_source_directories_modes() {
    use std::os::unix::fs::MetadataExt;
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(&c.join("x/a.txt"), "xa");
    write(&c.join("y/a.txt"), "ya");
    write(&c.join("deep/er/b.txt"), "b");
    write(&c.join("pivot/in/c.txt"), "c");
    for (d, mode) in [
        ("x", 0o775),
        ("y", 0o775),
        ("deep", 0o751),
        ("deep/er", 0o700),
    ] {
        chmod(&c.join(d), mode);
    }
    chmod(&c.join("pivot/in"), 0o711);
    run_ok(tool("touch").args(["-d", "2001-01-01"]).arg(c.join("x")));
    write(
        &c.join("Dockerfile"),
        "FROM scratch\n\
         COPY --parents ./x/a.txt ./y/a.txt /parents/\n\
         COPY --parents --chown=1:2 --chmod=640 ./x/a.txt /owned/\n\
         COPY --parents deep/er/b.txt /deep-copy/\n\
         COPY --parents pivot/./in/c.txt /pivoted/\n\
         COPY --chown=5:5 x /kept/x\n\
         COPY --parents ./x/a.txt /kept/\n",
    );
    let (_, root) = build_and_unpack(c, &[], &[]);
    let md = |p: &str| {
        std::fs::symlink_metadata(root.path().join("b/rootfs").join(p))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let shown = |p: &str| {
        let m = md(p);
        (m.mode() & 0o7777, m.uid(), m.gid())
    };
    assert_eq!(shown("parents"), (0o755, 0, 0));
    assert_eq!(shown("parents/x"), (0o775, 0, 0));
    assert_eq!(shown("parents/y"), (0o775, 0, 0));
    assert_eq!(read(&root, "parents/y/a.txt"), "ya");
    assert_eq!(shown("owned"), (0o640, 1, 2));
    assert_eq!(shown("owned/x"), (0o640, 1, 2));
    assert_eq!(shown("owned/x/a.txt"), (0o640, 1, 2));
    assert_eq!(shown("deep-copy/deep"), (0o751, 0, 0));
    assert_eq!(shown("deep-copy/deep/er"), (0o700, 0, 0));
    assert_eq!(shown("pivoted/in"), (0o711, 0, 0));
    assert_eq!(read(&root, "pivoted/in/c.txt"), "c");
    assert!(!exists(&root, "pivoted/pivot"));
    // A directory already there keeps its owner and takes the mode.
    assert_eq!(shown("kept/x"), (0o775, 5, 5));
    // Parents get the time of the copy, not the context's.
    let source_time = std::fs::metadata(c.join("x")).unwrap().mtime();
    assert_eq!(source_time, 978307200);
    assert!(md("parents/x").mtime() > source_time);

    // The parents' modes are in the step's cache key.
    let state = tempfile::tempdir().unwrap();
    let parents_x_with_cache = |mode: u32| {
        chmod(&c.join("x"), mode);
        let out = tempfile::tempdir().unwrap();
        let layout = out.path().join("l");
        // Not kiln_build(): it turns the local step cache off.
        kiln_test_support::KilnBuild::new(env!("CARGO_BIN_EXE_kiln"), c)
            .oci_layout(&layout)
            .arg("--kiln-dir")
            .arg(state.path())
            .ok();
        let bundle = umoci_unpack(&layout, "latest");
        let m = std::fs::metadata(bundle.path().join("b/rootfs/parents/x")).unwrap();
        m.mode() & 0o7777
    };
    assert_eq!(parents_x_with_cache(0o775), 0o775);
    assert_eq!(parents_x_with_cache(0o705), 0o705);
}
