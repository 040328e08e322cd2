//! The registry layer cache: warm rebuilds from an empty machine, misses
//! exactly where inputs changed (and explained), no stale layers across
//! stages, expiry, and a cache registry that fails.

use crate::common::*;
use crate::registry::{build, busybox_context, push_busybox_base, reg_args};
use crate::support::{Options, TestRegistry};
use std::path::Path;

const DOCKERFILE: &str = r#"ARG BASE
FROM ${BASE} AS a
COPY a.txt /a.txt
RUN cat /a.txt > /from-a
FROM ${BASE}
ARG V=1
COPY b.txt /b.txt
RUN echo "$V" > /v && cat /b.txt > /copy
COPY --from=a /from-a /from-a
RUN ls / > /listing
"#;

struct Run {
    report: serde_json::Value,
    digest: String,
    log: String,
}

fn cached_build(reg: &TestRegistry, ctx: &Path, base: &str, extra: &[&str]) -> Run {
    let state = tempfile::tempdir().unwrap(); // an empty machine every time
    let report = state.path().join("report.json");
    let digest = state.path().join("digest");
    let log = kiln_build(ctx)
        .arg("-d")
        .arg(format!("{}/app/cached:1", reg.addr))
        .args(reg_args(reg))
        .arg("--build-arg")
        .arg(format!("BASE={base}"))
        .args([
            "--cache",
            "--cache-copy-layers",
            "--explain-cache",
            "--reproducible",
        ])
        .arg("--cache-repo")
        .arg(format!("{}/app/cache", reg.addr))
        .arg("--report")
        .arg(&report)
        .arg("--digest-file")
        .arg(&digest)
        .arg("--kiln-dir")
        .arg(state.path().join("kiln"))
        .args(extra)
        .ok();
    Run {
        report: json(&std::fs::read_to_string(&report).unwrap()),
        digest: std::fs::read_to_string(&digest).unwrap(),
        log,
    }
}

