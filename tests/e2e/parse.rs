//! `kiln parse` prints BuildKit's AST dump: every conformance testfile is
//! reproduced byte for byte by the binary.

use crate::common::*;
use std::path::PathBuf;

fn testfiles() -> Vec<PathBuf> {
    let dir = std::env::var_os("KILN_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/conformance"));
    let files = dir.join("buildkit/parser/testfiles");
    assert!(
        files.is_dir(),
        "\n\n*** CONFORMANCE VECTORS ABSENT: {} does not exist. Set KILN_CONFORMANCE_DIR. ***\n",
        files.display()
    );
    let mut v: Vec<PathBuf> = std::fs::read_dir(files)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn parse_buildkit_format_reproduces_every_testfile() {
    let cases = testfiles();
    assert!(cases.len() >= 20);
    for case in cases {
        let expected = std::fs::read_to_string(case.join("result")).unwrap();
        let out = kiln_ok(&[
            "parse",
            "--format",
            "buildkit",
            case.join("Dockerfile").to_str().unwrap(),
        ]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            expected,
            "{}",
            case.display()
        );
    }
}

#[test]
fn parse_json_keeps_heredocs_and_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Dockerfile");
    write(&file, "FROM scratch\nCOPY <<EOF /greeting\nhello\nEOF\n");
    let out = kiln_ok(&["parse", "--format", "json", "-f", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("hello\\n") && text.contains("\"EOF\""),
        "{text}"
    );
    let broken = dir.path().join("Broken");
    write(&broken, "FROM scratch\nRUN <<EOF\nno end\n");
    let out = kiln()
        .args(["parse", broken.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a bad Dockerfile");
    assert!(
        err.contains("Broken:2:") && err.contains("RUN <<EOF"),
        "{err}"
    );
}
