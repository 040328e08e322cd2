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
