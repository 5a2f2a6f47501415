//! Fuzz target: arbitrary bytes, split into reads as the input encodes, through one HTTP
//! session (see `fuzz/drive.rs` for the encoding and the checks).
#![no_main]

#[path = "../drive.rs"]
mod drive;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (plan, reads) = drive::decode(data);
    drive::replay(&drive::limits(plan), plan, &reads);
});
