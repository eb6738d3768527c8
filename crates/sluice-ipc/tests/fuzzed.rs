//! Inputs the fuzzer found (tests/fuzz): each is refused by the guard, not
//! by a panic the decoder would have hit.

#[test]
fn inputs_the_fuzzer_found_are_refused_before_decoding() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzzed");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for dictionaries in [false, true] {
            match sluice_ipc::decode(bytes.as_slice(), dictionaries) {
                Ok(_) => {}
                Err(e) => assert!(
                    !e.to_string().contains("panicked"),
                    "{}: {e}",
                    path.display()
                ),
            }
        }
    }
}
