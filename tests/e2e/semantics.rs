//! Dockerfile semantics as BuildKit has them: HOME in RUN, a stage's ARGs
//! inherited by a stage built on it, USER with no passwd entry, USER root
//! without /etc/passwd, `--` ending flags, symbolic --chmod.

use crate::common::*;
use crate::registry::{build, busybox_context, reg_args};
use crate::support::{Options, TestRegistry};

const DOCKERFILE: &str = r#"FROM {base} AS one
ARG SHARED=from-one
RUN echo "$HOME" > /home-of-root
FROM one AS two
RUN echo "inherited=$SHARED" > /inherited
USER app
RUN echo "$HOME" > /tmp/home-of-app && cp /tmp/home-of-app /tmp/copy
USER 1001
RUN id -u > /tmp/uid-1001 && id -g > /tmp/gid-1001 && echo "$HOME" > /tmp/home-1001
USER root
RUN mv /tmp/home-of-app /tmp/uid-1001 /tmp/gid-1001 /tmp/home-1001 / && rm /tmp/copy
COPY -- a.txt /dashdash.txt
COPY a.txt b.txt /both-onto
COPY missing* b.txt /into/
COPY a.txt /into
FROM scratch AS bare
COPY --from=two /inherited /inherited
USER root
WORKDIR /made-as-root
FROM two
COPY --from=bare /made-as-root /from-bare
"#;

fn check(root: &std::path::Path) {
    let read =
        |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("home-of-root"), "/root\n");
    assert_eq!(read("inherited"), "inherited=from-one\n");
    assert_eq!(read("home-of-app"), "/home/app\n");
    assert_eq!(read("uid-1001"), "1001\n");
    assert_eq!(read("gid-1001"), "0\n", "no passwd entry: group 0, as runc");
    assert_eq!(read("home-1001"), "/\n");
    assert_eq!(read("dashdash.txt"), "a\n");
    // Several sources copied in turn: onto a path that is no directory the
    // last one stays; an existing directory receives each; a wildcard
    // matching nothing is dropped while others match.
    assert_eq!(read("both-onto"), "b\n");
    assert_eq!(read("into/b.txt"), "b\n");
    assert_eq!(read("into/a.txt"), "a\n");
}

