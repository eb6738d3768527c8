//! A strict check of newline-delimited JSON, run over every byte the fast
//! path decodes: arrow-json's tape decoder tokenizes leniently (it skips
//! commas, reads `012` as 12, takes two objects on a line as two rows), so
//! without this check malformed records past the schema sample would load
//! with altered values.
//!
//! The grammar is RFC 8259's, as serde_json reads it, with NDJSON's framing:
//! each non-blank line holds exactly one value, an object, and nothing but
//! white space after it; objects and arrays nest at most [`MAX_DEPTH`]
//! levels. The check is resumable: bytes may be fed in chunks cut anywhere,
//! and it allocates nothing per record.

/// The deepest nesting of objects and arrays a record may have: deeper
/// schemas than this cannot cross the component boundary (Arrow IPC's
/// flatbuffers allow 64 levels, two per nested field).
pub const MAX_DEPTH: usize = 30;

/// Why a record does not check, and on which line (1 = the first line fed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    /// The line, counted from the first byte fed.
    pub line: u64,
    /// What is wrong.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between records: blank space, or a record's `{`.
    LineStart,
    /// After a record: only blank space up to the newline.
    LineEnd,
    /// A value is due.
    Value,
    /// After `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After `[`: a value or `]`.
    ValueOrClose,
    /// After a value inside an object or array: `,` or the closing bracket.
    AfterValue,
    /// Inside a string (a key or a value).
    Str { key: bool },
    /// After a backslash in a string.
    Escape { key: bool },
    /// Inside `\uXXXX`, `left` hex digits to go.
    Hex { key: bool, left: u8 },
    /// Inside a number.
    Num(Num),
    /// Inside `true`, `false` or `null`: the literal and how far.
    Literal(&'static [u8], u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    /// After `-`.
    Minus,
    /// After a leading `0`.
    Zero,
    /// In the integer part.
    Int,
    /// After `.`.
    Dot,
    /// In the fraction.
    Frac,
    /// After `e` or `E`.
    Exp,
    /// After the exponent's sign.
    ExpSign,
    /// In the exponent.
    ExpDigits,
}

impl Num {
    /// Whether a number may end here.
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

/// The check's state between chunks.
#[derive(Debug, Clone)]
pub struct Checker {
    state: State,
    /// Open objects (`true`) and arrays (`false`).
    stack: Vec<bool>,
    /// Newlines seen.
    newlines: u64,
}

impl Default for Checker {
    fn default() -> Self {
        Checker {
            state: State::LineStart,
            stack: Vec::new(),
            newlines: 0,
        }
    }
}

/// JSON's blank space within a record's line (a newline ends the line).
pub fn blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

impl Checker {
    /// Whether the bytes fed so far end between records.
    pub fn between_records(&self) -> bool {
        matches!(self.state, State::LineStart | State::LineEnd)
    }

    /// Checks the end of the input: it must not end inside a record.
    pub fn finish(&self) -> Result<(), Bad> {
        if self.between_records() {
            Ok(())
        } else {
            Err(self.bad("the record is cut off by the end of the file"))
        }
    }

    fn bad(&self, reason: &'static str) -> Bad {
        Bad {
            line: self.newlines + 1,
            reason,
        }
    }

    /// The state after a value ends.
    fn after_value(&self) -> State {
        if self.stack.is_empty() {
            State::LineEnd
        } else {
            State::AfterValue
        }
    }

    fn open(&mut self, object: bool) -> Result<State, Bad> {
        if self.stack.len() == MAX_DEPTH {
            return Err(
                self.bad("objects and arrays nest deeper than 30 levels, the most Sluice stores")
            );
        }
        self.stack.push(object);
        Ok(if object {
            State::KeyOrClose
        } else {
            State::ValueOrClose
        })
    }

