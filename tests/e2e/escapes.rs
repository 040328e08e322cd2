//! Escape attempts: a build may change nothing outside its own
//! directories, whatever its Dockerfile and base image do. Each test
//! keeps a sentinel outside and checks it (content and listing) after.

use crate::common::*;
use crate::registry::reg_args;
use crate::run::chroot_registry_and_base;
use std::path::Path;

/// A host folder with a file, and a check that both are as they were.
struct Sentinel {
    dir: tempfile::TempDir,
}

impl Sentinel {
    fn new() -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["cache", "bind", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            write(&dir.path().join(sub).join("precious"), "host data\n");
        }
        Sentinel { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn assert_untouched(&self, what: &str) {
        let mut listing: Vec<String> = walk(self.path());
        listing.sort();
        assert_eq!(
            listing,
            [
                "bind",
                "bind/precious",
                "cache",
                "cache/precious",
                "tmp",
                "tmp/precious"
            ],
            "{what}: the host folder changed"
        );
        for sub in ["cache", "bind", "tmp"] {
            assert_eq!(
                std::fs::read_to_string(self.path().join(sub).join("precious")).unwrap(),
                "host data\n",
                "{what}"
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()).into_iter().map(|n| format!("{name}/{n}")));
        }
        out.push(name);
    }
    out
}

/// A symlink in the image (made by the base or an earlier RUN, absolute
/// or through `..`) on the way to a mount's target resolves inside the
/// root, as it would for the step: never to the host's folder of that
/// name, when staging or cleaning up (chroot mode copies mounts in and
/// out) or when mounting (namespaces mount before entering the root).
/// The same holds for /etc/resolv.conf and /etc/hosts, which kiln binds
/// or writes for every step.
#[test]
fn mount_targets_behind_symlinks_stay_in_the_root() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    let host = Sentinel::new();
    let h = host.path().display().to_string();
    for isolation in ["chroot", "auto"] {
        for link in [h.clone(), format!("../../../../../../..{h}")] {
            let ctx = tempfile::tempdir().unwrap();
            write(&ctx.path().join("data"), "from the context\n");
            // Through COPY: a RUN cannot replace the files kiln binds there.
            let etc = ctx.path().join("etc");
            std::fs::create_dir(&etc).unwrap();
            for name in ["resolv", "hosts"] {
                let file = if name == "resolv" {
                    "resolv.conf"
                } else {
                    name
                };
                std::os::unix::fs::symlink(format!("{link}/tmp/{name}"), etc.join(file)).unwrap();
            }
            write(
                &ctx.path().join("Dockerfile"),
                &format!(
                    "FROM {base}\nCOPY etc/ /etc/\nRUN ln -s {link} /a\n\
                     RUN --mount=type=cache,target=/a/cache --mount=type=bind,source=data,target=/a/bind/precious \
                     --mount=type=tmpfs,target=/a/tmp --mount=type=cache,target=/a/new/cache \
                     echo in > /a/cache/new && cat /a/bind/precious > /seen\n"
                ),
            );
            let out = tempfile::tempdir().unwrap();
            let log = kiln_build(ctx.path())
                .oci_layout(&out.path().join("l"))
                .args(reg_args(&reg))
                .args(["--isolation", isolation])
                .ok();
            host.assert_untouched(&format!("{isolation}, link {link}:\n{log}"));
            let bundle = umoci_unpack(&out.path().join("l"), "latest");
            let root = bundle.path().join("b/rootfs");
            assert_eq!(
                std::fs::read_to_string(root.join("seen")).unwrap(),
                "from the context\n",
                "{isolation}: the bind showed the context's file"
            );
            // The targets kiln made behind the link are not in the layer.
            let made = root.join(h.trim_start_matches('/'));
            assert!(
                !made.exists(),
                "{isolation}: {} is in the image: {:?}",
                made.display(),
                walk(&root.join("tmp"))
            );
        }
    }
}

