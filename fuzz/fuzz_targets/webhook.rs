//! libFuzzer binary of the `webhook` target (tests/fuzz_targets/webhook.rs): libFuzzer's own byte
//! mutations and, every other time, the target's structure-aware ones.
#![no_main]

#[path = "../../tests/fuzz_targets/mod.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    (targets::webhook::TARGET.run)(data);
});

libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let mut rng = targets::mutate::Rng::new(u64::from(seed));
    if rng.one_in(2) {
        return libfuzzer_sys::fuzzer_mutate(data, size, max_size);
    }
    let mutated = (targets::webhook::TARGET.mutate)(&mut rng, &data[..size], &[]);
    if mutated.len() > max_size {
        return libfuzzer_sys::fuzzer_mutate(data, size, max_size);
    }
    data[..mutated.len()].copy_from_slice(&mutated);
    mutated.len()
});