    /// Checks the next bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Bad> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            // Strings are most of the bytes: skip plain runs at once.
            if let State::Str { key } = self.state {
                i += plain_run(&bytes[i..]);
                let Some(&c) = bytes.get(i) else { break };
                self.state = match c {
                    // Most keys are followed by their colon at once.
                    b'"' if key && bytes.get(i + 1) == Some(&b':') => {
                        i += 1;
                        State::Value
                    }
                    b'"' if key => State::Colon,
                    b'"' => self.after_value(),
                    b'\\' => State::Escape { key },
                    b'\n' => {
                        return Err(self.bad("a string runs past the end of the line"));
                    }
                    _ => {
                        return Err(self.bad("a control character inside a string must be escaped"));
                    }
                };
                i += 1;
                continue;
            }
            if b == b'\n' {
                match self.state {
                    State::LineStart | State::LineEnd => {
                        self.newlines += 1;
                        self.state = State::LineStart;
                        i += 1;
                        continue;
                    }
                    State::Num(n) if n.complete() => {
                        // The number ends here; the newline is judged next.
                        self.state = self.after_value();
                        continue;
                    }
                    _ => {
                        return Err(self.bad(
                            "a record must be on one line (for one record spread over lines per file, set multiLine=true)",
                        ));
                    }
                }
            }
            self.state = match self.state {
                State::LineStart => match b {
                    _ if blank(b) => State::LineStart,
                    b'{' => self.open(true)?,
                    _ => return Err(self.bad("a JSON record must be an object")),
                },
                State::LineEnd => match b {
                    _ if blank(b) => State::LineEnd,
                    _ => return Err(self.bad("text after the record on the same line")),
                },
                State::Value | State::ValueOrClose => match b {
                    _ if blank(b) => self.state,
                    b']' if self.state == State::ValueOrClose => {
                        self.stack.pop();
                        self.after_value()
                    }
                    b'{' => self.open(true)?,
                    b'[' => self.open(false)?,
                    b'"' => State::Str { key: false },
                    b'-' => State::Num(Num::Minus),
                    b'0' => State::Num(Num::Zero),
                    b'1'..=b'9' => State::Num(Num::Int),
                    b't' => State::Literal(b"true", 1),
                    b'f' => State::Literal(b"false", 1),
                    b'n' => State::Literal(b"null", 1),
                    b',' => return Err(self.bad("a value is missing before ','")),
                    _ => return Err(self.bad("a value is expected")),
                },
                State::KeyOrClose | State::Key => match b {
                    _ if blank(b) => self.state,
                    b'"' => State::Str { key: true },
                    b'}' if self.state == State::KeyOrClose => {
                        self.stack.pop();
                        self.after_value()
                    }
                    b'}' => return Err(self.bad("a trailing ',' before '}'")),
                    _ => return Err(self.bad("an object key (a string) is expected")),
                },
                State::Colon => match b {
                    _ if blank(b) => State::Colon,
                    b':' => State::Value,
                    _ => return Err(self.bad("':' is expected after an object key")),
                },
                State::AfterValue => {
                    let object = self.stack.last().copied().unwrap_or(false);
                    match b {
                        _ if blank(b) => State::AfterValue,
                        // Most members are followed by the next key at once.
                        b',' if object && bytes.get(i + 1) == Some(&b'"') => {
                            i += 1;
                            State::Str { key: true }
                        }
                        b',' if object => State::Key,
                        b',' => State::Value,
                        b'}' if object => {
                            self.stack.pop();
                            self.after_value()
                        }
                        b']' if !object => {
                            self.stack.pop();
                            self.after_value()
                        }
                        _ if object => {
                            return Err(self.bad("',' or '}' is expected after an object member"));
                        }
                        _ => return Err(self.bad("',' or ']' is expected after an array element")),
                    }
                }
                State::Escape { key } => match b {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => State::Str { key },
                    b'u' => State::Hex { key, left: 4 },
                    _ => return Err(self.bad("an invalid escape in a string")),
                },
                State::Hex { key, left } => {
                    if !b.is_ascii_hexdigit() {
                        return Err(self.bad("\\u must be followed by four hex digits"));
                    }
                    match left {
                        1 => State::Str { key },
                        _ => State::Hex {
                            key,
                            left: left - 1,
                        },
                    }
                }
                // Digits are most of a number's bytes: take a run at once.
                State::Num(Num::Int | Num::Frac | Num::ExpDigits) if b.is_ascii_digit() => {
                    i += digit_run(&bytes[i..]);
                    continue;
                }
                State::Num(n) => {
                    let next = match (n, b) {
                        (Num::Minus, b'0') => Some(Num::Zero),
                        (Num::Minus, b'1'..=b'9') => Some(Num::Int),
                        (Num::Zero, b'0'..=b'9') => {
                            return Err(self.bad("a number may not have a leading zero"));
                        }
                        (Num::Int, b'0'..=b'9') => Some(Num::Int),
                        (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
                        (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
                        (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::Exp),
                        (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
                        (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => {
                            Some(Num::ExpDigits)
                        }
                        _ => None,
                    };
                    match next {
                        Some(n) => State::Num(n),
                        None if n.complete() => {
                            // The byte after the number: judge it afresh.
                            self.state = self.after_value();
                            continue;
                        }
                        None => return Err(self.bad("a malformed number")),
                    }
                }
                State::Literal(word, at) => {
                    if word.get(at as usize) != Some(&b) {
                        return Err(self.bad("a malformed literal (true, false or null)"));
                    }
                    if at as usize + 1 == word.len() {
                        self.after_value()
                    } else {
                        State::Literal(word, at + 1)
                    }
                }
                State::Str { .. } => unreachable!("strings are handled above"),
            };
            i += 1;
        }
        Ok(())
    }
}

/// A byte in each lane of a word.
pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
/// Each lane's high bit.
pub(crate) const HIGH: u64 = 0x8080_8080_8080_8080;

/// Whether `c` ends a string's plain run: `"`, a backslash or a control
/// character.
pub(crate) fn ends_plain_run(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// The high bit of each byte of `x` that ends a string's plain run. A
/// borrow may also mark bytes above a marked one, never below, so the
/// lowest mark is exact.
pub(crate) fn specials(x: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    zero(x ^ (ONES * u64::from(b'"')))
        | zero(x ^ (ONES * u64::from(b'\\')))
        // Below 0x20: subtracting 0x20 borrows into the high bit of a byte
        // that had it clear.
        | (x.wrapping_sub(ONES * 0x20) & !x & HIGH)
}

/// How many of `bytes` come before the first that ends a string's plain
/// run, eight at a time.
fn plain_run(bytes: &[u8]) -> usize {
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let special = specials(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        if special != 0 {
            return at + special.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    let rest = chunks.remainder();
    at + rest
        .iter()
        .position(|&c| ends_plain_run(c))
        .unwrap_or(rest.len())
}

/// How many of `bytes` are ASCII digits before the first that is not.
fn digit_run(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(bytes.len())
}

/// Whether `buf` holds a `\u` escape of a UTF-16 high surrogate
/// (`\uD800`-`\uDBFF`), which arrow-json 59 combines with its pair wrongly
/// above U+1FFFF (it ORs where it must add). A cheap scan: backslashes are
/// rare outside such text.
pub fn surrogate_escape(buf: &[u8]) -> bool {
    memchr::memchr_iter(b'\\', buf).any(|i| {
        buf.get(i + 1) == Some(&b'u')
            && matches!(buf.get(i + 2), Some(b'd' | b'D'))
            && matches!(
                buf.get(i + 3),
                Some(b'8'..=b'9' | b'a' | b'b' | b'A' | b'B')
            )
    })
}

/// Checks `text` whole: `Ok` if every line is one JSON object.
#[cfg(test)]
fn check(text: &[u8]) -> Result<(), Bad> {
    let mut c = Checker::default();
    c.feed(text)?;
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_serde_json_accepts_pass() {
        for ok in [
            "{}\n",
            "{\"a\":1}",
            "{\"a\": [1, 2.5, -0, 1e3, 1E-3, -0.5e+2], \"b\": {\"c\": null}}\n\n{\"d\": true, \"e\": false}\r\n",
            "  {\"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\"}  \n",
            "{\"k\": \"\u{2028}é😀\"}\n",
            "{\"a\":[]}\n{\"a\":[[],[{}]]}\n",
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok:?}");
            assert!(
                ok.lines().all(|l| l.trim().is_empty()
                    || serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object())),
                "{ok:?}"
            );
        }
    }

    #[test]
    fn what_the_lenient_decoder_takes_is_refused() {
        for (bad, line) in [
            ("{\"a\":[1,,2]}", 1),
            ("{\"a\":[1,]}", 1),
            ("{\"a\":[,1]}", 1),
            ("{\"a\":[1 2]}", 1),
            ("{\"a\":1,}", 1),
            ("{,\"a\":1}", 1),
            ("{\"a\":012}", 1),
            ("{\"a\":-01}", 1),
            ("{\"a\":1.}", 1),
            ("{\"a\":.5}", 1),
            ("{\"a\":+1}", 1),
            ("{\"a\":1e}", 1),
            ("{\"a\":0.1.2}", 1),
            ("{\"a\":1}\n{\"b\":2} {\"c\":3}\n", 2),
            ("{\"a\":1}{\"b\":2}", 1),
            ("[1,2]\n", 1),
            ("\"text\"\n", 1),
            ("{\"a\":tru}", 1),
            ("{\"a\":nul}", 1),
            ("{\"a\":\"tab\there\"}", 1),
            ("{\"a\":\"\\x\"}", 1),
            ("{\"a\":\"\\u12g4\"}", 1),
            ("{\"a\" 1}", 1),
            ("{\"a\":1", 1),
            ("{\n\"a\": 1\n}\n", 1),
            ("{\"a\":1}}", 1),
            ("{\"a\":[1}", 1),
        ] {
            let e = check(bad.as_bytes()).unwrap_err();
            assert_eq!(e.line, line, "{bad:?}: {e:?}");
            assert!(
                bad.lines().any(|l| !l.trim().is_empty()
                    && !serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object())),
                "serde_json accepts every line of {bad:?}"
            );
        }
    }

    #[test]
    fn chunks_cut_anywhere_give_the_same_verdict() {
        let text = "{\"a\": [1, -2.5e+3, \"x\\u00e9\\\"y\"], \"b\": {\"c\": true, \"d\": null}}\n{\"e\": 10}\n";
        let bad = "{\"a\": [1, -2.5e+3, \"x\\u00e9\\\"y\"], \"b\": {\"c\": true, \"d\": nul}}\n";
        for cut in 0..text.len() {
            let mut c = Checker::default();
            c.feed(&text.as_bytes()[..cut]).unwrap();
            c.feed(&text.as_bytes()[cut..]).unwrap();
            c.finish().unwrap();
        }
        for cut in 0..bad.len() {
            let mut c = Checker::default();
            let r = c
                .feed(&bad.as_bytes()[..cut])
                .and_then(|()| c.feed(&bad.as_bytes()[cut..]))
                .and_then(|()| c.finish());
            assert!(r.is_err(), "cut at {cut}");
        }
    }

    /// `s` as a JSON string escaped to ASCII, as Python's `json.dumps`
    /// writes it: a character above U+FFFF as a surrogate pair.
    fn ascii_json(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                ' '..='~' => out.push(c),
                c => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
            }
        }
        out.push('"');
        out
    }