/// (line, cache) of the cached steps.
fn outcome(r: &Run) -> Vec<(u64, String)> {
    r.report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["cache"] == "hit" || s["cache"] == "miss")
        .map(|s| {
            (
                s["line"].as_u64().unwrap(),
                s["cache"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn expect(r: &Run, hits: &[u64], misses: &[u64]) {
    let o = outcome(r);
    for (line, cache) in &o {
        let want = if hits.contains(line) {
            "hit"
        } else if misses.contains(line) {
            "miss"
        } else {
            panic!("line {line} not expected: {o:?}")
        };
        assert_eq!(cache, want, "line {line}: {o:?}\n{}", r.log);
    }
    assert_eq!(o.len(), hits.len() + misses.len(), "{o:?}");
}

#[test]
fn registry_cache_hits_misses_and_explanations() {
    let reg = TestRegistry::start(Options::default());
    let base_ctx = tempfile::tempdir().unwrap();
    busybox_context(base_ctx.path(), "");
    let base = format!("{}/base/busybox-cache:1", reg.addr);
    build(base_ctx.path(), &base, &reg_args(&reg));
    let ctx = tempfile::tempdir().unwrap();
    write(&ctx.path().join("a.txt"), "a1\n");
    write(&ctx.path().join("b.txt"), "b1\n");
    write(&ctx.path().join("Dockerfile"), DOCKERFILE);
    let cached_steps = [3, 4, 7, 8, 9, 10];

    let first = cached_build(&reg, ctx.path(), &base, &[]);
    expect(&first, &[], &cached_steps);
    assert_eq!(first.report["totals"]["runs_executed"], 3);

    // An empty machine, same inputs: every step hits, no RUN executes,
    // the same image digest.
    let second = cached_build(&reg, ctx.path(), &base, &[]);
    expect(&second, &cached_steps, &[]);
    assert_eq!(second.report["totals"]["runs_executed"], 0);
    assert_eq!(second.digest, first.digest);

    // One source file changed: the steps reading it and those after miss.
    write(&ctx.path().join("b.txt"), "b2\n");
    let third = cached_build(&reg, ctx.path(), &base, &[]);
    expect(&third, &[3, 4], &[7, 8, 9, 10]);
    assert!(third.log.contains("file b.txt changed"), "{}", third.log);

    // A build arg only the final stage's RUN sees: earlier steps still hit.
    let fourth = cached_build(&reg, ctx.path(), &base, &["--build-arg", "V=2"]);
    expect(&fourth, &[3, 4, 7], &[8, 9, 10]);
    assert!(fourth.log.contains("build arg V changed"), "{}", fourth.log);

    // A file only stage a reads: a re-runs, the COPY --from misses, and the
    // image never gets the stale layer.
    write(&ctx.path().join("a.txt"), "a2\n");
    let fifth = cached_build(&reg, ctx.path(), &base, &["--build-arg", "V=2"]);
    expect(&fifth, &[7, 8], &[3, 4, 9, 10]);
    assert!(
        fifth.log.contains("the stage it copies from changed"),
        "{}",
        fifth.log
    );
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("l");
    run_ok(
        tool("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/app/cached:1", reg.addr))
            .arg(format!("oci:{}:latest", layout.display())),
    );
    let bundle = umoci_unpack(&layout, "latest");
    assert_eq!(
        std::fs::read_to_string(bundle.path().join("b/rootfs/from-a")).unwrap(),
        "a2\n"
    );

    // Expired entries miss.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let expired = cached_build(
        &reg,
        ctx.path(),
        &base,
        &["--build-arg", "V=2", "--cache-ttl", "1ns"],
    );
    expect(&expired, &[], &cached_steps);

    // A new base image: everything misses.
    busybox_context(base_ctx.path(), "LABEL changed=yes\n");
    build(base_ctx.path(), &base, &reg_args(&reg));
    let rebased = cached_build(&reg, ctx.path(), &base, &["--build-arg", "V=2"]);
    expect(&rebased, &[], &cached_steps);
    assert!(
        rebased.log.contains("base image digest changed"),
        "{}",
        rebased.log
    );
}

#[test]
fn a_failing_cache_registry_degrades_to_an_uncached_build() {
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-nocache", "");
    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM {base}\nRUN echo built > /x\n"),
    );
    let out = tempfile::tempdir().unwrap();
    let log = kiln_build(ctx.path())
        .oci_layout(&out.path().join("l"))
        .args(reg_args(&reg))
        .args([
            "--cache",
            "--cache-repo",
            "127.0.0.1:9/nowhere/cache",
            "--insecure-registry",
            "127.0.0.1:9",
        ])
        .args(["--image-download-retry", "0", "--push-retry", "0"])
        .ok();
    assert!(log.contains("building without it"), "{log}");
    let bundle = umoci_unpack(&out.path().join("l"), "latest");
    assert_eq!(
        std::fs::read_to_string(bundle.path().join("b/rootfs/x")).unwrap(),
        "built\n"
    );
}

/// Air-gapped: `kiln warm` stores the base image in a directory; with the
/// registry gone, a build with `--cache-dir` still has its base.
#[test]
fn warm_cache_dir_serves_base_images_without_a_registry() {
    let cache_dir = tempfile::tempdir().unwrap();
    let base;
    {
        let reg = TestRegistry::start(Options::default());
        let base_ctx = tempfile::tempdir().unwrap();
        busybox_context(base_ctx.path(), "");
        base = format!("{}/base/busybox-warm:1", reg.addr);
        build(base_ctx.path(), &base, &reg_args(&reg));
        kiln_ok(&[
            "warm",
            "--cache-dir",
            cache_dir.path().to_str().unwrap(),
            "-i",
            &base,
            "--insecure-registry",
            &reg.addr,
        ]);
    } // the registry stops here
    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM {base}\nRUN echo offline > /x\n"),
    );
    let out = tempfile::tempdir().unwrap();
    let log = kiln_build(ctx.path())
        .oci_layout(&out.path().join("l"))
        .arg("--cache-dir")
        .arg(cache_dir.path())
        .args(["--image-download-retry", "0"])
        .ok();
    assert!(log.contains("from --cache-dir"), "{log}");
    let bundle = umoci_unpack(&out.path().join("l"), "latest");
    assert_eq!(
        std::fs::read_to_string(bundle.path().join("b/rootfs/x")).unwrap(),
        "offline\n"
    );
    assert!(bundle.path().join("b/rootfs/bin/busybox").is_file());
}

/// The cache in a local OCI layout (`--cache-repo oci:PATH`).
#[test]
fn cache_in_a_local_oci_layout() {
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-ocicache", "");
    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM {base}\nRUN echo cached > /x\nRUN echo again > /y\n"),
    );
    let cache = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    for _ in 0..2 {
        let state = tempfile::tempdir().unwrap();
        let report = state.path().join("r.json");
        kiln_build(ctx.path())
            .oci_layout(&state.path().join("out"))
            .args(reg_args(&reg))
            .arg("--cache")
            .arg("--cache-repo")
            .arg(format!("oci:{}", cache.path().display()))
            .arg("--report")
            .arg(&report)
            .arg("--kiln-dir")
            .arg(state.path().join("kiln"))
            .ok();
        reports.push(json(&std::fs::read_to_string(&report).unwrap()));
    }
    assert_eq!(reports[0]["totals"]["runs_executed"], 2);
    assert_eq!(reports[1]["totals"]["runs_executed"], 0, "{}", reports[1]);
    assert_eq!(reports[1]["totals"]["hits"], 2);
    // The layout names its entries (key and step-slot tags) in index.json.
    let index = json(&std::fs::read_to_string(cache.path().join("index.json")).unwrap());
    assert!(index["manifests"].as_array().unwrap().len() >= 2);
}

