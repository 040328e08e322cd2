//! RUN end to end: as an unprivileged user (user namespaces, subordinate
//! IDs written by the test setup) and as root in chroot mode, on the
//! busybox base from the test registry; pushed, unpacked with umoci and
//! checked file by file; compared with docker's BuildKit where an engine
//! answers; and kiln inside a default container (the Kubernetes-pod case).

use crate::common::*;
use crate::registry::{build, busybox_context, reg_args};
use crate::support::{Options, TestRegistry};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const RUN_DOCKERFILE: &str = r#"ARG BASE
FROM ${BASE}
ARG GREETING=hello
ENV TARGET=/data
RUN mkdir -p $TARGET/sub /replace/inner /home && echo "$GREETING" > $TARGET/greeting \
 && echo old > $TARGET/sub/old && echo lower > /replace/inner/f && echo gone > /etc/gone
RUN rm $TARGET/sub/old /etc/gone && rm -rf /replace && mkdir -p /replace && echo new > /replace/g \
 && chown 1000:1000 $TARGET/greeting && chmod 4755 $TARGET/greeting \
 && ln -s greeting $TARGET/link && ln $TARGET/greeting $TARGET/hard \
 && mkdir -p /home/app && chown app:app /home/app
USER app
RUN id -u > /home/app/whoami && echo "$GREETING $TARGET" > /home/app/from-arg
USER root
RUN test "$(id -u)" = 0 && touch /data/as-root
ARG NAP=1000
RUN (sleep $NAP > /dev/null 2>&1 &) && echo left a process behind
"#;

/// For the tests that build in chroot mode too: a registry with the RUN
/// base in it, or `None` (said loudly) when not root.
pub(crate) fn chroot_registry_and_base() -> Option<(TestRegistry, String)> {
    if !is_root() {
        eprintln!("!!!!!!!! SKIPPED: chroot mode needs root !!!!!!!!");
        return None;
    }
    let reg = TestRegistry::start(Options::default());
    let base = base_image(&reg);
    Some((reg, base))
}

pub(crate) fn base_image(reg: &TestRegistry) -> String {
    let ctx = tempfile::tempdir().unwrap();
    busybox_context(ctx.path(), "");
    let base = format!("{}/base/busybox-run:1", reg.addr);
    build(ctx.path(), &base, &reg_args(reg));
    base
}

fn run_context(dir: &Path) {
    write(&dir.join("Dockerfile"), RUN_DOCKERFILE);
    chmod(dir, 0o755);
    chmod(&dir.join("Dockerfile"), 0o644);
}

/// The expected tree, checked in an unpacked root file system.
fn check_tree(root: &Path) {
    let md =
        |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(
        std::fs::read_to_string(root.join("data/greeting")).unwrap(),
        "from-cli\n"
    );
    let g = md("data/greeting");
    assert_eq!(g.mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!((g.uid(), g.gid()), (1000, 1000), "chown to another ID");
    assert_eq!(g.ino(), md("data/hard").ino(), "hard link kept");
    assert_eq!(
        std::fs::read_link(root.join("data/link")).unwrap().to_str(),
        Some("greeting")
    );
    assert!(md("data/sub").is_dir());
    assert!(
        !root.join("data/sub/old").exists(),
        "deleted file (whiteout)"
    );
    assert!(!root.join("etc/gone").exists());
    assert!(
        !root.join("replace/inner").exists(),
        "replaced directory hides the lower one"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("replace/g")).unwrap(),
        "new\n"
    );
    let home = md("home/app");
    assert_eq!((home.uid(), home.gid()), (1000, 1000));
    assert_eq!(
        std::fs::read_to_string(root.join("home/app/whoami")).unwrap(),
        "1000\n"
    );
    let from_arg = md("home/app/from-arg");
    assert_eq!(
        (from_arg.uid(), from_arg.gid()),
        (1000, 1000),
        "files made as USER app"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("home/app/from-arg")).unwrap(),
        "from-cli /data\n"
    );
    assert!(root.join("data/as-root").exists());
    // The sandbox's own files stay out of the image; the mount points
    // remain as empty directories, as with BuildKit.
    for p in ["etc/resolv.conf", "etc/hosts"] {
        assert!(!root.join(p).exists(), "{p} leaked into the image");
    }
    for p in ["proc", "sys", "dev"] {
        assert_eq!(
            std::fs::read_dir(root.join(p)).unwrap().count(),
            0,
            "{p} has contents"
        );
    }
}

