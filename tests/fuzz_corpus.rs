//! Replays the fuzzer's corpus (tests/corpus/http/, found by `fuzz/` with cargo-fuzz) through
//! an HTTP session, as the fuzz target does and in several other splits of the same bytes:
//! no input may panic the session or make it write anything but well-formed responses.

#[path = "../fuzz/drive.rs"]
#[allow(dead_code)]
mod drive;

use std::path::Path;

#[test]
fn every_corpus_input_in_every_split_gives_well_formed_responses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/http");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus has {} files", files.len());
    for file in &files {
        let input = std::fs::read(file).unwrap();
        let (plan, reads) = drive::decode(&input);
        let limits = drive::limits(plan);
        let data: Vec<u8> = reads.concat();
        let name = file.file_name().unwrap().to_string_lossy();
        let splits: [(&str, Vec<&[u8]>); 4] = [
            ("as fuzzed", reads.clone()),
            ("in one read", vec![&data[..]]),
            ("a byte per read", data.chunks(1).collect()),
            ("7 bytes per read", data.chunks(7).collect()),
        ];
        for (how, reads) in splits {
            let replayed = std::panic::catch_unwind(|| drive::replay(&limits, plan, &reads));
            assert!(replayed.is_ok(), "{name} {how}: the session panicked");
        }
    }
}
