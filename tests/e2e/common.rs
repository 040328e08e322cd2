//! Helpers: running kiln and the verification tools, reading images.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn kiln() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.env_remove("SOURCE_DATE_EPOCH");
    // kiln's state for the tests stays in the target directory.
    c.env(
        "KILN_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-dir"),
    );
    c
}

/// Run kiln with `args`; panic with its output unless it succeeds.
pub fn kiln_ok(args: &[&str]) -> Output {
    let out = kiln().args(args).output().expect("running kiln");
    assert!(
        out.status.success(),
        "kiln {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A required verification tool; its absence fails the test loudly.
pub fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed: the end-to-end tests need it (the README's test command installs it with apt-get)"
    );
    Command::new(name)
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

pub fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// One path of an image's merged file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Symlink target, or hard-link target path.
    pub link: String,
    pub sha256: String,
    pub mtime: u64,
}

/// Apply the layers of a docker-archive in order (no whiteouts expected
/// in these images) and return every path.
pub fn docker_archive_fs(archive: &Path) -> (BTreeMap<String, FileInfo>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(dir.path()),
    );
    let manifest = json(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap());
    let config_name = manifest[0]["Config"].as_str().unwrap();
    let config = json(&std::fs::read_to_string(dir.path().join(config_name)).unwrap());
    let mut fs: BTreeMap<String, FileInfo> = BTreeMap::new();
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        let file = std::fs::File::open(dir.path().join(layer.as_str().unwrap())).unwrap();
        let mut archive = tar::Archive::new(file);
        let mut this_layer: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            // Whiteouts and opaque markers act on the lower layers.
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            let under = |p: &str, dir: &str| dir.is_empty() || p.starts_with(&format!("{dir}/"));
            if name == ".wh..wh..opq" {
                fs.retain(|p, _| !under(p, parent) || this_layer.contains(p));
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let gone = if parent.is_empty() {
                    hidden.to_string()
                } else {
                    format!("{parent}/{hidden}")
                };
                fs.retain(|p, _| *p != gone && !p.starts_with(&format!("{gone}/")));
                continue;
            }
            this_layer.insert(path.clone());
            let h = e.header().clone();
            let kind = match h.entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                _ => 'f',
            };
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            let sha = if kind == 'h' {
                fs.get(&link)
                    .map(|f: &FileInfo| f.sha256.clone())
                    .unwrap_or_default()
            } else {
                hex::encode(Sha256::digest(&data))
            };
            fs.insert(
                path,
                FileInfo {
                    kind,
                    mode: h.mode().unwrap() & 0o7777,
                    uid: e.header().uid().unwrap(),
                    gid: e.header().gid().unwrap(),
                    link,
                    sha256: sha,
                    mtime: h.mtime().unwrap(),
                },
            );
        }
    }
    (fs, config)
}

/// `umoci unpack` an OCI layout image; returns the bundle directory.
pub fn umoci_unpack(layout: &Path, reference: &str) -> tempfile::TempDir {
    let bundle = tempfile::tempdir().unwrap();
    let target = bundle.path().join("b");
    let mut cmd = tool("umoci");
    cmd.arg("unpack")
        .arg("--image")
        .arg(format!("{}:{reference}", layout.display()));
    if !is_root() {
        cmd.arg("--rootless");
    }
    run_ok(cmd.arg(&target));
    bundle
}

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

pub fn skopeo_inspect(transport_ref: &str, config: bool) -> serde_json::Value {
    let mut cmd = tool("skopeo");
    cmd.arg("inspect");
    if config {
        // The config blob as stored: without --raw skopeo re-encodes it and
        // drops docker's fields (Shell, Healthcheck, OnBuild).
        cmd.args(["--config", "--raw"]);
    }
    json(&run_ok(cmd.arg(transport_ref)))
}

/// The docker client to drive the engine with: Debian's docker.io client
/// has BuildKit built in, newer clients need the buildx plugin.
pub fn docker() -> Option<Command> {
    let bin = std::env::var("KILN_TEST_DOCKER").ok().unwrap_or_else(|| {
        if Path::new("/usr/bin/docker").exists() {
            "/usr/bin/docker".into()
        } else {
            "docker".into()
        }
    });
    let answers = Command::new(&bin)
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !answers {
        eprintln!("!!!!!!!! SKIPPED: no Docker engine answers ({bin}); the docker checks of this test did not run !!!!!!!!");
        return None;
    }
    Some(Command::new(bin))
}