fn unpack_pushed(reference: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    run_ok(
        tool("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:latest", layout.display())),
    );
    (out, layout)
}

#[test]
fn run_steps_unprivileged_and_in_chroot_mode() {
    if !is_root() {
        eprintln!("!!!!!!!! SKIPPED: these tests switch users and need root to set up !!!!!!!!");
        return;
    }
    ensure_subids();
    let reg = TestRegistry::start(Options::default());
    let base = base_image(&reg);
    let work = tempfile::tempdir().unwrap();
    chmod(work.path(), 0o777);
    let ctx = work.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    run_context(&ctx);
    let common = |dest: &str| -> Vec<String> {
        let mut v = reg_args(&reg);
        v.extend(["--build-arg".into(), "NAP=4321".into()]);
        v.extend(["--build-arg".into(), format!("BASE={base}")]);
        v.extend(["--build-arg".into(), "GREETING=from-cli".into()]);
        v.extend(["-d".into(), dest.into()]);
        v
    };

    // As uid 65534: user namespaces with its subordinate range.
    let unpriv = format!("{}/run/unprivileged:1", reg.addr);
    let log = kiln_build_as_nobody(&ctx, work.path())
        .args(common(&unpriv))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["-v", "debug"])
        .ok();
    assert!(log.contains("isolation: user namespaces"), "{log}");
    // The image's layers are the overlay's lower layers: no copy of the tree.
    assert!(
        log.contains("layer directories stacked as overlay lower layers"),
        "{log}"
    );
    assert!(!log.contains("files written out"), "{log}");
    let (_keep, layout) = unpack_pushed(&unpriv);
    let bundle = umoci_unpack(&layout, "latest");
    check_tree(&bundle.path().join("b/rootfs"));
    let config = skopeo_inspect(&format!("oci:{}:latest", layout.display()), true);
    assert!(
        config["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e.as_str().unwrap().starts_with("GREETING=")),
        "ARGs are not persisted: {}",
        config["config"]
    );
    assert_eq!(config["config"]["User"], "root");

    // As root in chroot mode: the same image content.
    let chrooted = format!("{}/run/chroot:1", reg.addr);
    let mut args = common(&chrooted);
    args.extend(["--isolation".into(), "chroot".into()]);
    let log = build(&ctx, &chrooted, &args);
    assert!(log.contains("isolation: chroot"), "{log}");
    let (_keep2, layout2) = unpack_pushed(&chrooted);
    let bundle2 = umoci_unpack(&layout2, "latest");
    check_tree(&bundle2.path().join("b/rootfs"));

    // Processes a step leaves behind are killed when it ends.
    let left = std::process::Command::new("pgrep")
        .args(["-f", "sleep 4321"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "left-behind processes survive: {}",
        String::from_utf8_lossy(&left.stdout)
    );

    // A failing step names its line and exit code.
    let failing = work.path().join("failing");
    std::fs::create_dir(&failing).unwrap();
    write(
        &failing.join("Dockerfile"),
        &format!("FROM {base}\nRUN echo before; exit 3\n"),
    );
    let (code, err) = kiln_build(&failing)
        .oci_layout(&work.path().join("never"))
        .args(reg_args(&reg))
        .fails();
    assert_eq!(code, Some(1));
    assert!(
        err.contains("line 2 | before"),
        "output streamed with the step's line: {err}"
    );
    assert!(
        err.contains("Dockerfile:2:5:") && err.contains("exit code 3"),
        "{err}"
    );
    assert!(!work.path().join("never/index.json").exists());
}

#[test]
fn run_matches_docker_buildkit() {
    let Some(_) = docker() else { return };
    let reg = TestRegistry::start(Options::default());
    let base = base_image(&reg);
    let ctx = tempfile::tempdir().unwrap();
    run_context(ctx.path());
    let out = tempfile::tempdir().unwrap();
    let kiln_tar = out.path().join("kiln.tar");
    let mut args = reg_args(&reg);
    args.extend([
        "--build-arg".into(),
        format!("BASE={base}"),
        "--build-arg".into(),
        "GREETING=from-cli".into(),
    ]);
    kiln_build(ctx.path())
        .arg("--tar-path")
        .arg(&kiln_tar)
        .args(&args)
        .ok();
    let tag = "kiln-e2e/run:docker";
    let docker_tar = out.path().join("docker.tar");
    let build_args = [format!("BASE={base}"), "GREETING=from-cli".to_string()];
    if !docker_buildkit_save(ctx.path(), tag, &build_args, &docker_tar) {
        return;
    }
    let (kfs, kcfg) = docker_archive_fs(&kiln_tar);
    let (dfs, dcfg) = docker_archive_fs(&docker_tar);
    // Times of what the steps made are the build's own.
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
    for key in ["Env", "User", "WorkingDir", "Cmd"] {
        assert_eq!(kcfg["config"][key], dcfg["config"][key], "config.{key}");
    }
    // BuildKit 0.8 writes an empty layer for a step that changes nothing;
    // kiln records an empty_layer history entry instead (compatibility.md).
    const EMPTY_TAR: &str =
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    let layers = |c: &serde_json::Value| {
        c["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d.as_str() != Some(EMPTY_TAR))
            .count()
    };
    assert_eq!(layers(&kcfg), layers(&dcfg));
}

/// The Kubernetes-pod case for real: kiln as root inside a default
/// `docker run` (default seccomp and AppArmor, no --privileged, no added
/// capabilities) builds a RUN fixture in chroot mode, pushes it to the
/// registry on loopback, and leaves its own container's root untouched.
#[test]
fn run_inside_a_default_container_uses_chroot_and_pushes() {
    let Some(_) = docker() else { return };
    let reg = TestRegistry::start(Options::default());
    let base = base_image(&reg);
    let tag = "kiln-e2e/kiln:pod";
    crate::docker::load_kiln_image(tag);
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    write(
        &ctx.join("Dockerfile"),
        &format!("FROM {base}\nRUN echo in-pod > /pod.txt && chown 1000:1000 /pod.txt && rm /etc/group\n"),
    );
    let state = work.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let dest = format!("{}/pod/app:1", reg.addr);
    let name = format!("kiln-e2e-pod-{}", std::process::id());
    let out = docker()
        .unwrap()
        .args([
            "run",
            "--name",
            &name,
            "--network",
            "host",
            "-e",
            "KILN_DIR=/state",
        ])
        .arg("-v")
        .arg(format!("{}:/ctx:ro", ctx.display()))
        .arg("-v")
        .arg(format!("{}:/state", state.display()))
        .args([
            tag,
            "build",
            "-c",
            "/ctx",
            "-d",
            &dest,
            "--insecure-registry",
            &reg.addr,
        ])
        .output()
        .unwrap();
    let diff = docker().unwrap().args(["diff", &name]).output().unwrap();
    let _ = docker().unwrap().args(["rm", "-f", &name]).output();
    let _ = docker().unwrap().args(["rmi", "-f", tag]).output();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("isolation: chroot"), "{log}");
    // Docker itself adds the volumes' mount points; nothing else may change.
    let changed: Vec<String> = String::from_utf8_lossy(&diff.stdout)
        .lines()
        .filter(|l| !matches!(l.trim(), "A /state" | "A /ctx"))
        .map(String::from)
        .collect();
    assert!(
        changed.is_empty(),
        "kiln changed its own container's root: {changed:?}"
    );
    let (_keep, layout) = unpack_pushed(&dest);
    let bundle = umoci_unpack(&layout, "latest");
    let root = bundle.path().join("b/rootfs");
    assert_eq!(
        std::fs::read_to_string(root.join("pod.txt")).unwrap(),
        "in-pod\n"
    );
    let m = std::fs::metadata(root.join("pod.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
    assert!(!root.join("etc/group").exists());
    assert!(root.join("etc/passwd").exists());
}

/// Where buildah is installed: its image of the same RUN Dockerfile
/// (`buildah bud --isolation chroot`) equals kiln's file by file.
#[test]
fn run_matches_buildah() {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v buildah"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found || !is_root() {
        eprintln!("!!!!!!!! SKIPPED: buildah is not installed (or not root): no comparison with buildah !!!!!!!!");
        return;
    }
    let reg = TestRegistry::start(Options::default());
    let base = base_image(&reg);
    let ctx = tempfile::tempdir().unwrap();
    run_context(ctx.path());
    let kiln_ref = format!("{}/cmp/app:kiln", reg.addr);
    let mut args = reg_args(&reg);
    args.extend([
        "--build-arg".into(),
        format!("BASE={base}"),
        "--build-arg".into(),
        "GREETING=from-cli".into(),
    ]);
    build(ctx.path(), &kiln_ref, &args);
    let storage = tempfile::tempdir().unwrap();
    let buildah = |a: &[&str]| {
        let mut c = std::process::Command::new("buildah");
        c.arg("--root")
            .arg(storage.path().join("root"))
            .arg("--runroot")
            .arg(storage.path().join("run"));
        c.arg("--storage-driver").arg("vfs");
        c.args(a);
        c
    };
    let buildah_ref = format!("{}/cmp/app:buildah", reg.addr);
    run_ok(
        buildah(&["bud", "-q", "--isolation", "chroot", "--tls-verify=false"])
            .arg("--build-arg")
            .arg(format!("BASE={base}"))
            .args(["--build-arg", "GREETING=from-cli", "-t", &buildah_ref])
            .arg(ctx.path()),
    );
    run_ok(&mut buildah(&[
        "push",
        "-q",
        "--tls-verify=false",
        &buildah_ref,
    ]));
    let (_k, klayout) = unpack_pushed(&kiln_ref);
    let (_b, blayout) = unpack_pushed(&buildah_ref);
    let kb = umoci_unpack(&klayout, "latest");
    let bb = umoci_unpack(&blayout, "latest");
    let kt = tree_info(&kb.path().join("b/rootfs"));
    let mut bt = tree_info(&bb.path().join("b/rootfs"));
    // buildah leaves its empty mount points behind (docker does not, nor
    // does kiln): /etc/hostname, /etc/hosts, /etc/resolv.conf and /run.
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    for p in ["etc/hostname", "etc/hosts", "etc/resolv.conf"] {
        if bt.get(p).is_some_and(|v| v.contains(empty)) && !kt.contains_key(p) {
            bt.remove(p);
        }
    }
    if bt.get("run").is_some_and(|v| v.starts_with("d "))
        && !kt.contains_key("run")
        && !bt.keys().any(|k| k.starts_with("run/"))
    {
        bt.remove("run");
    }
    let diffs = differences(&kt, &bt, ("kiln", "buildah"));
    assert!(
        diffs.is_empty(),
        "kiln and buildah differ:\n{}",
        diffs.join("\n")
    );
}

/// A COPY or WORKDIR between two RUNs reaches the second RUN's root, in
/// every isolation mode (chroot writes the stage's root out; overlay may
/// stack a written-out root).
#[test]
fn files_copied_between_runs_are_seen_by_the_next_run() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    write(&ctx.path().join("f.txt"), "copied\n");
    write(
        &ctx.path().join("Dockerfile"),
        &format!(
            "FROM {base}\nRUN echo first > /first\nCOPY f.txt /f.txt\nWORKDIR /made\n\
             RUN cat /f.txt /first > /both && test -d /made\n"
        ),
    );
    for isolation in ["chroot", "auto"] {
        let out = tempfile::tempdir().unwrap();
        let layout = out.path().join("l");
        kiln_build(ctx.path())
            .oci_layout(&layout)
            .args(reg_args(&reg))
            .args(["--isolation", isolation])
            .ok();
        let bundle = umoci_unpack(&layout, "latest");
        assert_eq!(
            std::fs::read_to_string(bundle.path().join("b/rootfs/both")).unwrap(),
            "copied\nfirst\n",
            "{isolation}"
        );
    }
}

/// `RUN --network=none` has no route out where a network namespace can be
/// made, and is refused (never run with the network) where it cannot.
#[test]
fn network_none_has_no_route_or_is_refused() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM {base}\nRUN --network=none cat /proc/net/dev > /netdev\n"),
    );
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("l");
    kiln_build(ctx.path())
        .oci_layout(&layout)
        .args(reg_args(&reg))
        .ok();
    let bundle = umoci_unpack(&layout, "latest");
    // Only the loopback interface (after the two header lines).
    let netdev = std::fs::read_to_string(bundle.path().join("b/rootfs/netdev")).unwrap();
    let interfaces: Vec<&str> = netdev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "{netdev}");
    let (code, err) = kiln_build(ctx.path())
        .oci_layout(&out.path().join("l2"))
        .args(reg_args(&reg))
        .args(["--isolation", "chroot"])
        .fails();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("RUN --network=none needs a network namespace"),
        "{err}"
    );
}

