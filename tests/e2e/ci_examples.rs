//! The kiln command line of every example in docs/ci, run as written (the
//! CI system's variables set, its paths mapped to temporary ones) against
//! the local registry, which speaks plain HTTP: `--insecure-registry` is
//! the one flag added.

use crate::common::*;
use crate::support::{Options, TestRegistry};
use std::path::Path;

fn example(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("docs/ci").join(name)).unwrap()
}

/// The one line of `text` holding `needle`, after `prefix`.
fn line_with(text: &str, needle: &str, prefix: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "one line with {needle:?}: {lines:?}");
    let l = lines[0].trim();
    l.strip_prefix(prefix).unwrap_or(l).trim().to_string()
}

/// Run a shell command line with kiln on PATH (as `kiln` and Kaniko's
/// `executor`) and `vars` in the environment.
fn run_line(line: &str, vars: &[(&str, String)], cwd: &Path, reg: &TestRegistry) -> String {
    let bin = tempfile::tempdir().unwrap();
    for name in ["kiln", "executor"] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kiln"), bin.path().join(name)).unwrap();
    }
    let line = line
        .replace("/kiln/bin/executor", "executor")
        .replace("/kiln/bin/kiln", "kiln");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{line} --insecure-registry {}", reg.addr))
        .current_dir(cwd)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.path().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env(
            "KILN_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-dir"),
        )
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{line}:\n{log}");
    log
}

#[test]
fn gitlab_ci_example() {
    let reg = TestRegistry::start(Options::default());
    let p = hello_project();
    let image = format!("{}/group/project", reg.addr);
    let line = line_with(&example("gitlab-ci.yml"), "/kiln/bin/executor", "- ");
    let dir = p.path().to_string_lossy().into_owned();
    run_line(
        &line,
        &[
            ("CI_PROJECT_DIR", dir),
            ("CI_REGISTRY_IMAGE", image.clone()),
            ("CI_COMMIT_SHORT_SHA", "1a2b3c4d".into()),
        ],
        p.path(),
        &reg,
    );
    let digest = std::fs::read_to_string(p.path().join("image-digest")).unwrap();
    assert_eq!(registry_digest(&format!("{image}:1a2b3c4d")), digest);
    assert_eq!(registry_digest(&format!("{image}:latest")), digest);
}

#[test]
fn circleci_example() {
    let reg = TestRegistry::start(Options::default());
    let p = hello_project();
    let line = line_with(
        &example("circleci.yml"),
        "/kiln/bin/kiln build",
        "command: ",
    );
    let line = line.replace("/workspace", &p.path().to_string_lossy());
    run_line(
        &line,
        &[
            ("REGISTRY", reg.addr.clone()),
            ("CIRCLE_PROJECT_REPONAME", "app".into()),
            ("CIRCLE_SHA1", "0123abcd".into()),
        ],
        p.path(),
        &reg,
    );
    let name = std::fs::read_to_string(p.path().join("image-name")).unwrap();
    let digest = registry_digest(&format!("{}/app:0123abcd", reg.addr));
    assert_eq!(name.trim(), format!("{}/app@{digest}", reg.addr));
}

#[test]
fn github_actions_example() {
    let reg = TestRegistry::start(Options::default());
    let p = hello_project();
    let line = line_with(&example("github-actions.yml"), "kiln build", "run: ");
    let image = format!("{}/org/repo", reg.addr);
    run_line(
        &line,
        &[("IMAGE", image.clone()), ("GITHUB_SHA", "feedbeef".into())],
        p.path(),
        &reg,
    );
    let meta = json(&std::fs::read_to_string(p.path().join("metadata.json")).unwrap());
    assert_eq!(
        meta["containerimage.digest"],
        registry_digest(&format!("{image}:feedbeef")).as_str()
    );
    registry_digest(&format!("{image}:latest"));
}

#[test]
fn kubernetes_job_example() {
    let reg = TestRegistry::start(Options::default());
    let p = hello_project();
    let text = example("kubernetes-job.yaml");
    let digest_file = p.path().join("termination-log");
    let args: Vec<String> = text
        .lines()
        .skip_while(|l| {
            !l.trim_start()
                .starts_with("image: registry.example.com/tools/kiln")
        })
        .skip(2) // `args:`
        .take_while(|l| l.trim_start().starts_with("- \"--"))
        .map(|l| {
            l.trim()
                .trim_start_matches("- ")
                .trim_matches('"')
                .replace("registry.example.com", &reg.addr)
                .replace("dir:///workspace", &format!("dir://{}", p.path().display()))
                .replace("/dev/termination-log", &digest_file.to_string_lossy())
        })
        .collect();
    assert_eq!(args.len(), 5, "{args:?}");
    let line = args
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    run_line(&format!("executor {line}"), &[], p.path(), &reg);
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert_eq!(
        registry_digest(&format!("{}/team/app:1.0", reg.addr)),
        digest
    );
}