/// The Dockerfile of the rich context: only what docker 20.10's built-in
/// BuildKit also understands, so both builders can be compared.
pub const RICH_DOCKERFILE: &str = r#"FROM scratch AS base
COPY etc /etc/
COPY tree /t1
COPY tree/ /t2/
COPY tree/a tree/link /files/
COPY --chown=app:staff tree /owned
COPY --chown=5:6 tree/a /p1/p2/f
COPY --chmod=0751 tree/sub /chm
COPY ignored /ign
COPY *.t?z /globbed/
ADD a.tar /x/tar/
ADD a.tgz /x/tgz
ADD a.tbz /x/tbz/
ADD a.txz /x/txz/
COPY tree/a /x/tgz/
WORKDIR /work/dir
USER app
WORKDIR /home/app
COPY tree/sub/b rel
FROM base AS final
COPY --from=base /t1/sub /fromstage
COPY --from=base /owned/sub/ /fromowned/
ENV A=1 B=$A
ENTRYPOINT ["/bin/true"]
EXPOSE 80 90/udp
VOLUME /data
LABEL k=v
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD true
ONBUILD COPY x y
"#;

/// A context with modes, a directory of mode 0700, symlinks, hard links,
/// passwd/group, .dockerignore with an exception, and tar archives (plain,
/// gzip with owner 7:8, bzip2, xz).
pub fn rich_context(dir: &Path) {
    write(&dir.join("tree/a"), "one\n");
    write(&dir.join("tree/sub/b"), "two\n");
    chmod(&dir.join("tree/a"), 0o600);
    chmod(&dir.join("tree/sub"), 0o700);
    std::os::unix::fs::symlink("a", dir.join("tree/link")).unwrap();
    std::fs::hard_link(dir.join("tree/a"), dir.join("tree/hardlink")).unwrap();
    write(
        &dir.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    );
    write(&dir.join("etc/group"), "root:x:0:\nstaff:x:50:\n");
    write(&dir.join("ignored/keep/k"), "k\n");
    write(&dir.join("ignored/drop"), "d\n");
    write(&dir.join("secret.txt"), "s\n");
    let arch = dir.join("arch");
    write(&arch.join("inner/f"), "in\n");
    std::os::unix::fs::symlink("inner/f", arch.join("l")).unwrap();
    for (name, flags) in [
        ("a.tar", "-cf"),
        ("a.tgz", "-czf"),
        ("a.tbz", "-cjf"),
        ("a.txz", "-cJf"),
    ] {
        run_ok(
            Command::new("tar")
                .args(["--owner=7", "--group=8", "--mtime=@1600000000", "-C"])
                .arg(&arch)
                .arg(flags)
                .arg(dir.join(name))
                .arg("."),
        );
    }
    std::fs::remove_dir_all(&arch).unwrap();
    write(
        &dir.join(".dockerignore"),
        "secret.txt\nignored\n!ignored/keep\n",
    );
    write(&dir.join("Dockerfile"), RICH_DOCKERFILE);
}

/// Every path under an unpacked root with what a file-by-file comparison
/// needs: type, mode, owner, link target, content hash, xattrs (no times).
pub fn tree_info(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let ft = md.file_type();
            let (kind, detail) = if ft.is_dir() {
                stack.push(p.clone());
                ("d", String::new())
            } else if ft.is_symlink() {
                (
                    "l",
                    std::fs::read_link(&p)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                )
            } else if ft.is_file() {
                ("f", hex::encode(Sha256::digest(std::fs::read(&p).unwrap())))
            } else {
                ("o", format!("{:x}", md.rdev()))
            };
            let caps = if ft.is_symlink() {
                String::new()
            } else {
                match xattr::get(&p, "security.capability") {
                    Ok(Some(v)) => hex::encode(v),
                    _ => String::new(),
                }
            };
            out.insert(
                rel,
                format!(
                    "{kind} {:o} {}:{} {detail} {caps}",
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid()
                ),
            );
        }
    }
    out
}