/// RUN --mount: a cache kept between builds, a secret readable in the step
/// (as a file and as a variable) and in no byte kiln writes, a tmpfs that
/// leaves nothing, a bind of the context and of another stage; in
/// namespaces (auto) and in chroot mode.
#[test]
fn run_mounts_cache_secret_tmpfs_bind() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    write(&ctx.join("data/file"), "bound\n");
    // The Dockerfile checks the secret's length and end, never its text.
    let secret = "s3cr3t-v4lue-kiln";
    let len = secret.len();
    write(&work.path().join("token"), secret);
    write(
        &ctx.join("Dockerfile"),
        &format!(
            "FROM {base} AS other\nRUN mkdir -p /made && echo from-other > /made/it\n\
             FROM {base}\n\
             RUN --mount=type=cache,target=/cache echo run >> /cache/count && cat /cache/count > /seen\n\
             RUN --mount=type=secret,id=tok s=$(cat /run/secrets/tok) && test ${{#s}} = {len} && test ${{s%-kiln}} != $s && echo ok > /secret-file-ok\n\
             RUN --mount=type=secret,id=tok,env=TOKEN test ${{#TOKEN}} = {len} && echo ok > /secret-env-ok\n\
             RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/f && test -f /scratch/f\n\
             RUN --mount=type=bind,source=data,target=/data cat /data/file > /from-context\n\
             RUN --mount=type=bind,source=data,target=/rw,rw echo changed > /rw/file && cat /rw/file > /rw-wrote\n\
             RUN --mount=type=bind,from=other,source=/made,target=/m cat /m/it > /from-stage\n"
        ),
    );
    // As uid 65534 too (user namespaces): everything it reads or writes
    // must be open to it.
    open_to_nobody(
        &[work.path(), &ctx, &ctx.join("data")],
        &[
            &work.path().join("token"),
            &ctx.join("Dockerfile"),
            &ctx.join("data/file"),
        ],
    );
    for isolation in ISOLATIONS {
        let state = work.path().join(format!("state-{isolation}"));
        let mut seen = Vec::new();
        for round in 0..2 {
            let out = open_dir(&work.path().join(format!("out-{isolation}-{round}")));
            let report = out.join("report.json");
            let build = kiln_build_isolated(isolation, &ctx, work.path());
            let log = build
                .oci_layout(&out.join("l"))
                .args(reg_args(&reg))
                .arg("--kiln-dir")
                .arg(&state)
                .arg("--secret")
                .arg(format!(
                    "id=tok,src={}",
                    work.path().join("token").display()
                ))
                .arg("--report")
                .arg(&report)
                // The log at its most verbose must not hold it either.
                .args(["-v", "trace"])
                .ok();
            if isolation == "unprivileged" && round == 0 {
                assert!(log.contains("isolation: user namespaces"), "{log}");
            }
            let bundle = umoci_unpack(&out.join("l"), "latest");
            let root = bundle.path().join("b/rootfs");
            let read = |p: &str| {
                std::fs::read_to_string(root.join(p))
                    .unwrap_or_else(|e| panic!("{isolation} {p}: {e}"))
            };
            seen.push(read("seen"));
            assert_eq!(read("secret-file-ok"), "ok\n");
            assert_eq!(read("secret-env-ok"), "ok\n");
            assert_eq!(read("from-context"), "bound\n");
            assert_eq!(read("from-stage"), "from-other\n");
            // A writable bind writes to a throwaway copy, never the context.
            assert_eq!(read("rw-wrote"), "changed\n");
            assert_eq!(
                std::fs::read_to_string(ctx.join("data/file")).unwrap(),
                "bound\n"
            );
            for gone in ["cache", "run/secrets", "scratch", "data", "m", "rw"] {
                assert!(
                    !root.join(gone).exists(),
                    "{isolation}: /{gone} is in the image"
                );
            }
            // The secret is in no byte kiln wrote: layers, config,
            // manifest, report, log.
            let mut written = vec![log.into_bytes(), std::fs::read(&report).unwrap()];
            for blob in walk_files(&out.join("l/blobs")) {
                let bytes = std::fs::read(&blob).unwrap();
                let mut plain = Vec::new();
                use std::io::Read;
                if flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_end(&mut plain)
                    .is_ok()
                {
                    written.push(plain);
                }
                written.push(bytes);
            }
            for bytes in &written {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{isolation}: the secret was written"
                );
            }
        }
        assert_eq!(
            seen,
            ["run\n", "run\nrun\n"],
            "{isolation}: the cache persists"
        );
    }
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// RUN --mount=type=ssh forwards the agent given by --ssh default.
#[test]
fn run_mount_ssh_forwards_the_agent() {
    if !is_root() {
        eprintln!("!!!!!!!! SKIPPED: needs root to build as in CI !!!!!!!!");
        return;
    }
    let reg = TestRegistry::start(Options::default());
    let base = base_image(&reg);
    let work = tempfile::tempdir().unwrap();
    let socket = work.path().join("agent.sock");
    let agent = run_ok(tool("ssh-agent").arg("-a").arg(&socket));
    let pid = agent
        .split(';')
        .find_map(|f| f.trim().strip_prefix("SSH_AGENT_PID="))
        .map(str::to_string);
    let ctx = work.path().join("ctx");
    write(
        &ctx.join("Dockerfile"),
        &format!(
            "FROM {base}\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo ok > /ssh-ok\n"
        ),
    );
    let out = work.path().join("out");
    let built = kiln_build(&ctx)
        .oci_layout(&out)
        .args(reg_args(&reg))
        .args(["--ssh", "default"])
        .env("SSH_AUTH_SOCK", &socket)
        .output();
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill").arg(pid).status();
    }
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let bundle = umoci_unpack(&out, "latest");
    let root = bundle.path().join("b/rootfs");
    assert_eq!(
        std::fs::read_to_string(root.join("ssh-ok")).unwrap(),
        "ok\n"
    );
    assert!(!root.join("run/buildkit").exists());
}