/// A link through /proc's magic links (`/proc/1/root` is, inside the
/// step's namespaces, the helper's own root: the host's `/` while it
/// mounts) must not carry a mount target out of the root: the kernel
/// refuses to follow it (`RESOLVE_NO_MAGICLINKS`), and the build fails
/// naming the target. Without `openat2`, kiln's resolver reads the link
/// as pointing at `/` inside the root.
#[test]
fn mount_targets_through_proc_magic_links_are_refused() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    let host = Sentinel::new();
    let h = host.path().display().to_string();
    for proc_link in ["/proc/1/root", "/proc/self/root", "/proc/self/cwd"] {
        let ctx = tempfile::tempdir().unwrap();
        write(
            &ctx.path().join("Dockerfile"),
            &format!(
                "FROM {base}\nRUN ln -s {proc_link}{h} /a\n\
                 RUN --mount=type=tmpfs,target=/a/cache --mount=type=cache,target=/a/new/cache true\n"
            ),
        );
        let out = tempfile::tempdir().unwrap();
        let build = kiln_build(ctx.path())
            .oci_layout(&out.path().join("l"))
            .args(reg_args(&reg))
            .args(["--isolation", "auto"]);
        if !kernel_has_openat2() {
            eprintln!(
                "!!!!!!!! no openat2 (Linux < 5.6): the walk reads {proc_link} as / !!!!!!!!"
            );
            let log = build.ok();
            host.assert_untouched(&format!("{proc_link}:\n{log}"));
            continue;
        }
        let (_, log) = build.fails();
        host.assert_untouched(&format!("{proc_link}:\n{log}"));
        assert!(
            log.contains("mount target /a/cache")
                && log.contains("Too many levels of symbolic links"),
            "{proc_link}: {log}"
        );
    }
}

/// openat2 came with Linux 5.6.
fn kernel_has_openat2() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (5, 6)
}

/// In chroot mode kiln writes /etc/resolv.conf and /etc/hosts into the
/// root for the step and puts the image's back after it. A step that
/// replaces /etc with a link to a host folder (absolute, or climbing out
/// with `..` as the host would read it) must not make kiln write or
/// remove that folder's files.
#[test]
fn files_kiln_puts_back_after_a_step_stay_in_the_root() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    let host = Sentinel::new();
    let h = host.path().display().to_string();
    for link in [format!("{h}/tmp"), format!("../../../../../../..{h}/tmp")] {
        let ctx = tempfile::tempdir().unwrap();
        write(&ctx.path().join("etc/hosts"), "127.0.0.1 image\n");
        write(
            &ctx.path().join("etc/resolv.conf"),
            "nameserver 192.0.2.1\n",
        );
        write(
            &ctx.path().join("Dockerfile"),
            &format!(
                "FROM {base}\nCOPY etc/ /etc/\nRUN rm -rf /etc && ln -s {link} /etc\n\
                 RUN mkdir /x && ln -s {link} /dev\n"
            ),
        );
        let out = tempfile::tempdir().unwrap();
        let log = kiln_build(ctx.path())
            .oci_layout(&out.path().join("l"))
            .args(reg_args(&reg))
            .args(["--isolation", "chroot"])
            .ok();
        host.assert_untouched(&format!("link {link}:\n{log}"));
    }
}

/// In chroot mode a step's changes come from a walk of the stage's folder:
/// a symlink the step made to a host folder is a symlink in the layer,
/// never the host folder's files.
#[test]
fn a_symlink_to_a_host_folder_is_not_followed_by_the_snapshot() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    let host = Sentinel::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!("FROM {base}\nRUN ln -s {} /leak\n", host.path().display()),
    );
    let out = tempfile::tempdir().unwrap();
    kiln_build(ctx.path())
        .oci_layout(&out.path().join("l"))
        .args(reg_args(&reg))
        .args(["--isolation", "chroot"])
        .ok();
    host.assert_untouched("snapshot");
    let bundle = umoci_unpack(&out.path().join("l"), "latest");
    let leak = bundle.path().join("b/rootfs/leak");
    assert!(
        std::fs::symlink_metadata(&leak)
            .unwrap()
            .file_type()
            .is_symlink(),
        "/leak is a symlink in the image"
    );
    // The step's layer: the link alone, nothing under it.
    let layout = out.path().join("l");
    let index = json(&std::fs::read_to_string(layout.join("index.json")).unwrap());
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let manifest = json(
        &std::fs::read_to_string(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    );
    let layers = manifest["layers"].as_array().unwrap();
    let top = blob(layers.last().unwrap()["digest"].as_str().unwrap());
    let listing = run_ok(tool("tar").arg("-tzf").arg(&top));
    assert!(
        listing.lines().any(|l| l == "leak") && !listing.contains("leak/"),
        "{listing}"
    );
}