/// Paths whose entries differ between two file listings (a path missing on
/// one side counts), described with the two sides' names.
pub fn differences<V: PartialEq + std::fmt::Debug>(
    a: &BTreeMap<String, V>,
    b: &BTreeMap<String, V>,
    names: (&str, &str),
) -> Vec<String> {
    a.keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            format!(
                "{k}:\n  {:<8}{:?}\n  {:<8}{:?}",
                names.0,
                a.get(k),
                names.1,
                b.get(k)
            )
        })
        .collect()
}

/// A listing with file times cleared: of directories only, or of all.
pub fn without_times(
    fs: &BTreeMap<String, FileInfo>,
    directories_only: bool,
) -> BTreeMap<String, FileInfo> {
    fs.iter()
        .map(|(k, v)| {
            let mut v = v.clone();
            if !directories_only || v.kind == 'd' {
                v.mtime = 0;
            }
            (k.clone(), v)
        })
        .collect()
}

/// `DOCKER_BUILDKIT=1 docker build --no-cache` of `ctx` with build args,
/// saved as a docker archive at `out`. `false` (after a loud message) when
/// this docker client cannot use BuildKit.
pub fn docker_buildkit_save(ctx: &Path, tag: &str, build_args: &[String], out: &Path) -> bool {
    let mut cmd = docker().expect("docker engine");
    cmd.env("DOCKER_BUILDKIT", "1")
        .args(["build", "--no-cache", "-q", "-t", tag]);
    for a in build_args {
        cmd.arg("--build-arg").arg(a);
    }
    let built = cmd.arg(ctx).output().unwrap();
    if !built.status.success() {
        let err = String::from_utf8_lossy(&built.stderr);
        if err.contains("buildx") {
            eprintln!("!!!!!!!! SKIPPED: this docker client needs the buildx plugin for BuildKit: {err} !!!!!!!!");
            return false;
        }
        panic!("docker build failed: {err}");
    }
    run_ok(docker().unwrap().arg("save").arg("-o").arg(out).arg(tag));
    let _ = docker().unwrap().args(["rmi", "-f", tag]).output();
    true
}

/// Write subordinate ID ranges for `nobody` (the test setup's part), once
/// per test run, before any test builds as uid 65534 with RUN steps.
pub fn ensure_subids() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if !text.lines().any(|l| l.starts_with("nobody:")) {
                std::fs::write(file, format!("{text}nobody:200000:65536\n")).unwrap();
            }
        }
    });
}

/// `kiln build -c CTX` with the tests' kiln directory. Without the local
/// step cache (`--cache=false`; a later `--cache` turns a cache on): what
/// a test sees must not depend on what earlier tests built in the shared
/// kiln directory. `cache::local_cache_by_default` tests the default.
pub fn kiln_build(ctx: &Path) -> kiln_test_support::KilnBuild {
    kiln_test_support::KilnBuild::new(env!("CARGO_BIN_EXE_kiln"), ctx)
        .arg("--cache=false")
        .env_remove("SOURCE_DATE_EPOCH")
        .env(
            "KILN_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-dir"),
        )
}

/// `kiln build -c CTX` as uid 65534, its state under `home`; without the
/// local step cache, as [`kiln_build`].
pub fn kiln_build_as_nobody(ctx: &Path, home: &Path) -> kiln_test_support::KilnBuild {
    kiln_test_support::KilnBuild::as_nobody(env!("CARGO_BIN_EXE_kiln"), ctx, home)
        .arg("--cache=false")
        .env_remove("SOURCE_DATE_EPOCH")
}

