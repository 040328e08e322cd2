//! What each fuzz target does with its input (`fuzz/fuzz_targets/*.rs`
//! call these; `tests/replay.rs` runs the committed corpus through them,
//! so an input that once crashed kiln fails the test suite). Every target
//! must only return: errors are fine, panics and escapes are findings.

use std::path::Path;

/// A target: it takes any bytes and must only return.
pub type Target = fn(&[u8]);

/// The targets, by the name of their corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("dockerfile", dockerfile),
    ("word_expansion", word_expansion),
    ("dockerignore", dockerignore),
    ("layer_apply", layer_apply),
    ("image_json", image_json),
    ("sbom_scan", sbom_scan),
];

/// A Dockerfile: parsed, planned (with its build checks' inputs), dumped.
pub fn dockerfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ast) = kiln_dockerfile::parse("Dockerfile", text) else {
        return;
    };
    let _ = kiln_dockerfile::dump::buildkit(&ast);
    let _ = kiln_dockerfile::Plan::new(ast, kiln_dockerfile::PlanOptions::default());
}

/// A word and the variables it may name: the first line is the word, the
/// rest `NAME=value` lines; expanded with both escape characters.
pub fn word_expansion(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let word = lines.next().unwrap_or_default();
    let vars: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once('=')).collect();
    let lookup = |k: &str| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    };
    for escape in ['\\', '`'] {
        let lex = kiln_dockerfile::shell::Lex::new(escape);
        let _ = lex.process_word(word, &lookup);
        let _ = lex.process_words(word, &lookup);
    }
}

/// A `.dockerignore`, then paths tried against it.
pub fn dockerignore(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (patterns, paths) = text
        .split_once("\n---\n")
        .unwrap_or((&text, "a/b/c\n.git\nx.txt"));
    let Ok(m) = kiln_engine::ignore::IgnoreMatcher::parse(patterns) else {
        return;
    };
    for p in paths.lines() {
        let _ = m.excluded(p);
    }
}

/// A layer (a tar, maybe compressed): described, then extracted into a
/// fresh directory; nothing may appear beside that directory.
pub fn layer_apply(data: &[u8]) {
    let _ = kiln_layer::apply::describe_layer_to(data, "fuzzed layer", &mut |_| Ok(()));
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let root = dir.path().join("root");
    if std::fs::create_dir(&root).is_err() {
        return;
    }
    let _ = kiln_layer::apply::extract_layer_to(
        data,
        &root,
        "fuzzed layer",
        &kiln_layer::apply::ExtractOptions {
            overlay_markers: true,
        },
        &mut |_| Ok(()),
    );
    let beside: Vec<String> = names(dir.path());
    assert_eq!(beside, ["root"], "the layer wrote outside its root");
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

/// JSON as registries and layouts serve it: an image config, a manifest,
/// an index; what decodes is encoded again and made into an index.
pub fn image_json(data: &[u8]) {
    if let Ok(config) = serde_json::from_slice::<kiln_image::ImageConfig>(data) {
        let _ = config.to_json();
    }
    let _ = serde_json::from_slice::<kiln_image::layout::Manifest>(data);
    if let Ok(index) = serde_json::from_slice::<kiln_image::layout::Index>(data) {
        let _ = kiln_image::ImageIndex::new(index.manifests().clone());
    }
}

/// Files held in memory, as the scanners read an image's.
struct MemFiles(std::collections::BTreeMap<String, Vec<u8>>);

impl kiln_attest::ImageFiles for MemFiles {
    fn walk(&self, visit: &mut dyn FnMut(&str, &kiln_attest::Kind, u32)) {
        for (path, bytes) in &self.0 {
            let size = bytes.len() as u64;
            visit(path, &kiln_attest::Kind::File { size }, 0o755);
        }
    }

    fn kind(&self, path: &str) -> Option<kiln_attest::Kind> {
        self.0.get(path).map(|b| kiln_attest::Kind::File {
            size: b.len() as u64,
        })
    }

    fn open(&self, path: &str) -> std::io::Result<Box<dyn kiln_attest::files::ReadSeek + '_>> {
        match self.0.get(path) {
            Some(b) => Ok(Box::new(std::io::Cursor::new(b.as_slice()))),
            None => Err(std::io::ErrorKind::NotFound.into()),
        }
    }
}

/// A package database or manifest from a hostile base image: the bytes
/// are every database the scanners read at once (the SQLite rpmdb, a
/// jar, an executable, dpkg's status and file lists, apk's database,
/// Python's METADATA and RECORD, a package.json), scanned, then made into
/// an SPDX document.
pub fn sbom_scan(data: &[u8]) {
    let paths = [
        "/var/lib/rpm/rpmdb.sqlite",
        "/app/lib/x.jar",
        "/usr/bin/tool",
        "/var/lib/dpkg/status",
        "/var/lib/dpkg/info/x.list",
        "/var/lib/dpkg/info/x.md5sums",
        "/lib/apk/db/installed",
        "/usr/lib/python3/dist-packages/x-1.dist-info/METADATA",
        "/usr/lib/python3/dist-packages/x-1.dist-info/RECORD",
        "/app/node_modules/x/package.json",
        "/etc/os-release",
    ];
    let files = MemFiles(
        paths
            .iter()
            .map(|p| (p.to_string(), data.to_vec()))
            .collect(),
    );
    let inventory = kiln_attest::scan(&files);
    let _ = kiln_attest::spdx::document(
        &inventory,
        &kiln_attest::spdx::DocumentInfo {
            name: "fuzz",
            created: "1970-01-01T00:00:00Z",
            tool: "kiln-fuzz",
        },
    );
}
