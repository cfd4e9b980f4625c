//! The fuzz targets: one function per parser that takes input from outside, each asserting what
//! must hold of every input (not only "no panic"). The same functions run in two harnesses:
//! - `tests/fuzz.rs`, on stable Rust: the committed corpus (`fuzz/corpus/<target>/`) in every
//!   `cargo test`, plus a bounded, seeded run of mutations of it in `make test` (phase `fuzz`);
//! - `fuzz/fuzz_targets/<target>.rs`, the libFuzzer binaries for long, coverage-guided runs
//!   (`cargo fuzz run -s none <target>`, docs/fuzzing.md).
//!
//! A target panics when a property fails; its [`Verdict`] only feeds the run's figures.
#![allow(dead_code)] // each libFuzzer binary uses one target

pub mod arn;
pub mod cancel_input;
pub mod emulator_request;
pub mod execution_input;
pub mod mutate;
pub mod state_document;
pub mod tag_event;
pub mod webhook;

use mutate::Rng;

/// How far an input got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not even the envelope (JSON, the request format) could be read.
    Malformed,
    /// Read, then refused by validation with a named error.
    Refused,
    /// Accepted (and every property of an accepted input held).
    Accepted,
}

/// A fuzz target: its name (the corpus folder and the libFuzzer binary), the function under
/// test, and how its inputs are mutated.
pub struct Target {
    /// Name of the target, its corpus folder and its libFuzzer binary.
    pub name: &'static str,
    /// What it fuzzes, for the run's table.
    pub what: &'static str,
    /// Mutated cases in the bounded run of `make test` (`FUZZ_BOUNDED=1`): about the same
    /// time for every target (docs/fuzzing.md has the figures).
    pub bounded_cases: u64,
    /// Runs one input; panics when a property fails.
    pub run: fn(&[u8]) -> Verdict,
    /// A mutation of one input (`others`: the rest of the corpus, for splices).
    pub mutate: Mutator,
}

/// A mutation: the generator, the input, the rest of the corpus; the mutated input.
pub type Mutator = fn(&mut Rng, &[u8], &[Vec<u8>]) -> Vec<u8>;

/// Every target.
pub const TARGETS: &[Target] = &[
    webhook::TARGET,
    tag_event::TARGET,
    state_document::TARGET,
    execution_input::TARGET,
    cancel_input::TARGET,
    arn::TARGET,
    emulator_request::TARGET,
];

/// Whether `text` is acceptable free text: at most 256 characters, no control character.
pub fn is_free_text(text: &str) -> bool {
    text.chars().count() <= 256 && !text.chars().any(char::is_control)
}