    proptest::proptest! {
        /// Records a reference writer escaped to ASCII pass the check, and
        /// the path the connector picks for them decodes every string as
        /// written: arrow-json where it is right, serde_json where a
        /// surrogate pair is (arrow-json 59 decodes pairs above U+1FFFF
        /// wrongly).
        #[test]
        fn escaped_records_read_back_equal(strings in proptest::collection::vec(".{0,8}", 1..8)) {
            use std::sync::Arc;
            let text: String = strings
                .iter()
                .map(|s| format!("{{\"s\": {}}}\n", ascii_json(s)))
                .collect();
            proptest::prop_assert_eq!(check(text.as_bytes()), Ok(()));
            let astral = strings.iter().any(|s| s.chars().any(|c| c as u32 > 0xFFFF));
            let careful = surrogate_escape(text.as_bytes());
            proptest::prop_assert!(!astral || careful);
            let got: Vec<String> = if careful {
                text.lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["s"]
                        .as_str().unwrap().to_string())
                    .collect()
            } else {
                let schema = Arc::new(arrow_schema::Schema::new(vec![
                    arrow_schema::Field::new("s", arrow_schema::DataType::Utf8, true),
                ]));
                let mut d = arrow_json::ReaderBuilder::new(schema).build_decoder().unwrap();
                d.decode(text.as_bytes()).unwrap();
                let batch = d.flush().unwrap().unwrap();
                let col = batch.column(0).as_any()
                    .downcast_ref::<arrow_array::StringArray>().unwrap();
                col.iter().map(|v| v.unwrap().to_string()).collect()
            };
            proptest::prop_assert_eq!(got, strings);
        }
    }