/// Stages that do not depend on each other run at the same time (the
/// report's step times overlap); with --jobs 1 they do not; a stage the
/// target does not need never runs.
#[test]
fn independent_stages_run_in_parallel() {
    if !is_root() {
        eprintln!("!!!!!!!! SKIPPED: builds as root, as in CI !!!!!!!!");
        return;
    }
    let reg = TestRegistry::start(Options::default());
    let base = base_image(&reg);
    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!(
            "FROM {base} AS a\nRUN sleep 2 && echo a > /a\n\
             FROM {base} AS b\nRUN sleep 2 && echo b > /b\n\
             FROM {base} AS unused\nRUN echo never > /never && exit 1\n\
             FROM {base}\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n"
        ),
    );
    let mut overlaps = Vec::new();
    for jobs in ["2", "1"] {
        let out = tempfile::tempdir().unwrap();
        let report = out.path().join("report.json");
        let log = kiln_build(ctx.path())
            .oci_layout(&out.path().join("l"))
            .args(reg_args(&reg))
            .args(["--jobs", jobs, "--report"])
            .arg(&report)
            .ok();
        // Both stages reach their first RUN at once: one probe decides
        // (two at once in one directory made one fail and fall back).
        assert_eq!(
            log.matches("isolation: namespaces with an overlay root")
                .count(),
            1,
            "{log}"
        );
        let report = json(&std::fs::read_to_string(&report).unwrap());
        let steps = report["steps"].as_array().unwrap();
        assert!(
            steps.iter().all(|s| s["stage"] != "unused"),
            "the unused stage ran: {report}"
        );
        let span = |stage: &str| {
            let s = steps.iter().find(|s| s["stage"] == stage).unwrap();
            let start = s["started"].as_f64().unwrap();
            (start, start + s["seconds"].as_f64().unwrap())
        };
        let (a, b) = (span("a"), span("b"));
        overlaps.push(a.0 < b.1 && b.0 < a.1);
        let bundle = umoci_unpack(&out.path().join("l"), "latest");
        assert!(
            bundle.path().join("b/rootfs/a").is_file()
                && bundle.path().join("b/rootfs/b").is_file()
        );
    }
    assert_eq!(
        overlaps,
        [true, false],
        "--jobs 2 overlaps, --jobs 1 does not"
    );
}

