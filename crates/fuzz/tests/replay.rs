//! Every input in `fuzz/corpus/<target>/` (the seeds, and whatever fuzzing
//! found and was kept) runs through its target: a crash found once stays
//! a failing test until it is fixed.

use std::path::PathBuf;

#[test]
fn the_fuzz_corpus_replays_without_a_crash() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, target) in kiln_fuzz::TARGETS {
        let dir = corpus.join(name);
        let inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        assert!(!inputs.is_empty(), "{}: no seed inputs", dir.display());
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(result.is_ok(), "{name}: {} crashed it", input.display());
        }
    }
}
