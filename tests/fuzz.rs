//! Fuzzed parsers on stable Rust (docs/fuzzing.md): the targets of `tests/fuzz_targets/`, each
//! run over its committed corpus (`fuzz/corpus/<target>/`) in every `cargo test`.
//!
//! With `FUZZ_BOUNDED=1` (the `fuzz` phase of `make test`), each target also runs its
//! `bounded_cases` mutations of its corpus (`FUZZ_CASES=N`: N instead), drawn from a seeded
//! generator (`FUZZ_SEED`, default 1): the same cases on every machine, so a failure in CI fails
//! the same way here. Mutants the target accepted join the
//! pool, so changes stack up. A failing input is written to
//! `target/tmp/fuzz-failures/<target>/` and named in the failure; copied into the target's
//! corpus folder it is replayed by every `cargo test` from then on.

mod fuzz_targets;

use std::collections::BTreeSet;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use fuzz_targets::mutate::Rng;
use fuzz_targets::{Target, Verdict, TARGETS};

/// Longest input tried (libFuzzer's `-max_len` in the long runs is the same).
const MAX_INPUT_BYTES: usize = 64 * 1024;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The committed corpus of a target, by file name.
fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = repo().join("fuzz/corpus").join(name);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, data)
        })
        .collect();
    files.sort();
    files
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
        Err(_) => default,
    }
}

/// Runs one input; on a panic, keeps the input and says where.
fn run_one(target: &Target, input: &[u8], what: &str) -> Verdict {
    match catch_unwind(AssertUnwindSafe(|| (target.run)(input))) {
        Ok(verdict) => verdict,
        Err(panic) => {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join("fuzz-failures")
                .join(target.name);
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(what.replace([' ', '/'], "-"));
            let _ = std::fs::write(&file, input);
            eprintln!(
                "fuzz target {} failed on {what}; the input is in {} (copy it to fuzz/corpus/{}/ \
                 to replay it in every cargo test)",
                target.name,
                file.display(),
                target.name
            );
            resume_unwind(panic)
        }
    }
}

/// Corpus, then `FUZZ_CASES` mutations; prints the figures.
fn fuzz(target: &Target) {
    let bounded = std::env::var_os("FUZZ_BOUNDED").is_some_and(|v| v == "1");
    let cases = env_number("FUZZ_CASES", if bounded { target.bounded_cases } else { 0 });
    let seed = env_number("FUZZ_SEED", 1);
    let started = Instant::now();
    let corpus = corpus(target.name);
    assert!(!corpus.is_empty(), "fuzz/corpus/{} is empty", target.name);
    let mut counts = [0u64; 3];
    let mut count = |verdict: Verdict| {
        counts[match verdict {
            Verdict::Malformed => 0,
            Verdict::Refused => 1,
            Verdict::Accepted => 2,
        }] += 1;
    };
    for (name, input) in &corpus {
        count(run_one(target, input, &format!("corpus file {name}")));
    }
    let mut pool: Vec<Vec<u8>> = corpus.into_iter().map(|(_, data)| data).collect();
    let seeds = pool.len();
    let name_hash = target.name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = Rng::new(seed ^ name_hash);
    for case in 0..cases {
        let base = pool[rng.below(pool.len())].clone();
        let mut input = (target.mutate)(&mut rng, &base, &pool);
        if rng.one_in(3) {
            input = (target.mutate)(&mut rng, &input, &pool);
        }
        input.truncate(MAX_INPUT_BYTES);
        let verdict = run_one(target, &input, &format!("seed {seed} case {case}"));
        count(verdict);
        if verdict == Verdict::Accepted && rng.one_in(4) && pool.len() < seeds * 8 + 256 {
            pool.push(input);
        }
    }
    let [malformed, refused, accepted] = counts;
    println!(
        "fuzz {:<17} {seeds:>3} corpus + {cases:>6} mutated (seed {seed}): {accepted:>6} \
         accepted, {refused:>6} refused, {malformed:>6} malformed, {:.1} s  [{}]",
        target.name,
        started.elapsed().as_secs_f64(),
        target.what
    );
}

#[test]
fn webhook() {
    fuzz(&fuzz_targets::webhook::TARGET);
}

#[test]
fn tag_event() {
    fuzz(&fuzz_targets::tag_event::TARGET);
}

#[test]
fn state_document() {
    fuzz(&fuzz_targets::state_document::TARGET);
}

#[test]
fn execution_input() {
    fuzz(&fuzz_targets::execution_input::TARGET);
}

#[test]
fn cancel_input() {
    fuzz(&fuzz_targets::cancel_input::TARGET);
}

#[test]
fn arn() {
    fuzz(&fuzz_targets::arn::TARGET);
}

#[test]
fn emulator_request() {
    fuzz(&fuzz_targets::emulator_request::TARGET);
}

/// Every target has a test above, a corpus folder and a libFuzzer binary, and nothing else does.
#[test]
fn targets_corpora_and_binaries_agree() {
    let names: BTreeSet<String> = TARGETS.iter().map(|t| t.name.to_owned()).collect();
    let listed = |dir: &str, suffix: &str| -> BTreeSet<String> {
        std::fs::read_dir(repo().join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|n| n.strip_suffix(suffix).map(str::to_owned))
            .collect()
    };
    assert_eq!(listed("fuzz/corpus", ""), names, "fuzz/corpus/");
    assert_eq!(
        listed("fuzz/fuzz_targets", ".rs"),
        names,
        "fuzz/fuzz_targets/"
    );
    let manifest = std::fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
    for name in &names {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
    }
    let this = std::fs::read_to_string(repo().join("tests/fuzz.rs")).unwrap();
    for name in &names {
        assert!(
            this.contains(&format!("fn {name}()")),
            "tests/fuzz.rs runs no {name}"
        );
    }
}
