//! Base layers are downloaded only when something reads them: a step that
//! needs the files, or an output that must hold the bytes. A build whose
//! RUN steps all hit the cache, or a push to a registry that has the blob
//! or can mount it, downloads no base layer.

use crate::common::*;
use crate::registry::{push_busybox_base, reg_args};
use crate::support::{Options, TestRegistry};
use std::path::Path;

/// The layer digests of `image` (a registry reference), as skopeo reads
/// its manifest.
fn layers(image: &str) -> Vec<String> {
    let raw = run_ok(tool("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    json(&raw)["Layers"]
        .as_array()
        .expect("skopeo lists the layers")
        .iter()
        .map(|l| l.as_str().expect("a layer digest").to_string())
        .collect()
}

#[test]
fn base_layers_are_fetched_only_when_read() {
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-lazy", "");
    let layer = layers(&base)[0].clone();
    let gets = || reg.requests("GET", &format!("/blobs/{layer}"));

    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM {base}\nRUN echo built > /built\nENV A=1\n"),
    );
    let cached = |dest: &str| {
        let state = tempfile::tempdir().unwrap(); // an empty machine
        kiln_build(ctx.path())
            .args(["-d", dest])
            .args(reg_args(&reg))
            .args(["--cache", "--cache-repo"])
            .arg(format!("{}/app/lazy-cache", reg.addr))
            .arg("--kiln-dir")
            .arg(state.path())
            .ok()
    };
    let before = gets();
    cached(&format!("{}/app/lazy:1", reg.addr));
    assert_eq!(gets(), before + 1, "the RUN reads the base: one download");

    // The RUN hits the cache on an empty machine; the push finds the base
    // layer in the repository (or mounts it): no base layer is read.
    let log = cached(&format!("{}/app/lazy:2", reg.addr));
    assert!(log.contains("cache hit"), "{log}");
    let log = cached(&format!("{}/other/lazy:1", reg.addr));
    assert_eq!(gets(), before + 1, "no base layer was downloaded:\n{log}");

    // An OCI layout must hold the bytes: they are fetched, and the image
    // is whole (umoci unpacks it).
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    kiln_build(ctx.path())
        .oci_layout(&out.path().join("l"))
        .args(reg_args(&reg))
        .args(["--cache", "--cache-repo"])
        .arg(format!("{}/app/lazy-cache", reg.addr))
        .arg("--kiln-dir")
        .arg(state.path())
        .ok();
    assert_eq!(gets(), before + 2);
    let bundle = umoci_unpack(&out.path().join("l"), "latest");
    let root = bundle.path().join("b/rootfs");
    assert_eq!(
        std::fs::read_to_string(root.join("built")).unwrap(),
        "built\n"
    );
    assert!(root.join("bin/busybox").is_file());
}

/// A COPY or WORKDIR needs only what the stage's files are: on an empty
/// machine whose RUN steps hit the cache, the base layer is described by
/// its index in the cache (stored when a build first extracted it), not
/// downloaded; the image is the one a full build makes. A RUN after them
/// reads the files: then the layer is fetched.
#[test]
fn copy_after_cached_runs_reads_the_base_index_not_the_base() {
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-described", "");
    let layer = layers(&base)[0].clone();
    let gets = || reg.requests("GET", &format!("/blobs/{layer}"));
    let layers_of = |image: &str| layers(&format!("{}/{image}", reg.addr));

    let ctx = tempfile::tempdir().unwrap();
    let dockerfile = format!(
        "FROM {base}\nRUN echo built > /built\nCOPY app.txt /etc/app.txt\nWORKDIR /etc/conf.d\n"
    );
    write(&ctx.path().join("Dockerfile"), &dockerfile);
    write(&ctx.path().join("app.txt"), "version 1\n");
    let build = |image: &str, cache: bool| {
        let state = tempfile::tempdir().unwrap(); // an empty machine
        let report = state.path().join("report.json");
        let mut b = kiln_build(ctx.path())
            .args(["-d", &format!("{}/{image}", reg.addr), "--reproducible"])
            .args(reg_args(&reg))
            .arg("--report")
            .arg(&report)
            .arg("--kiln-dir")
            .arg(state.path());
        if cache {
            b = b
                .args(["--cache", "--cache-repo"])
                .arg(format!("{}/app/described-cache", reg.addr));
        }
        let log = b.ok();
        let report = json(&std::fs::read_to_string(&report).unwrap());
        (log, report["totals"]["runs_executed"].as_u64().unwrap())
    };

    let before = gets();
    build("app/described:1", true);
    assert_eq!(gets(), before + 1, "the RUN reads the base: one download");

    write(&ctx.path().join("app.txt"), "version 2\n");
    let (log, runs) = build("app/described:2", true);
    assert_eq!(runs, 0, "{log}");
    assert_eq!(
        gets(),
        before + 1,
        "the COPY and WORKDIR read the base's index, not the base:\n{log}"
    );
    // The same layers as a build that extracted the base: the COPY's and
    // WORKDIR's parent directories took the base's metadata from the index.
    build("app/described:full", false);
    assert_eq!(gets(), before + 2);
    let described = layers_of("app/described:2");
    assert_eq!(described.len(), 4, "{described:?}");
    assert_eq!(described, layers_of("app/described:full"));

    // A RUN after the COPY reads the files: the base is fetched then, and
    // the RUN sees it and the copied file.
    write(
        &ctx.path().join("Dockerfile"),
        &format!("{dockerfile}RUN cat /etc/app.txt > /seen && test -x /bin/busybox\n"),
    );
    let (log, runs) = build("app/described:3", true);
    assert_eq!(runs, 1, "{log}");
    assert_eq!(gets(), before + 3, "{log}");
}

/// A base layer is extracted as it downloads, the blob stored and checked
/// as it passes. A download cut off midway is fetched again (with the
/// pull's retries) and the build goes on; a blob whose bytes arrive
/// changed fails the build, and neither the blob nor its files are kept.
#[test]
fn a_base_layer_cut_or_changed_on_the_way_is_never_kept() {
    use crate::support::{Fault, FaultProxy};
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-stream", "");
    let layer = layers(&base)[0].clone();
    let hex = layer.trim_start_matches("sha256:").to_string();
    let ctx = tempfile::tempdir().unwrap();
    let build = |proxy: &FaultProxy, state: &Path| {
        let from = base.replace(&reg.addr, &proxy.addr);
        write(
            &ctx.path().join("Dockerfile"),
            &format!("FROM {from}\nRUN test -x /bin/busybox && echo read > /read\n"),
        );
        kiln_build(ctx.path())
            .args(["--insecure-registry", &proxy.addr])
            .arg("--kiln-dir")
            .arg(state)
    };
    // Whatever the layer store and the blob store hold, and any leftover.
    let kept = |state: &Path| -> Vec<String> {
        let mut names = Vec::new();
        for dir in ["layers/v3", "blobs/sha256"] {
            for e in std::fs::read_dir(state.join(dir))
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".lock") {
                    names.push(format!("{dir}/{name}"));
                }
            }
        }
        names
    };

    for fault in [Fault::ResetMidBody, Fault::TruncatedBody] {
        let proxy = FaultProxy::start(&reg.addr, &format!("/blobs/{layer}"), fault, 1);
        let state = tempfile::tempdir().unwrap();
        let log = build(&proxy, state.path())
            .args([
                "--tar-path",
                &state.path().join("out.tar").to_string_lossy(),
            ])
            .ok();
        assert_eq!(
            proxy
                .faults_served
                .load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{fault:?}: the cut download was the first\n{log}"
        );
        let kept = kept(state.path());
        assert!(
            kept.contains(&format!("blobs/sha256/{hex}")),
            "{fault:?}: {kept:?}"
        );
        assert!(
            !kept.iter().any(|k| k.contains(".tmp-")),
            "{fault:?}: nothing half-made is left: {kept:?}"
        );
    }

    let proxy = FaultProxy::start(
        &reg.addr,
        &format!("/blobs/{layer}"),
        Fault::CorruptedBody,
        100,
    );
    // Kept for the tar, or only counted for a push to its own registry
    // (the diff_id checks what it inflates to): refused either way.
    let pushed =
        |b: kiln_test_support::KilnBuild| b.args(["-d", &format!("{}/app/changed:1", proxy.addr)]);
    for output in [None, Some(pushed)] {
        let state = tempfile::tempdir().unwrap();
        let b = build(&proxy, state.path());
        let b = match output {
            Some(push) => push(b),
            None => b.args([
                "--tar-path",
                &state.path().join("out.tar").to_string_lossy(),
            ]),
        };
        let (_, err) = b.fails();
        assert!(err.contains(&layer) && err.contains("sha256:"), "{err}");
        let kept = kept(state.path());
        assert!(
            !kept
                .iter()
                .any(|k| k.starts_with("layers/v3/") || k.contains(&hex) || k.contains(".tmp-")),
            "neither the changed blob nor its files are kept: {kept:?}"
        );
    }
}