/// A step sees no descriptor kiln left open, nor one kiln's own parent
/// left open to a host file (a CI runner's, a shell's `exec 7>file`: the
/// runc CVE-2024-21626 class): it has its standard input (/dev/null),
/// output and error, and what it opened itself. Namespaces as root and as
/// uid 65534 list them; chroot mode (no /proc) shows it by the write that
/// fails. In-place mode: `pod::inherited_descriptors_stay_out_in_place`.
#[test]
fn a_step_inherits_no_descriptor_of_kilns_or_its_parents() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    let (work, ctx) = context_open_to_nobody(&format!(
        "FROM {base}\n\
         RUN ls -l /proc/self/fd/ > /fds || true; \
         if (echo written-by-a-step >&7) 2>/dev/null; then echo open > /fd7; else echo closed > /fd7; fi\n"
    ));
    let host = tempfile::NamedTempFile::new().unwrap();
    write(host.path(), "host data\n");
    for isolation in ISOLATIONS {
        let parents_fd = std::fs::OpenOptions::new()
            .append(true)
            .open(host.path())
            .unwrap();
        let out = open_dir(&work.path().join(format!("out-{isolation}")));
        kiln_build_isolated(isolation, &ctx, work.path())
            .inherit_fd(7, &parents_fd)
            .oci_layout(&out.join("l"))
            .args(reg_args(&reg))
            .ok();
        let bundle = umoci_unpack(&out.join("l"), "latest");
        let root = bundle.path().join("b/rootfs");
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        assert_eq!(
            read("fd7"),
            "closed\n",
            "{isolation}: descriptor 7 reached the step"
        );
        assert_eq!(
            std::fs::read_to_string(host.path()).unwrap(),
            "host data\n",
            "{isolation}: the step wrote to the host file"
        );
        if isolation == "chroot" {
            continue;
        }
        let fds = read("fds");
        for line in fds.lines().filter(|l| l.contains(" -> ")) {
            let (name, target) = line.rsplit_once(" -> ").unwrap();
            let fd: u32 = name.rsplit(' ').next().unwrap().parse().unwrap();
            let expected = match fd {
                0 => target == "/dev/null",
                1 => target == "/fds",
                2 => target.starts_with("pipe:"),
                // ls's own: the directory it lists.
                _ => target.starts_with("/proc/") && target.ends_with("/fd"),
            };
            assert!(
                expected,
                "{isolation}: a descriptor kiln left open: {line}\n{fds}"
            );
        }
        assert!(fds.contains(" -> /fds"), "{isolation}: {fds}");
    }
}

/// Two builds at once share a cache mount a step fills with a link to a
/// host folder and writes through: kiln stages, copies back and cleans
/// the mount without ever following it (chroot mode copies; namespaces
/// bind it, where the link resolves inside the step's root).
#[test]
fn racing_cache_mounts_never_reach_the_host() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    let host = Sentinel::new();
    let h = host.path().display();
    let ctx = tempfile::tempdir().unwrap();
    write(
        &ctx.path().join("Dockerfile"),
        &format!(
            "FROM {base}\nRUN --mount=type=cache,id=race,target=/c,sharing=shared \
             ln -sfn {h} /c/link; echo pwned > /c/link/cache/precious; \
             rm -rf /c/link/bind; ln -sfn {h}/tmp /c/tmp; true\n"
        ),
    );
    let state = tempfile::tempdir().unwrap();
    for isolation in ["chroot", "auto"] {
        std::thread::scope(|s| {
            for i in 0..2 {
                let (ctx, reg, state) = (ctx.path(), &reg, state.path());
                s.spawn(move || {
                    let out = tempfile::tempdir().unwrap();
                    kiln_build(ctx)
                        .oci_layout(&out.path().join("l"))
                        .args(reg_args(reg))
                        .args(["--isolation", isolation])
                        .arg("--kiln-dir")
                        .arg(state)
                        .env("KILN_RACE", i.to_string())
                        .ok();
                });
            }
        });
        host.assert_untouched(isolation);
    }
}

/// A bind mount's source that names a host folder (absolute, or through
/// `..`) is resolved inside the context (or the stage it comes from):
/// the host folder is never shown to the step (Buildah's CVE-2024-1753).
#[test]
fn bind_sources_cannot_leave_their_root() {
    let Some((reg, base)) = chroot_registry_and_base() else {
        return;
    };
    let host = Sentinel::new();
    let h = host.path().display().to_string();
    for source in [h.clone(), format!("../../../../../../..{h}")] {
        for from in ["", ",from=made"] {
            let ctx = tempfile::tempdir().unwrap();
            write(
                &ctx.path().join("Dockerfile"),
                &format!(
                    "FROM {base} AS made\nRUN echo made > /made\n\
                     FROM {base}\nRUN --mount=type=bind{from},source={source},target=/m \
                     cat /m/bind/precious > /stolen 2>/dev/null || echo none > /stolen\n"
                ),
            );
            for isolation in ["chroot", "auto"] {
                let out = tempfile::tempdir().unwrap();
                let result = kiln_build(ctx.path())
                    .oci_layout(&out.path().join("l"))
                    .args(reg_args(&reg))
                    .args(["--isolation", isolation])
                    .output();
                let what = format!("{isolation}, source={source}{from}");
                host.assert_untouched(&what);
                if result.status.success() {
                    let bundle = umoci_unpack(&out.path().join("l"), "latest");
                    let stolen =
                        std::fs::read_to_string(bundle.path().join("b/rootfs/stolen")).unwrap();
                    assert_eq!(stolen, "none\n", "{what}: the host folder was shown");
                }
            }
        }
    }
}
