//! kiln's own image in the Kubernetes-pod case: a default `docker run` (no
//! --privileged, no added capabilities, so no user namespaces or mounts),
//! where kiln builds in place with the container's own /proc and /dev.

use crate::common::*;
use crate::debian::debian_base_context;
use crate::registry::{build, reg_args};
use crate::support::{Options, TestRegistry};
use std::path::Path;

/// A Debian package with one file, and a `[trusted=yes]` file repository
/// holding it.
fn local_repository(dir: &Path) {
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/share/kiln-hello")).unwrap();
    write(
        &pkg.join("DEBIAN/control"),
        "Package: kiln-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: kiln tests <tests@kiln.invalid>\nDescription: a file for kiln's pod test\n",
    );
    write(
        &pkg.join("usr/share/kiln-hello/hello.txt"),
        "hello from a package\n",
    );
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let deb = repo.join("kiln-hello_1.0_all.deb");
    run_ok(
        tool("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&pkg)
            .arg(&deb),
    );
    apt_packages_index(&repo);
    std::fs::remove_dir_all(&pkg).unwrap();
}

const POD_DOCKERFILE: &str = r#"FROM {base}
COPY repo /repo
COPY not-kiln /kiln/bin/kiln
RUN head -1 /proc/self/status > /status && echo quiet > /dev/null \
 && echo "deb [trusted=yes] file:/repo ./" > /etc/apt/sources.list.d/local.list \
 && apt-get -q update -o Dir::Etc::SourceList=/etc/apt/sources.list.d/local.list -o Dir::Etc::SourceParts=- > /dev/null \
 && apt-get -q install -y --no-install-recommends kiln-hello -o Dir::Etc::SourceList=/etc/apt/sources.list.d/local.list -o Dir::Etc::SourceParts=- > /dev/null
"#;

/// What apt and dpkg leave that differs from run to run.
fn without_apt_state(
    fs: &std::collections::BTreeMap<String, FileInfo>,
) -> std::collections::BTreeMap<String, FileInfo> {
    fs.iter()
        .filter(|(p, _)| {
            !["var/cache/", "var/lib/apt/", "var/log/", "var/lib/dpkg/"]
                .iter()
                .any(|d| p.starts_with(d))
        })
        .map(|(p, i)| (p.clone(), i.clone()))
        .collect()
}

#[test]
fn kilns_image_builds_in_place_in_a_default_container() {
    let Some(_) = docker() else { return };
    if !is_root() {
        eprintln!("!!!!!!!! SKIPPED: debootstrap needs root !!!!!!!!");
        return;
    }
    let reg = TestRegistry::start(Options::default());
    let base_ctx = debian_base_context("CMD [\"bash\"]\n");
    let base = format!("{}/debian/minbase:pod", reg.addr);
    build(base_ctx.path(), &base, &reg_args(&reg));

    let work = tempfile::tempdir().unwrap();
    let image_tar = work.path().join("kiln-image.tar");
    let tag = "kiln-e2e/kiln-image:pod";
    run_ok(
        std::process::Command::new(repo_root().join("deploy/build-image.sh"))
            .arg(&image_tar)
            .arg(tag),
    );
    run_ok(docker().unwrap().arg("load").arg("-i").arg(&image_tar));

    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    local_repository(&ctx);
    // A COPY aimed at the builder's own binary (osscontainertools/kaniko
    // #586): it belongs in the image, never on the builder's disk.
    write(&ctx.join("not-kiln"), "#!/bin/sh\necho replaced\n");
    write(
        &ctx.join("Dockerfile"),
        &POD_DOCKERFILE.replace("{base}", &base),
    );
    let out = work.path().join("out");
    let volume = work.path().join("volume");
    for d in [&out, &volume] {
        std::fs::create_dir_all(d).unwrap();
    }
    write(&volume.join("mounted.txt"), "a volume's file\n");
    let dest = format!("{}/pod/in-place:1", reg.addr);
    let name = format!("kiln-e2e-in-place-{}", std::process::id());
    let run = |isolation: &str, container: &str, tar: &str| {
        docker()
            .unwrap()
            .args(["run", "--name", container, "--network", "host"])
            .arg("-v")
            .arg(format!("{}:/workspace", ctx.display()))
            .arg("-v")
            .arg(format!("{}:/out", out.display()))
            .arg("-v")
            .arg(format!("{}:/data", volume.display()))
            .args([tag, "--context", "/workspace", "--destination", &dest])
            .args(["--insecure-registry", &reg.addr, "--tar-path", tar])
            .args(["--isolation", isolation, "-v", "debug"])
            .args(["--sbom", "--sbom-output", &format!("/out/sbom-{isolation}")])
            .output()
            .unwrap()
    };
    let built = run("auto", &name, "/out/kiln.tar");
    let diff = docker().unwrap().args(["diff", &name]).output().unwrap();
    let _ = docker().unwrap().args(["rm", "-f", &name]).output();
    let log = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{log}");
    assert!(
        log.contains("isolation: in-place"),
        "auto picks in-place in kiln's image: {log}"
    );
    // Snapshots here read what the step touched (inotify), not the root.
    assert!(log.contains("changes from inotify"), "{log}");
    // The SBOM, scanned in place: the package the RUN installed with apt.
    let sbom = std::fs::read_to_string(out.join("sbom-auto/sbom.spdx.json")).unwrap();
    assert!(
        sbom.contains("pkg:deb/debian/kiln-hello@"),
        "the SBOM lacks kiln-hello: {sbom}"
    );
    // The container's root is now the built image's; kiln's own files stay.
    let diff = String::from_utf8_lossy(&diff.stdout);
    assert!(
        !diff
            .lines()
            .any(|l| l.starts_with("D /kiln") || l == "C /kiln/bin/kiln"),
        "kiln's files were removed or replaced: {diff}"
    );

    // The chroot mode in the same container: builds, or says what it lacks.
    let chroot_name = format!("{name}-chroot");
    let chrooted = run("chroot", &chroot_name, "/out/chroot.tar");
    let _ = docker().unwrap().args(["rm", "-f", &chroot_name]).output();
    if !chrooted.status.success() {
        let err = String::from_utf8_lossy(&chrooted.stderr);
        let last = err
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect::<Vec<_>>();
        assert!(
            last.len() == 1
                && last[0].contains("mounts are not used in chroot mode")
                && last[0].contains("--isolation in-place"),
            "{err}"
        );
    }

    // Several stages in place: the root is cleared for the second stage,
    // and what the first one made is still there for its COPY --from.
    let multi = work.path().join("multi");
    std::fs::create_dir_all(&multi).unwrap();
    write(
        &multi.join("Dockerfile"),
        &format!(
            "FROM {base} AS first\nRUN echo made-in-first > /made\n\
             FROM {base}\nRUN test ! -e /made && echo second > /second\n\
             COPY --from=first /made /from-first\nRUN cat /from-first /second > /both\n"
        ),
    );
    let multi_dest = format!("{}/pod/multi:1", reg.addr);
    let multi_name = format!("{name}-multi");
    let o = docker()
        .unwrap()
        .args(["run", "--rm", "--name", &multi_name, "--network", "host"])
        .arg("-v")
        .arg(format!("{}:/workspace", multi.display()))
        .args([tag, "--context", "/workspace", "--destination", &multi_dest])
        .args(["--insecure-registry", &reg.addr])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let layout = work.path().join("multi-layout");
    run_ok(tool("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{multi_dest}"),
        &format!("oci:{}:latest", layout.display()),
    ]));
    let bundle = umoci_unpack(&layout, "latest");
    assert_eq!(
        std::fs::read_to_string(bundle.path().join("b/rootfs/both")).unwrap(),
        "made-in-first\nsecond\n"
    );

    hostile_steps_leave_kiln_whole(&reg, &base, tag, work.path());
    inherited_descriptors_stay_out_in_place(&reg, &base, tag, work.path());
    let _ = docker().unwrap().args(["rmi", "-f", tag]).output();

    let docker_tar = work.path().join("docker.tar");
    if !docker_buildkit_save(&ctx, "kiln-e2e/pod:docker", &[], &docker_tar) {
        return;
    }
    let (kfs, _) = docker_archive_fs(&out.join("kiln.tar"));
    let (dfs, _) = docker_archive_fs(&docker_tar);
    assert_eq!(
        kfs.get("usr/share/kiln-hello/hello.txt").map(|i| i.kind),
        Some('f'),
        "the package was installed"
    );
    assert_eq!(
        kfs.get("kiln/bin/kiln").map(|i| i.kind),
        Some('f'),
        "the COPY's file is in the image"
    );
    for gone in [
        "kiln/state",
        "kiln/bin/busybox",
        "workspace/Dockerfile",
        "data/mounted.txt",
        "out",
    ] {
        assert!(!kfs.contains_key(gone), "{gone} is in the image");
    }
    let diffs = differences(
        &without_times(&without_apt_state(&kfs), false),
        &without_times(&without_apt_state(&dfs), false),
        ("kiln", "docker"),
    );
    assert!(
        diffs.is_empty(),
        "file systems differ:\n{}",
        diffs.join("\n")
    );
}

