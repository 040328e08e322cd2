//! RUN on a real Debian base (`debootstrap --variant=minbase`, pushed to
//! the test registry): as uid 65534 in user namespaces and as root in
//! chroot mode; both images unpacked and compared file by file.

use crate::common::*;
use crate::registry::{build, reg_args};
use crate::support::{Options, TestRegistry};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tar of a minbase bookworm root, made once and kept in the target dir.
pub(crate) fn debian_rootfs_tar() -> PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-bookworm-minbase.tar");
    // Tests that want it at once: one makes it, the others wait for it.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _making = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    if cache.is_file() {
        return cache;
    }
    let found = Command::new("sh")
        .args(["-c", "command -v debootstrap"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "debootstrap is not installed: the README's test command installs it"
    );
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = dir.path().join("root");
    run_ok(
        Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(&root)
            .arg("http://deb.debian.org/debian"),
    );
    let tmp = cache.with_extension("tmp");
    run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-C"])
            .arg(&root)
            .arg("-cf")
            .arg(&tmp)
            .arg("."),
    );
    std::fs::rename(&tmp, &cache).unwrap();
    cache
}

/// A context that makes the Debian base: its root file system ADDed to
/// scratch, then `rest` of the Dockerfile.
pub(crate) fn debian_base_context(rest: &str) -> tempfile::TempDir {
    let tar = debian_rootfs_tar();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::hard_link(&tar, ctx.path().join("rootfs.tar"))
        .or_else(|_| std::fs::copy(&tar, ctx.path().join("rootfs.tar")).map(|_| ()))
        .unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM scratch\nADD rootfs.tar /\n{rest}"),
    );
    ctx
}

fn app_dockerfile(base: &str, with_setcap: bool) -> String {
    let (copy, setcap) = if with_setcap {
        (
            "COPY setcap /usr/local/sbin/setcap\n",
            " && setcap cap_net_raw+ep /opt/app/tool",
        )
    } else {
        ("", "")
    };
    format!(
        "FROM {base}\n{copy}\
         ARG FLAVOUR=plain\n\
         RUN useradd -m -u 1234 builder && mkdir -p /opt/app && chown builder:builder /opt/app \\\n \
         && rm -rf /usr/share/doc /usr/share/man && echo $FLAVOUR > /opt/app/flavour \\\n \
         && cp /bin/true /opt/app/tool && chmod u+s /opt/app/tool{setcap} \\\n \
         && ln -s /opt/app/flavour /opt/app/link && ln /opt/app/flavour /opt/app/hard\n\
         USER builder\n\
         RUN whoami > /opt/app/me && echo changed >> /home/builder/.profile\n\
         USER root\n\
         RUN sed -i 's/^builder:/builder2:/' /etc/passwd && rm /etc/motd\n"
    )
}

