//! Untrusted Arrow IPC (an upload, a connector's batch): whatever the bytes,
//! decoding returns batches or an error; it never panics, hangs or
//! allocates without bound. Each input is also fed in small chunks, as an
//! HTTP body arrives, and must decode to the same outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for dictionaries in [false, true] {
        let whole = sluice_ipc::decode(data, dictionaries);
        let mut chunked = sluice_ipc::Decoder::new(dictionaries);
        let mut batches = Vec::new();
        let mut failed = false;
        for chunk in data.chunks(7) {
            match chunked.push(chunk) {
                Ok(b) => batches.extend(b),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        let finished = !failed && chunked.finish().is_ok();
        if let Ok((_, b)) = &whole {
            assert!(finished, "decoded whole but not in chunks");
            assert_eq!(b, &batches);
        }
    }
});