#[test]
fn run_user_home_and_stage_args_as_buildkit() {
    let reg = TestRegistry::start(Options::default());
    let base_ctx = tempfile::tempdir().unwrap();
    busybox_context(
        base_ctx.path(),
        "RUN chmod 1777 /tmp 2>/dev/null || (mkdir -p /tmp && chmod 1777 /tmp)\n",
    );
    let base = format!("{}/base/busybox-semantics:1", reg.addr);
    build(base_ctx.path(), &base, &reg_args(&reg));
    let ctx = tempfile::tempdir().unwrap();
    write(&ctx.path().join("a.txt"), "a\n");
    write(&ctx.path().join("b.txt"), "b\n");
    write(
        &ctx.path().join("Dockerfile"),
        &DOCKERFILE.replace("{base}", &base),
    );
    let out = tempfile::tempdir().unwrap();
    let kiln_tar = out.path().join("kiln.tar");
    kiln_build(ctx.path())
        .arg("--tar-path")
        .arg(&kiln_tar)
        .args(["-d", "kiln-e2e/semantics:kiln", "--no-push"])
        .args(reg_args(&reg))
        .ok();
    let layout = out.path().join("layout");
    run_ok(tool("skopeo").args([
        "copy",
        &format!("docker-archive:{}", kiln_tar.display()),
        &format!("oci:{}:latest", layout.display()),
    ]));
    let bundle = umoci_unpack(&layout, "latest");
    check(&bundle.path().join("b/rootfs"));

    let docker_tar = out.path().join("docker.tar");
    if docker().is_none()
        || !docker_buildkit_save(ctx.path(), "kiln-e2e/semantics:docker", &[], &docker_tar)
    {
        return;
    }
    let (kfs, _) = docker_archive_fs(&kiln_tar);
    let (dfs, _) = docker_archive_fs(&docker_tar);
    let diffs = differences(
        &without_times(&kfs, false),
        &without_times(&dfs, false),
        ("kiln", "docker"),
    );
    assert!(
        diffs.is_empty(),
        "file systems differ:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn symbolic_chmod() {
    let ctx = tempfile::tempdir().unwrap();
    write(&ctx.path().join("f"), "f\n");
    chmod(&ctx.path().join("f"), 0o666);
    std::fs::create_dir_all(ctx.path().join("d/sub")).unwrap();
    chmod(&ctx.path().join("d/sub"), 0o750);
    write(&ctx.path().join("d/x"), "x\n");
    chmod(&ctx.path().join("d/x"), 0o640);
    write(
        &ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY --chmod=u+x,go-w f /f\nCOPY --chmod=a=rX d /d\nCOPY --chmod=0640 f /octal\n",
    );
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("i.tar");
    kiln_build(ctx.path())
        .arg("--tar-path")
        .arg(&tar)
        .args(["-d", "kiln-e2e/chmod:1", "--no-push"])
        .ok();
    let (fs, _) = docker_archive_fs(&tar);
    assert_eq!(fs["f"].mode, 0o744);
    // X: execute for directories (and files executable for someone).
    assert_eq!(fs["d/sub"].mode, 0o555);
    assert_eq!(fs["d/x"].mode, 0o444);
    assert_eq!(fs["octal"].mode, 0o640);
}

/// ADD of a URL (served on loopback): checked against --checksum, named
/// after the URL, mode 0600, not extracted when it is an archive.
#[test]
fn add_from_a_url_with_a_checksum() {
    let served = tempfile::tempdir().unwrap();
    write(&served.path().join("tool.sh"), "#!/bin/sh\necho tool\n");
    run_ok(
        tool("tar")
            .args(["-czf"])
            .arg(served.path().join("a.tar.gz"))
            .arg("-C")
            .arg(served.path())
            .arg("tool.sh"),
    );
    let server = crate::support::StaticHttp::start(served.path().to_path_buf());
    let sha = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(b"#!/bin/sh\necho tool\n"))
    };
    let url = format!("http://{}", server.addr);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(served.path().join("a.tar.gz"), ctx.path().join("a.tar.gz")).unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!(
            "FROM scratch\nADD --checksum=sha256:{sha} {url}/tool.sh /bin/\n\
             ADD {url}/tool.sh /renamed\nADD {url}/a.tar.gz /archives/\n\
             ADD --unpack=true {url}/a.tar.gz /unpacked/\nADD --unpack=false a.tar.gz /kept/\n"
        ),
    );
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("i.tar");
    kiln_build(ctx.path())
        .arg("--tar-path")
        .arg(&tar)
        .args(["-d", "kiln-e2e/add-url:1", "--no-push"])
        .ok();
    let (fs, _) = docker_archive_fs(&tar);
    assert_eq!(fs["bin/tool.sh"].mode, 0o600);
    assert_eq!(fs["renamed"].sha256, fs["bin/tool.sh"].sha256);
    assert_eq!(fs["archives/a.tar.gz"].kind, 'f', "not extracted");
    assert_eq!(
        fs["unpacked/tool.sh"].kind, 'f',
        "--unpack extracts a remote archive"
    );
    assert_eq!(
        fs["kept/a.tar.gz"].kind, 'f',
        "--unpack=false keeps a local one"
    );

    let wrong = "0".repeat(64);
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM scratch\nADD --checksum=sha256:{wrong} {url}/tool.sh /bin/\n"),
    );
    let (code, err) = kiln_build(ctx.path())
        .arg("--tar-path")
        .arg(out.path().join("never.tar"))
        .args(["-d", "kiln-e2e/add-url:2", "--no-push"])
        .fails();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("checksum mismatch")
            && err.contains(&format!("sha256:{wrong}"))
            && err.contains(&format!("sha256:{sha}")),
        "{err}"
    );
}

/// ADD of a git repository (a bare repository served on loopback over
/// git's HTTP protocol): `#REF:SUBDIR`, the 1.18 query form with
/// keep-git-dir, and --checksum naming the commit.
#[test]
fn add_from_a_git_repository() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("app")).unwrap();
    write(&src.join("app/hello.txt"), "hello from git\n");
    write(&src.join("README"), "top\n");
    let (server, commit) = serve_git_repo(work.path());
    let repo = format!("http://{}/repo.git", server.addr);

    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!(
            "FROM scratch\nADD {repo}#release:app /src/\n\
             ADD {repo}?branch=release&keep-git-dir=true /full/\n\
             ADD --checksum={commit} {repo}#release /pinned/\n"
        ),
    );
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("i.tar");
    kiln_build(ctx.path())
        .arg("--tar-path")
        .arg(&tar)
        .args(["-d", "kiln-e2e/add-git:1", "--no-push"])
        .ok();
    let (fs, _) = docker_archive_fs(&tar);
    assert!(fs.contains_key("src/hello.txt"), "{:?}", fs.keys());
    assert!(!fs.contains_key("src/.git") && !fs.contains_key("pinned/.git"));
    assert!(fs.contains_key("full/.git/HEAD") && fs.contains_key("full/app/hello.txt"));
    assert!(fs.contains_key("pinned/README"));

    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM scratch\nADD --checksum=0000000 {repo}#release /pinned/\n"),
    );
    let (code, err) = kiln_build(ctx.path())
        .arg("--tar-path")
        .arg(out.path().join("never.tar"))
        .args(["-d", "kiln-e2e/add-git:2", "--no-push"])
        .fails();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("checksum mismatch") && err.contains(&commit),
        "{err}"
    );
}