/// A checkout of fixtures/hello (Dockerfile and the file it copies) in a
/// temporary folder, as a CI job would have it.
pub fn hello_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["Dockerfile", "hello"] {
        std::fs::copy(
            repo_root().join("fixtures/hello").join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    dir
}

/// The manifest digest a (plain-HTTP) registry serves for `reference`.
pub fn registry_digest(reference: &str) -> String {
    let raw = run_ok(tool("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    json(&raw)["Digest"].as_str().unwrap().to_string()
}

/// The manifest or index a (plain-HTTP) registry serves for `reference`,
/// as it is stored.
pub fn registry_manifest(reference: &str) -> serde_json::Value {
    json(&run_ok(tool("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{reference}"),
    ])))
}

/// Where a blob of an OCI layout is.
pub fn layout_blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// A blob of an OCI layout.
pub fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let path = layout_blob_path(layout, digest);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON blob (manifest, index, config) of an OCI layout.
pub fn layout_json(layout: &Path, digest: &str) -> serde_json::Value {
    json(&String::from_utf8(layout_blob(layout, digest)).unwrap())
}

/// What a layout's `index.json` names first (an image's manifest, or an
/// index).
pub fn layout_top(layout: &Path) -> serde_json::Value {
    let index = json(&std::fs::read_to_string(layout.join("index.json")).unwrap());
    layout_json(layout, index["manifests"][0]["digest"].as_str().unwrap())
}

/// A `[trusted=yes]` apt repository's `Packages` file for the `.deb`s in
/// `repo`, from their own control fields.
pub fn apt_packages_index(repo: &Path) {
    let mut packages = String::new();
    let mut debs: Vec<_> = std::fs::read_dir(repo)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    for deb in debs {
        let control = run_ok(tool("dpkg-deb").arg("-f").arg(&deb));
        let bytes = std::fs::read(&deb).unwrap();
        let sha = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(&bytes))
        };
        packages.push_str(control.trim_end());
        packages.push_str(&format!(
            "\nFilename: ./{}\nSize: {}\nSHA256: {sha}\n\n",
            deb.file_name().unwrap().to_string_lossy(),
            bytes.len(),
        ));
    }
    write(&repo.join("Packages"), &packages);
}

/// Commit `work/src` on branch `release` and serve a bare clone of it as
/// `repo.git` over git's dumb HTTP protocol on loopback. Returns the
/// server (it stops when dropped) and the commit.
pub fn serve_git_repo(work: &Path) -> (crate::support::StaticHttp, String) {
    let src = work.join("src");
    let git = |dir: &Path, args: &[&str]| {
        run_ok(
            tool("git")
                .arg("-C")
                .arg(dir)
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args),
        )
    };
    git(&src, &["init", "-q", "-b", "release"]);
    git(&src, &["add", "."]);
    git(&src, &["commit", "-q", "-m", "app"]);
    let commit = git(&src, &["rev-parse", "HEAD"]).trim().to_string();
    let served = work.join("served");
    std::fs::create_dir(&served).unwrap();
    run_ok(
        tool("git")
            .args(["clone", "-q", "--bare"])
            .arg(&src)
            .arg(served.join("repo.git")),
    );
    git(&served.join("repo.git"), &["update-server-info"]);
    (crate::support::StaticHttp::start(served), commit)
}

/// How the mount tests build: namespaces and chroot mode as root, and as
/// uid 65534 (user namespaces, `auto`).
pub const ISOLATIONS: [&str; 3] = ["auto", "chroot", "unprivileged"];

/// `kiln build -c CTX` in one of [`ISOLATIONS`]; uid 65534's state is
/// under `home`.
pub fn kiln_build_isolated(
    isolation: &str,
    ctx: &Path,
    home: &Path,
) -> kiln_test_support::KilnBuild {
    match isolation {
        "unprivileged" => kiln_build_as_nobody(ctx, home).args(["--isolation", "auto"]),
        _ => kiln_build(ctx).args(["--isolation", isolation]),
    }
}

/// `ctx` built in `isolation` (with `args`) into an OCI layout under
/// `work`, unpacked: the image's files are under `b/rootfs`.
pub fn build_isolated_and_unpack(
    isolation: &str,
    ctx: &Path,
    work: &Path,
    args: &[String],
) -> tempfile::TempDir {
    let out = open_dir(&work.join(format!("out-{isolation}")));
    kiln_build_isolated(isolation, ctx, work)
        .oci_layout(&out.join("l"))
        .args(args)
        .ok();
    umoci_unpack(&out.join("l"), "latest")
}

/// Opens directories (0777) and files (0666) to uid 65534, whose
/// subordinate IDs it makes sure of.
pub fn open_to_nobody(dirs: &[&Path], files: &[&Path]) {
    ensure_subids();
    for d in dirs {
        chmod(d, 0o777);
    }
    for f in files {
        chmod(f, 0o666);
    }
}

/// A work folder with a context (`work/ctx`) holding `dockerfile`, both
/// open to uid 65534.
pub fn context_open_to_nobody(dockerfile: &str) -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    write(&ctx.join("Dockerfile"), dockerfile);
    open_to_nobody(&[work.path(), &ctx], &[&ctx.join("Dockerfile")]);
    (work, ctx)
}

/// A new output folder any test user can write.
pub fn open_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    chmod(path, 0o777);
    path.to_path_buf()
}