/// A base layer downloaded into its extraction keeps its blob only when an
/// output needs the bytes: a push to the registry the base came from finds
/// the blob there, so nothing is stored (a base's size less to write); a
/// push to another registry, or a tar, stores it as it passes.
#[test]
fn a_base_blob_is_stored_only_when_an_output_needs_it() {
    let reg = TestRegistry::start(Options::default());
    let other = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-kept", "");
    let layer = layers(&base)[0].clone();
    let hex = layer.trim_start_matches("sha256:").to_string();
    let gets = || reg.requests("GET", &format!("/blobs/{layer}"));
    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!(
            "FROM {base} AS other\nRUN test -x /bin/busybox && echo other > /other\n\
             FROM {base}\nCOPY --from=other /other /other\n\
             RUN test -x /bin/busybox && echo read > /read\n"
        ),
    );
    let build = |state: &Path, output: &[String]| {
        kiln_build(ctx.path())
            .args(output)
            .args(reg_args(&reg))
            .args(reg_args(&other))
            .arg("--kiln-dir")
            .arg(state)
            .ok()
    };
    let stored = |state: &Path| state.join("blobs/sha256").join(&hex).is_file();
    let base_layer_of = |image: &str| layers(image)[0].clone();

    // Pushed where the base is: two stages' RUNs read the base, downloaded
    // once and its blob not kept.
    let state = tempfile::tempdir().unwrap();
    let here = format!("{}/app/kept:1", reg.addr);
    let log = build(
        state.path(),
        &["-d".into(), here.clone(), "-v".into(), "debug".into()],
    );
    assert!(log.contains("not stored"), "{log}");
    assert!(!stored(state.path()));
    assert_eq!(gets(), 1);
    assert_eq!(base_layer_of(&here), layer);

    // Pushed to another registry: the blob is kept as it downloads and
    // uploaded from there, not downloaded again.
    let state = tempfile::tempdir().unwrap();
    let there = format!("{}/app/kept:2", other.addr);
    build(state.path(), &["-d".into(), there.clone()]);
    assert!(stored(state.path()));
    assert_eq!(gets(), 2);
    assert_eq!(base_layer_of(&there), layer);

    // A docker archive holds every layer: kept.
    let state = tempfile::tempdir().unwrap();
    let tar = state.path().join("out.tar");
    build(
        state.path(),
        &["--tar-path".into(), tar.display().to_string()],
    );
    assert!(stored(state.path()));
    assert_eq!(gets(), 3);
}