    #[test]
    fn a_plain_run_ends_at_the_first_quote_backslash_or_control_byte() {
        let scalar = |b: &[u8]| {
            b.iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .unwrap_or(b.len())
        };
        let mut texts: Vec<Vec<u8>> = vec![vec![], b"abc".to_vec(), b"0123456789abcdef".to_vec()];
        // Every special byte at every place of a 20-byte run, among bytes
        // at the edges the word tricks must get right (0x20, 0x21, 0x7f,
        // 0x80, 0xff).
        for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for at in 0..20 {
                let mut t: Vec<u8> = (0..20)
                    .map(|i| [0x20, 0x7f, 0x80, 0xff, b'a', 0x21][i % 6])
                    .collect();
                t[at] = special;
                texts.push(t);
            }
        }
        for t in texts {
            for start in 0..t.len().min(9) {
                let run = &t[start..];
                assert_eq!(plain_run(run), scalar(run), "{run:?}");
            }
        }
    }

    #[test]
    fn depth_is_bounded() {
        check(b"{\"a\": \"\\uD840\\uDC00\"}\n").unwrap();
        let deep = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(
            check(deep.as_bytes())
                .unwrap_err()
                .reason
                .contains("30 levels")
        );
        let ok = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        check(ok.as_bytes()).unwrap();
    }
}