/// An image holding one layer twice (two COPYs making identical layers, a
/// base image with a repeated layer) is a RUN's root in every isolation:
/// overlayfs refuses a lower directory given twice (ELOOP), so kiln gives
/// each once, where it is highest. The image keeps both layers in order.
#[test]
fn a_repeated_layer_is_a_runs_root_in_every_isolation() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    // A base image whose two top layers are the same layer.
    let repeated = tempfile::tempdir().unwrap();
    write(&repeated.path().join("foo"), "foo\n");
    write(
        &repeated.path().join("Dockerfile"),
        &format!("FROM {base}\nCOPY foo /foo\nCOPY foo /foo\n"),
    );
    let repeated_base = format!("{}/base/repeated:1", reg.addr);
    build(repeated.path(), &repeated_base, &reg_args(&reg));
    let config = json(&run_ok(tool("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--config",
        "--raw",
        &format!("docker://{repeated_base}"),
    ])));
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap().clone();
    let n = diff_ids.len();
    assert!(n >= 3 && diff_ids[n - 1] == diff_ids[n - 2], "{diff_ids:?}");

    let (work, ctx) = context_open_to_nobody(&format!(
        "FROM {repeated_base}\n\
         RUN cat /foo > /from-base\n\
         COPY foo /bar\n\
         RUN echo hi > /file\n\
         COPY foo /bar\n\
         RUN echo \"$HOME\" > /home-seen && cat /foo /bar /file > /all\n"
    ));
    write(&ctx.join("foo"), "foo\n");
    chmod(&ctx.join("foo"), 0o644);
    for isolation in ISOLATIONS {
        let out = open_dir(&work.path().join(format!("out-{isolation}")));
        kiln_build_isolated(isolation, &ctx, work.path())
            .oci_layout(&out.join("l"))
            .args(reg_args(&reg))
            .ok();
        let bundle = umoci_unpack(&out.join("l"), "latest");
        let read = |p: &str| {
            std::fs::read_to_string(bundle.path().join("b/rootfs").join(p))
                .unwrap_or_else(|e| panic!("{isolation} {p}: {e}"))
        };
        assert_eq!(read("from-base"), "foo\n", "{isolation}");
        assert_eq!(read("home-seen"), "/root\n", "{isolation}");
        assert_eq!(read("all"), "foo\nfoo\nhi\n", "{isolation}");
        // Both COPY layers stay, in order (a diff_id may repeat).
        let config = skopeo_inspect(&format!("oci:{}:latest", out.join("l").display()), true);
        let ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        let m = ids.len();
        assert_eq!(m, n + 5, "{isolation}: {ids:?}");
        assert_eq!(
            ids[n - 1],
            ids[n - 2],
            "{isolation}: the base's repeated layer"
        );
        assert_eq!(ids[n + 1], ids[n + 3], "{isolation}: the two COPY layers");
    }
}

