//! Replays every committed input through its target, as an ordinary `cargo test` on stable:
//! `corpus/<target>/*` (what the fuzzer found interesting, minimised) and
//! `regressions/<target>/*` (each input that once crashed a target, kept after the fix).
//!
//! A panic in any file fails the test, naming every file that panicked. A corpus directory
//! without a target, or a target without a corpus, fails it too, so the list of targets, the
//! harnesses and the committed inputs cannot drift apart.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use worldfleet_fuzz::TARGETS;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn subdirectories(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_dir())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_committed_input_replays_without_a_panic() {
    let root = Path::new(ROOT);
    let mut replayed = 0;
    let mut panicked = Vec::new();
    for target in TARGETS {
        let corpus = files(&root.join("corpus").join(target.name));
        assert!(
            !corpus.is_empty(),
            "target {} has no committed corpus in corpus/{}/",
            target.name,
            target.name
        );
        let regressions = files(&root.join("regressions").join(target.name));
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap();
            if catch_unwind(AssertUnwindSafe(|| (target.run)(&data))).is_err() {
                panicked.push(path.strip_prefix(root).unwrap().display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(
        panicked.is_empty(),
        "{} of {replayed} committed inputs panicked (replay one with `cargo +nightly fuzz run \
         <target> <file> --fuzz-dir shared/fuzz --features libfuzzer -s none -a`):\n{}",
        panicked.len(),
        panicked.join("\n")
    );
    eprintln!(
        "replayed {replayed} committed inputs through {} targets",
        TARGETS.len()
    );
}

#[test]
fn every_input_directory_names_a_target_with_a_harness() {
    let root = Path::new(ROOT);
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for target in TARGETS {
        let harness = format!("fuzz_targets/{}.rs", target.name);
        assert!(root.join(&harness).is_file(), "no harness {harness}");
        assert!(
            manifest.contains(&format!("path = \"{harness}\"")),
            "Cargo.toml has no [[bin]] for {harness}"
        );
    }
    for dir in ["corpus", "regressions"] {
        for name in subdirectories(&root.join(dir)) {
            assert!(
                TARGETS.iter().any(|target| target.name == name),
                "{dir}/{name}/ names no target in worldfleet_fuzz::TARGETS"
            );
        }
    }
}