/// Without `--cache` the cache is local, in `--kiln-dir`, as docker
/// build's: a second identical build runs no RUN and makes the same image;
/// after a change only the steps from it on run; `--no-cache` (docker) and
/// `--cache=false` (Kaniko) run everything; builds with their own kiln
/// directories share nothing.
#[test]
fn local_cache_by_default() {
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-localcache", "");
    let ctx = tempfile::tempdir().unwrap();
    write(&ctx.path().join("a.txt"), "a\n");
    write(&ctx.path().join("c.txt"), "c1\n");
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM {base}\nCOPY a.txt /a\nRUN cat /a > /b\nCOPY c.txt /c\nRUN cat /c > /d\n"),
    );
    let state = tempfile::tempdir().unwrap();
    let run = |kiln_dir: &Path, extra: &[&str]| {
        let out = tempfile::tempdir().unwrap();
        let report = out.path().join("r.json");
        let digest = out.path().join("digest");
        // Not kiln_build(): it turns the local cache off.
        kiln_test_support::KilnBuild::new(env!("CARGO_BIN_EXE_kiln"), ctx.path())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .oci_layout(&out.path().join("l"))
            .args(reg_args(&reg))
            .arg("--report")
            .arg(&report)
            .arg("--digest-file")
            .arg(&digest)
            .arg("--kiln-dir")
            .arg(kiln_dir)
            .args(extra)
            .ok();
        let report = json(&std::fs::read_to_string(&report).unwrap());
        let runs = report["totals"]["runs_executed"].as_u64().unwrap();
        (runs, std::fs::read_to_string(&digest).unwrap())
    };
    let kiln_dir = state.path().join("kiln");
    let (runs, first) = run(&kiln_dir, &[]);
    assert_eq!(runs, 2);
    let (runs, second) = run(&kiln_dir, &[]);
    assert_eq!(runs, 0, "the second identical build runs nothing");
    assert_eq!(
        second, first,
        "and makes the same image (SOURCE_DATE_EPOCH)"
    );
    write(&ctx.path().join("c.txt"), "c2\n");
    assert_eq!(run(&kiln_dir, &[]).0, 1, "only the RUN after the change");
    assert_eq!(run(&kiln_dir, &["--no-cache"]).0, 2);
    assert_eq!(run(&kiln_dir, &["--cache=false"]).0, 2);
    assert_eq!(run(&state.path().join("other"), &[]).0, 2);
}

/// `--kiln-dir-max-size`: after a build kiln's directory is brought under
/// the limit, least recently used first (the order is unit-tested in
/// kiln-engine's evict module); the next build fetches again what it needs.
#[test]
fn kiln_dir_is_kept_under_its_limit() {
    let reg = TestRegistry::start(Options::default());
    let base = push_busybox_base(&reg, "busybox-evict", "");
    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM {base}\nRUN echo built > /built\n"),
    );
    let state = tempfile::tempdir().unwrap();
    fn bytes_in(p: &Path) -> u64 {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| bytes_in(&e.path()))
                .sum(),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        }
    }
    let size_of = |sub: &str| bytes_in(&state.path().join(sub));
    for (limit, kept) in [("0", true), ("10GiB", true), ("1", false), ("1", false)] {
        let out = tempfile::tempdir().unwrap();
        let log = kiln_build(ctx.path())
            .oci_layout(&out.path().join("l"))
            .args(reg_args(&reg))
            .arg("--kiln-dir")
            .arg(state.path())
            .args(["--kiln-dir-max-size", limit])
            .ok();
        let held = size_of("blobs") + size_of("layers/v3");
        assert_eq!(held > 100_000, kept, "limit {limit}: {held} bytes\n{log}");
        if !kept {
            assert!(log.contains("least recently used"), "{log}");
        }
        let bundle = umoci_unpack(&out.path().join("l"), "latest");
        assert!(bundle.path().join("b/rootfs/built").is_file());
    }
}