/// COPY --link makes a layer independent of what is below it: the same
/// bytes on any base, laid over the stage as a layer stacks.
#[test]
fn copy_link_layers_do_not_depend_on_the_base() {
    let reg = TestRegistry::start(Options::default());
    let base_ctx = tempfile::tempdir().unwrap();
    busybox_context(base_ctx.path(), "");
    let base = format!("{}/base/busybox-link:1", reg.addr);
    build(base_ctx.path(), &base, &reg_args(&reg));
    let mut layers = Vec::new();
    let mut trees = Vec::new();
    for from in [
        "FROM scratch\n".to_string(),
        format!(
            "FROM {base}\nRUN mkdir -p /opt/app && chmod 700 /opt && echo old > /opt/app/keep\n"
        ),
    ] {
        let ctx = tempfile::tempdir().unwrap();
        write(&ctx.path().join("a.txt"), "a\n");
        write(
            &ctx.path().join("Dockerfile"),
            &format!("{from}COPY --link a.txt /opt/app/\n"),
        );
        let out = tempfile::tempdir().unwrap();
        let tar = out.path().join("i.tar");
        kiln_build(ctx.path())
            .arg("--tar-path")
            .arg(&tar)
            .args(["-d", "kiln-e2e/link:1", "--no-push", "--reproducible"])
            .args(reg_args(&reg))
            .ok();
        let (fs, config) = docker_archive_fs(&tar);
        let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap().clone();
        layers.push(diff_ids.last().unwrap().clone());
        trees.push(fs);
    }
    assert_eq!(
        layers[0], layers[1],
        "the COPY --link layer is the same on both bases"
    );
    let stacked = &trees[1];
    assert_eq!(stacked["opt/app/a.txt"].kind, 'f');
    assert_eq!(stacked["opt/app/keep"].kind, 'f', "what was below stays");
    assert_eq!(
        stacked["opt"].mode, 0o755,
        "the layer's directory lies over the base's"
    );
}

/// A bare `ARG NAME` in a stage built on another keeps the value NAME has
/// there (Kaniko #1911); a build arg given on the command line still
/// wins. BuildKit 0.32 and docker 20.10 write "custom:: base-dev".
#[test]
fn a_bare_arg_keeps_the_base_stages_value() {
    let reg = TestRegistry::start(Options::default());
    let base_ctx = tempfile::tempdir().unwrap();
    busybox_context(base_ctx.path(), "");
    let base = format!("{}/base/busybox-args:1", reg.addr);
    build(base_ctx.path(), &base, &reg_args(&reg));
    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!(
            "FROM {base} AS base\n\
             ARG NAME=\"base\"\n\
             FROM base AS dev\n\
             ARG NAME=\"$NAME-dev\"\n\
             FROM dev AS custom\n\
             ARG NAME\n\
             RUN echo \"custom:: $NAME\" > /C.txt\n\
             ARG NAME\n\
             RUN echo \"again:: $NAME\" >> /C.txt\n"
        ),
    );
    for (args, expected) in [
        (vec![], "custom:: base-dev\nagain:: base-dev\n"),
        (
            vec!["--build-arg", "NAME=cli"],
            "custom:: cli\nagain:: cli\n",
        ),
    ] {
        let out = tempfile::tempdir().unwrap();
        let layout = out.path().join("l");
        kiln_build(ctx.path())
            .oci_layout(&layout)
            .args(reg_args(&reg))
            .args(&args)
            .ok();
        let bundle = umoci_unpack(&layout, "latest");
        let got = std::fs::read_to_string(bundle.path().join("b/rootfs/C.txt")).unwrap();
        assert_eq!(got, expected, "{args:?}");
    }
}

/// An image from scratch has `WorkingDir: "/"` in its config, as
/// BuildKit's emptyImage (dockerfile2llb/image.go) and docker 20.10 write
/// it, also through a stage built on it; one based on an image keeps that
/// image's value.
#[test]
fn scratch_images_work_in_root() {
    let reg = TestRegistry::start(Options::default());
    let ctx = tempfile::tempdir().unwrap();
    write(&ctx.path().join("f"), "f\n");
    write(
        &ctx.path().join("Dockerfile"),
        "FROM scratch AS first\nCOPY f /f\nFROM first\nCOPY f /g\n",
    );
    let config = |ctx: &std::path::Path| {
        let out = tempfile::tempdir().unwrap();
        let layout = out.path().join("l");
        kiln_build(ctx)
            .oci_layout(&layout)
            .args(reg_args(&reg))
            .ok();
        skopeo_inspect(&format!("oci:{}:latest", layout.display()), true)
    };
    assert_eq!(config(ctx.path())["config"]["WorkingDir"], "/");
    // Pushed with another working directory, then built on.
    write(
        &ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY f /w/f\nWORKDIR /w\n",
    );
    let base = format!("{}/base/workdir:1", reg.addr);
    build(ctx.path(), &base, &reg_args(&reg));
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM {base}\nCOPY f /g\n"),
    );
    assert_eq!(config(ctx.path())["config"]["WorkingDir"], "/w");
}