/// A RUN's layer holds what the step changed, not the folder kiln put
/// /etc/resolv.conf and a mount target in: a base whose /etc has no
/// resolv.conf, made long ago (its mtime far from the build's), gets the
/// same one-file layer in every isolation. (It used to hold `etc/` or not
/// as the clock's second fell, and the image's digest with it.)
#[test]
fn a_runs_layer_holds_no_folder_only_kiln_touched() {
    let base = tempfile::tempdir().unwrap();
    let rootfs = base.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::create_dir_all(rootfs.join("opt")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    write(
        &rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    );
    let (work, ctx) = context_open_to_nobody(
        "FROM scratch\nADD rootfs.tar /\n\
         RUN --mount=type=tmpfs,target=/opt/scratch echo made > /made\n",
    );
    run_ok(
        std::process::Command::new("tar")
            .args([
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mtime=@1000000000",
                "-C",
            ])
            .arg(&rootfs)
            .arg("-cf")
            .arg(ctx.join("rootfs.tar"))
            .arg("."),
    );
    chmod(&ctx.join("rootfs.tar"), 0o644);
    for isolation in ISOLATIONS {
        let out = open_dir(&work.path().join(format!("out-{isolation}")));
        kiln_build_isolated(isolation, &ctx, work.path())
            .oci_layout(&out.join("l"))
            .ok();
        let manifest = layout_top(&out.join("l"));
        let layers = manifest["layers"].as_array().unwrap();
        let digest = layers[layers.len() - 1]["digest"].as_str().unwrap();
        let last = layout_blob_path(&out.join("l"), digest);
        let listing = run_ok(std::process::Command::new("tar").arg("-tzf").arg(&last));
        let entries: Vec<&str> = listing.lines().collect();
        assert!(entries.contains(&"made"), "{isolation}: {entries:?}");
        for touched in ["etc/", "opt/"] {
            assert!(
                !entries.contains(&touched),
                "{isolation}: the RUN's layer holds {touched}: {entries:?}"
            );
        }
    }
}