#[test]
fn debian_base_unprivileged_and_chroot_give_the_same_image() {
    if !is_root() {
        eprintln!("!!!!!!!! SKIPPED: debootstrap and the user switch need root !!!!!!!!");
        return;
    }
    ensure_subids();
    let reg = TestRegistry::start(Options::default());
    let base_ctx = debian_base_context("CMD [\"bash\"]\n");
    let base = format!("{}/debian/minbase:bookworm", reg.addr);
    build(base_ctx.path(), &base, &reg_args(&reg));
    // Also where the benchmark workloads expect it.
    build(
        base_ctx.path(),
        &format!("{}/debian:bookworm", reg.addr),
        &reg_args(&reg),
    );

    let work = tempfile::tempdir().unwrap();
    chmod(work.path(), 0o777);
    let ctx = work.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    chmod(&ctx, 0o755);
    let setcap = ["/sbin/setcap", "/usr/sbin/setcap"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file());
    if let Some(s) = setcap {
        std::fs::copy(s, ctx.join("setcap")).unwrap();
        chmod(&ctx.join("setcap"), 0o755);
    } else {
        eprintln!(
            "!!!!!!!! setcap is not installed here: file capabilities are not checked !!!!!!!!"
        );
    }
    write(
        &ctx.join("Dockerfile"),
        &app_dockerfile(&base, setcap.is_some()),
    );
    chmod(&ctx.join("Dockerfile"), 0o644);
    let args = |dest: &str| {
        let mut v = reg_args(&reg);
        v.extend([
            "--build-arg".into(),
            "FLAVOUR=debian".into(),
            "-d".into(),
            dest.into(),
        ]);
        v
    };

    let unpriv = format!("{}/debian/app:unprivileged", reg.addr);
    kiln_build_as_nobody(&ctx, work.path())
        .args(args(&unpriv))
        .ok();
    let chrooted = format!("{}/debian/app:chroot", reg.addr);
    let mut a = args(&chrooted);
    a.extend(["--isolation".into(), "chroot".into()]);
    build(&ctx, &chrooted, &a);

    let mut trees = Vec::new();
    let mut keep = Vec::new();
    for reference in [&unpriv, &chrooted] {
        let out = tempfile::tempdir().unwrap();
        let layout = out.path().join("layout");
        run_ok(
            tool("skopeo")
                .args(["copy", "--src-tls-verify=false"])
                .arg(format!("docker://{reference}"))
                .arg(format!("oci:{}:latest", layout.display())),
        );
        let bundle = umoci_unpack(&layout, "latest");
        let root = bundle.path().join("b/rootfs");
        let md = |p: &str| {
            std::fs::symlink_metadata(root.join(p))
                .unwrap_or_else(|e| panic!("{reference}: {p}: {e}"))
        };
        assert_eq!(
            std::fs::read_to_string(root.join("opt/app/flavour")).unwrap(),
            "debian\n"
        );
        assert_eq!((md("opt/app").uid(), md("opt/app").gid()), (1234, 1234));
        assert_eq!(
            (md("home/builder").uid(), md("home/builder").mode() & 0o7777),
            (1234, 0o755)
        );
        assert_eq!(
            std::fs::read_to_string(root.join("opt/app/me")).unwrap(),
            "builder\n"
        );
        assert!(std::fs::read_to_string(root.join("home/builder/.profile"))
            .unwrap()
            .ends_with("changed\n"));
        assert_eq!(
            md("home/builder/.profile").uid(),
            1234,
            "a copy-up keeps its owner"
        );
        assert_eq!(md("opt/app/tool").mode() & 0o7777, 0o4755);
        assert_eq!(md("opt/app/flavour").ino(), md("opt/app/hard").ino());
        assert!(!root.join("usr/share/doc").exists() && !root.join("etc/motd").exists());
        assert!(
            root.join("usr/share/common-licenses").exists(),
            "only what was removed is gone"
        );
        assert!(std::fs::read_to_string(root.join("etc/passwd"))
            .unwrap()
            .contains("builder2:x:1234:1234"));
        if setcap.is_some() {
            let cap = xattr::get(root.join("opt/app/tool"), "security.capability")
                .unwrap()
                .expect("file capability");
            assert_eq!(cap.len(), 20, "a v2 capability");
            assert_eq!(cap[3], 2);
        }
        trees.push(tree_info(&root));
        keep.push((out, bundle));
    }
    // The benchmark's W1 workload builds and pushes as uid 65534 too.
    let w1 = repo_root().join("bench/workloads/W1-small");
    let copy = work.path().join("w1");
    std::fs::create_dir(&copy).unwrap();
    for f in ["Dockerfile", "hello.txt"] {
        std::fs::copy(w1.join(f), copy.join(f)).unwrap();
        chmod(&copy.join(f), 0o644);
    }
    chmod(&copy, 0o755);
    kiln_build_as_nobody(&copy, work.path())
        .arg("--build-arg")
        .arg(format!("REGISTRY={}", reg.addr))
        .arg("-d")
        .arg(format!("{}/bench/w1-small:kiln", reg.addr))
        .args(reg_args(&reg))
        .ok();
    let (a, b) = (&trees[0], &trees[1]);
    let diffs = differences(a, b, ("userns", "chroot"));
    assert!(
        diffs.is_empty(),
        "user-namespace and chroot images differ:\n{}",
        diffs.join("\n")
    );
}

/// The bench's W1 and W4 with `--cache`: an empty machine rebuilds them
/// from the registry cache without running a single RUN, to the same digest.
#[test]
fn bench_workloads_rebuild_from_the_registry_cache() {
    if !is_root() {
        eprintln!("!!!!!!!! SKIPPED: debootstrap needs root !!!!!!!!");
        return;
    }
    let workloads = repo_root().join("bench/workloads");
    let reg = TestRegistry::start(Options::default());
    let base_ctx = debian_base_context(
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
    );
    build(
        base_ctx.path(),
        &format!("{}/debian:bookworm", reg.addr),
        &reg_args(&reg),
    );
    for w in ["W1-small", "W4-multistage"] {
        let ctx = workloads.join(w);
        let mut runs = Vec::new();
        for _ in 0..2 {
            let state = tempfile::tempdir().unwrap();
            let report = state.path().join("report.json");
            let digest = state.path().join("digest");
            kiln_build(&ctx)
                .arg("--build-arg")
                .arg(format!("REGISTRY={}", reg.addr))
                .arg("-d")
                .arg(format!(
                    "{}/bench/{}:cached",
                    reg.addr,
                    w.to_ascii_lowercase()
                ))
                .args(reg_args(&reg))
                .args(["--cache", "--cache-copy-layers", "--reproducible"])
                .arg("--report")
                .arg(&report)
                .arg("--digest-file")
                .arg(&digest)
                .arg("--kiln-dir")
                .arg(state.path().join("kiln"))
                .ok();
            runs.push((
                json(&std::fs::read_to_string(&report).unwrap()),
                std::fs::read_to_string(&digest).unwrap(),
            ));
        }
        let (first, second) = (&runs[0], &runs[1]);
        assert!(
            first.0["totals"]["runs_executed"].as_u64().unwrap() > 0,
            "{w}: {}",
            first.0
        );
        assert_eq!(second.0["totals"]["runs_executed"], 0, "{w}: {}", second.0);
        assert_eq!(second.0["totals"]["misses"], 0, "{w}: {}", second.0);
        assert_eq!(first.1, second.1, "{w}: the same image digest");
    }
}
