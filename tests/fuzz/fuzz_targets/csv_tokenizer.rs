//! The files connector's CSV tokenizer on arbitrary bytes, in each quoting
//! convention: it never panics or loops, and every field lies within the
//! input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_formats::csv::{Syntax, Tokenizer};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, text)) = data.split_first() else {
        return;
    };
    let syntax = Syntax {
        delimiter: if mode & 4 == 4 { b';' } else { b',' },
        quote: b'"',
        escape: (mode & 1 == 1).then_some(b'\\'),
        comment: (mode & 2 == 2).then_some(b'#'),
    };
    let mut tok = Tokenizer::new(Box::new(std::io::Cursor::new(text.to_vec())), &syntax);
    let mut records = 0;
    while tok.read_record().unwrap() {
        records += 1;
        assert!(records <= text.len() + 1, "more records than bytes");
    }
    for r in 0..tok.len() {
        for i in 0..tok.width(r) {
            assert!(tok.field(r, i).unwrap().len() <= text.len());
        }
        assert!(tok.line(r) >= 1);
    }
});
