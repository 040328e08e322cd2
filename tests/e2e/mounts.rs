//! RUN --mount's `from=`: a cache seeded from a stage, a bind of an image;
//! and what mounts bring in is part of the step's cache key; as root
//! (namespaces, chroot mode) and as uid 65534.

use crate::common::*;
use crate::registry::reg_args;
use crate::run::chroot_registry_and_base;

/// (line, cache) of the RUN steps in a report.
fn run_outcomes(report: &serde_json::Value) -> Vec<(u64, String)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["cache"] == "hit" || s["cache"] == "miss")
        .map(|s| {
            let line = s["line"].as_u64().unwrap();
            (line, s["cache"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn mounts_from_stages_and_images_and_their_inputs_in_the_key() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    write(&ctx.join("data/file"), "one\n");
    write(
        &ctx.join("Dockerfile"),
        &format!(
            "FROM {base} AS seed\n\
             RUN mkdir -p /seed && echo seeded > /seed/s\n\
             FROM {base}\n\
             RUN --mount=type=cache,target=/c,from=seed,source=/seed cat /c/s > /cache-seeded && echo again >> /c/s\n\
             RUN --mount=type=bind,from={base},source=/bin,target=/b test -e /b/busybox && echo ok > /bind-image\n\
             RUN --mount=type=bind,source=data,target=/d cat /d/file > /bound\n"
        ),
    );
    // As uid 65534 too: what it reads and writes must be open to it.
    open_to_nobody(
        &[work.path(), &ctx, &ctx.join("data")],
        &[&ctx.join("Dockerfile"), &ctx.join("data/file")],
    );
    for isolation in ISOLATIONS {
        let state = work.path().join(format!("state-{isolation}"));
        let build = |round: &str| {
            let out = open_dir(&work.path().join(format!("{isolation}-{round}")));
            let report = out.join("report.json");
            kiln_build_isolated(isolation, &ctx, work.path())
                .oci_layout(&out.join("l"))
                .args(reg_args(&reg))
                .args(["--cache", "--cache-repo"])
                .arg(format!("{}/mounts/cache-{isolation}", reg.addr))
                .arg("--kiln-dir")
                .arg(&state)
                .arg("--report")
                .arg(&report)
                .ok();
            let bundle = umoci_unpack(&out.join("l"), "latest");
            let read = |p: &str| {
                std::fs::read_to_string(bundle.path().join("b/rootfs").join(p))
                    .unwrap_or_else(|e| panic!("{isolation} {p}: {e}"))
            };
            let files = (read("cache-seeded"), read("bind-image"), read("bound"));
            let report = json(&std::fs::read_to_string(report).unwrap());
            (files, run_outcomes(&report))
        };
        let (files, first) = build("first");
        assert_eq!(
            files,
            ("seeded\n".into(), "ok\n".into(), "one\n".into()),
            "{isolation}"
        );
        assert!(first.iter().all(|(_, c)| c == "miss"), "{first:?}");
        // The bound context file changed: that RUN misses, the rest hit.
        write(&ctx.join("data/file"), "two\n");
        let (files, second) = build("second");
        assert_eq!(files.2, "two\n", "{isolation}: the bind's step ran again");
        assert_eq!(
            second,
            [
                (2, "hit".to_string()),
                (4, "hit".to_string()),
                (5, "hit".to_string()),
                (6, "miss".to_string())
            ],
            "{isolation}"
        );
        write(&ctx.join("data/file"), "one\n");
    }
}

/// Directories kiln makes only to hold a mount go again when the step
/// leaves them empty, and stay when it put files in them, as BuildKit's
/// mount stubs (`executor/stubs.go`; newer than the reference engine here,
/// so checked against that rule rather than against docker).
#[test]
fn parents_made_for_mounts_stay_only_with_files_in_them() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    let (work, ctx) = context_open_to_nobody(&format!(
        "FROM {base}\n\
         RUN --mount=type=cache,target=/kept/cache --mount=type=tmpfs,target=/empty/deep/tmp \
         echo made > /kept/file && ls /empty/deep/tmp\n"
    ));
    for isolation in ISOLATIONS {
        let bundle = build_isolated_and_unpack(isolation, &ctx, work.path(), &reg_args(&reg));
        let root = bundle.path().join("b/rootfs");
        assert_eq!(
            std::fs::read_to_string(root.join("kept/file")).unwrap(),
            "made\n",
            "{isolation}"
        );
        for gone in ["kept/cache", "empty"] {
            assert!(
                !root.join(gone).exists(),
                "{isolation}: /{gone} is in the image"
            );
        }
    }
}

/// A cache seeded from a directory deep in another stage, and a bind of
/// one (`source=/subdir/subdir2,from=builder`): the directories leading
/// to the source are written with it (BuildKit seeds the cache from it
/// the first time the id is used), in every isolation.
#[test]
fn mounts_from_a_stage_directory_below_the_root() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    for isolation in ISOLATIONS {
        let (work, ctx) = context_open_to_nobody(&format!(
            "FROM {base} AS builder\n\
             RUN mkdir -p /subdir/subdir2 && echo hello2 > /subdir/subdir2/hello2\n\
             FROM {base}\n\
             RUN --mount=type=cache,id=nested-{isolation}-{pid},source=/subdir/subdir2,from=builder,target=/test \
             cat /test/hello2 > /seen-cache\n\
             RUN --mount=type=bind,source=/subdir/subdir2,from=builder,target=/b cat /b/hello2 > /seen-bind\n",
            pid = std::process::id()
        ));
        let bundle = build_isolated_and_unpack(isolation, &ctx, work.path(), &reg_args(&reg));
        let root = bundle.path().join("b/rootfs");
        for f in ["seen-cache", "seen-bind"] {
            assert_eq!(
                std::fs::read_to_string(root.join(f)).unwrap(),
                "hello2\n",
                "{isolation}: {f}"
            );
        }
    }
}