/// In kiln's image, a `COPY --from` of an image carrying its own
/// /kiln/bin/kiln and a RUN that replaces or overwrites kiln's files
/// (osscontainertools/kaniko #586, #587) change nothing of kiln: the
/// COPY's files go into the image only, the RUN's changes are put back
/// with a warning, and the next RUN is run by the real kiln.
fn hostile_steps_leave_kiln_whole(reg: &TestRegistry, base: &str, tag: &str, work: &Path) {
    let fake = "#!/bin/sh\necho fake > /fake-kiln-ran\n";
    let hostile_ctx = work.join("hostile-image");
    write(&hostile_ctx.join("kiln/bin/kiln"), fake);
    write(&hostile_ctx.join("kiln/bin/busybox"), fake);
    write(
        &hostile_ctx.join("Dockerfile"),
        "FROM scratch\nCOPY kiln/ /kiln/\n",
    );
    let hostile_image = format!("{}/pod/hostile:1", reg.addr);
    build(&hostile_ctx, &hostile_image, &reg_args(reg));

    let ctx = work.join("hostile");
    write(
        &ctx.join("Dockerfile"),
        &format!(
            "FROM {base}\nCOPY --from={hostile_image} /kiln /kiln\n\
             RUN printf '#!/bin/sh\\necho fake > /fake-kiln-ran\\n' > /tmp/k && chmod +x /tmp/k \
             && mv /tmp/k /kiln/bin/kiln && echo overwritten > /kiln/bin/busybox\n\
             RUN test ! -e /fake-kiln-ran && echo real > /after\n"
        ),
    );
    let name = format!("kiln-e2e-hostile-{}", std::process::id());
    let o = docker()
        .unwrap()
        .args(["run", "--name", &name, "--network", "host"])
        .arg("-v")
        .arg(format!("{}:/workspace", ctx.display()))
        .args([tag, "--context", "/workspace", "--no-push"])
        .args([
            "--tar-path",
            "/tmp/hostile.tar",
            "--insecure-registry",
            &reg.addr,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let copied = |from: &str, to: &Path| {
        run_ok(
            docker()
                .unwrap()
                .arg("cp")
                .arg(format!("{name}:{from}"))
                .arg(to),
        );
    };
    let after = work.join("after");
    std::fs::create_dir_all(&after).unwrap();
    if o.status.success() {
        copied("/tmp/hostile.tar", &after.join("hostile.tar"));
    }
    copied("/kiln/bin/kiln", &after.join("kiln"));
    copied("/kiln/bin/busybox", &after.join("busybox"));
    let _ = docker().unwrap().args(["rm", "-f", &name]).output();
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("changed kiln's own file(s) /kiln/bin/kiln, /kiln/bin/busybox")
            || err.contains("changed kiln's own file(s) /kiln/bin/busybox, /kiln/bin/kiln"),
        "{err}"
    );
    // kiln's files in the container are the image's own.
    let built = repo_root().join("target/static/x86_64-unknown-linux-gnu/release/kiln");
    assert!(std::fs::read(after.join("kiln")).unwrap() == std::fs::read(built).unwrap());
    assert!(
        std::fs::read(after.join("busybox")).unwrap() == std::fs::read("/bin/busybox").unwrap()
    );
    // The image has what the COPY brought, and what the real kiln ran.
    let (fs, _) = docker_archive_fs(&after.join("hostile.tar"));
    assert_eq!(fs.get("after").map(|i| i.kind), Some('f'));
    assert!(!fs.contains_key("fake-kiln-ran"));
    for p in ["kiln/bin/kiln", "kiln/bin/busybox"] {
        assert_eq!(fs.get(p).map(|i| i.kind), Some('f'), "{p}");
    }
}

/// In place, as in the other isolations (`escapes::a_step_inherits_no_
/// descriptor_of_kilns_or_its_parents`): a descriptor the job's shell left
/// open to a file (`exec 7>>...`) never reaches a step, which sees only
/// its standard input, output and error.
fn inherited_descriptors_stay_out_in_place(reg: &TestRegistry, base: &str, tag: &str, work: &Path) {
    let ctx = work.join("descriptors");
    let data = work.join("descriptors-data");
    std::fs::create_dir_all(&data).unwrap();
    write(&data.join("host.txt"), "host data\n");
    write(
        &ctx.join("Dockerfile"),
        &format!(
            "FROM {base}\n\
             RUN ls -l /proc/self/fd/ > /fds; \
             if (echo written-by-a-step >&7) 2>/dev/null; then echo open > /fd7; else echo closed > /fd7; fi\n"
        ),
    );
    let o = docker()
        .unwrap()
        .args(["run", "--rm", "--network", "host"])
        .args(["--entrypoint", "/kiln/bin/busybox"])
        .arg("-v")
        .arg(format!("{}:/workspace", ctx.display()))
        .arg("-v")
        .arg(format!("{}:/data", data.display()))
        .args([tag, "sh", "-c"])
        .arg(format!(
            "exec 7>>/data/host.txt && exec /kiln/bin/kiln build --context /workspace \
             --no-push --tar-path /data/built.tar --insecure-registry {}",
            reg.addr
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("isolation: in-place"), "{err}");
    assert_eq!(
        std::fs::read_to_string(data.join("host.txt")).unwrap(),
        "host data\n",
        "a step wrote through the job's descriptor"
    );
    let unpacked = tempfile::tempdir().unwrap();
    let layout = unpacked.path().join("l");
    run_ok(tool("skopeo").args([
        "copy",
        &format!("docker-archive:{}", data.join("built.tar").display()),
        &format!("oci:{}:latest", layout.display()),
    ]));
    let bundle = umoci_unpack(&layout, "latest");
    let read = |p: &str| std::fs::read_to_string(bundle.path().join("b/rootfs").join(p)).unwrap();
    assert_eq!(read("fd7"), "closed\n", "descriptor 7 reached the step");
    let fds = read("fds");
    for line in fds.lines().filter(|l| l.contains(" -> ")) {
        let (name, target) = line.rsplit_once(" -> ").unwrap();
        let fd: u32 = name.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(
            fd <= 2 || (target.starts_with("/proc/") && target.ends_with("/fd")),
            "in place: a descriptor the step did not open: {line}\n{fds}"
        );
    }
}
