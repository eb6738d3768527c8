//! CSV tokenized a batch of records at a time: plain lines split with
//! `memchr`, anything quoted through `csv-core`, and a check beside csv-core
//! for the quoting it forgives ([`QuoteFault`]).

use std::io::Read;

/// The syntax of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syntax {
    /// Field delimiter.
    pub delimiter: u8,
    /// Quote character.
    pub quote: u8,
    /// Escape character inside quoted fields; `None` means doubled quotes.
    pub escape: Option<u8>,
    /// Lines starting with this byte are skipped.
    pub comment: Option<u8>,
}

impl Default for Syntax {
    fn default() -> Self {
        Syntax {
            delimiter: b',',
            quote: b'"',
            escape: None,
            comment: None,
        }
    }
}

/// Streams records out of a reader, a batch at a time.
///
/// Lines without a quote or a lone carriage return, which are most lines of
/// most files, are split with `memchr` (SIMD) and copied in one piece; any
/// other record goes through `csv-core`, which handles quoting, escapes,
/// multi-line fields and a byte-order mark. Both paths meet at record
/// boundaries, where `csv-core` holds no state but its line count, which this
/// type keeps itself.
pub struct Tokenizer {
    input: Box<dyn Read>,
    core: csv_core::Reader,
    /// The plain-line fast path is safe with these options.
    fast: bool,
    quote: u8,
    comment: Option<u8>,
    delimiter: u8,
    inbuf: Vec<u8>,
    /// The input buffer grows up to this size while reads fill it.
    inbuf_limit: usize,
    in_pos: usize,
    in_len: usize,
    eof: bool,
    /// Field bytes of the records in the batch.
    data: Vec<u8>,
    data_len: usize,
    /// Absolute end offset in `data` of every field.
    ends: Vec<usize>,
    scratch_ends: Vec<usize>,
    records: Vec<RecordSpan>,
    /// Object offset of the first input byte, and input bytes consumed.
    base: u64,
    consumed: u64,
    /// Line feeds consumed so far.
    lines: u64,
    /// The last record ended at a carriage return.
    pending_lf: bool,
    /// The CSV syntax, for [`QuoteCheck`].
    escape: Option<u8>,
}

/// Where a record's fields are.
#[derive(Debug, Clone, Copy)]
struct RecordSpan {
    /// Index of its first field end in `ends`.
    first_end: usize,
    /// Field count.
    width: usize,
    /// Offset in `data` of its first field.
    start: usize,
    /// Bytes between one field's end and the next one's start: 0 where
    /// `csv-core` wrote the fields back to back, 1 where a plain line was
    /// copied with its delimiters.
    gap: usize,
    /// Line on which the record ends (1-based).
    line: u64,
    /// Object byte offset of its first byte.
    offset: u64,
    /// How its quoting is broken, if it is (csv-core reads on regardless).
    fault: Option<QuoteFault>,
}

/// A record whose quoting csv-core reads past without a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteFault {
    /// A quoted field opened on this line is never closed: csv-core would
    /// take the rest of the file as its value.
    Unterminated {
        /// The line the quote opened on.
        line: u64,
    },
    /// Text follows a closing quote on this line: csv-core would merge it
    /// into the value.
    TextAfterQuote {
        /// The line.
        line: u64,
    },
}

impl std::fmt::Display for QuoteFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuoteFault::Unterminated { line } => write!(
                f,
                "the quoted field opened on line {line} is never closed (the rest of the file would become one value)"
            ),
            QuoteFault::TextAfterQuote { line } => write!(
                f,
                "line {line}: text follows the closing quote of a field (quote the whole field, or double the quotes inside it)"
            ),
        }
    }
}

/// Where a quote-aware reading of a record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// At the start of a field (`record`: of a record, too).
    FieldStart { record: bool },
    /// In an unquoted field.
    Unquoted,
    /// In a quoted field.
    Quoted,
    /// After the escape character in a quoted field.
    Escaped,
    /// After a quote in a quoted field: it closes the field, or (doubled)
    /// stands for itself.
    QuoteInQuoted,
    /// In a comment line.
    Comment,
}

/// Mirrors csv-core's reading of one record's bytes to notice what csv-core
/// forgives: an unterminated quoted field and text after a closing quote.
/// It sees only records that hold a quote (or a carriage return); plain
/// lines never get here.
struct QuoteCheck {
    state: Quoting,
    quote: u8,
    delimiter: u8,
    escape: Option<u8>,
    comment: Option<u8>,
    /// The line of the byte being read, and where the open quote began.
    line: u64,
    opened: u64,
    fault: Option<QuoteFault>,
}

impl QuoteCheck {
    fn new(tok: &Tokenizer) -> Self {
        QuoteCheck {
            state: Quoting::FieldStart { record: true },
            quote: tok.quote,
            delimiter: tok.delimiter,
            escape: tok.escape,
            comment: tok.comment,
            line: tok.lines + 1,
            opened: 0,
            fault: None,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let end = b == b'\n' || b == b'\r';
            self.state = match self.state {
                Quoting::FieldStart { record: true } if Some(b) == self.comment => Quoting::Comment,
                Quoting::FieldStart { .. } if b == self.quote => {
                    self.opened = self.line;
                    Quoting::Quoted
                }
                Quoting::FieldStart { .. } | Quoting::Unquoted if end => {
                    Quoting::FieldStart { record: true }
                }
                Quoting::FieldStart { .. } | Quoting::Unquoted if b == self.delimiter => {
                    Quoting::FieldStart { record: false }
                }
                Quoting::FieldStart { .. } | Quoting::Unquoted => Quoting::Unquoted,
                Quoting::Comment if b == b'\n' => Quoting::FieldStart { record: true },
                Quoting::Comment => Quoting::Comment,
                Quoting::Quoted if Some(b) == self.escape => Quoting::Escaped,
                Quoting::Quoted if b == self.quote => Quoting::QuoteInQuoted,
                Quoting::Quoted => Quoting::Quoted,
                Quoting::Escaped => Quoting::Quoted,
                Quoting::QuoteInQuoted if b == self.quote && self.escape.is_none() => {
                    Quoting::Quoted
                }
                Quoting::QuoteInQuoted if end => Quoting::FieldStart { record: true },
                Quoting::QuoteInQuoted if b == self.delimiter => {
                    Quoting::FieldStart { record: false }
                }
                Quoting::QuoteInQuoted => {
                    self.fault
                        .get_or_insert(QuoteFault::TextAfterQuote { line: self.line });
                    Quoting::Unquoted
                }
            };
            if b == b'\n' {
                self.line += 1;
            }
        }
    }

    /// The verdict once the record ended (`eof`: at the end of the input).
    fn finish(&self, eof: bool) -> Option<QuoteFault> {
        if eof && matches!(self.state, Quoting::Quoted | Quoting::Escaped) {
            return Some(QuoteFault::Unterminated { line: self.opened });
        }
        self.fault
    }
}

impl Tokenizer {
    /// Tokenizes `input` with the CSV options.
    pub fn new(input: Box<dyn Read>, opts: &Syntax) -> Self {
        Self::at(input, opts, 0)
    }

    /// Tokenizes `input`, which starts at byte `base` of its object.
    pub fn at(input: Box<dyn Read>, opts: &Syntax, base: u64) -> Self {
        Tokenizer {
            input,
            core: core_reader(opts),
            fast: opts.delimiter != b'\r' && opts.delimiter != b'\n',
            quote: opts.quote,
            comment: opts.comment,
            delimiter: opts.delimiter,
            inbuf: vec![0; FIRST_BUFFER],
            inbuf_limit: BUFFER,
            in_pos: 0,
            in_len: 0,
            eof: false,
            data: vec![0; FIRST_BUFFER],
            data_len: 0,
            ends: Vec::new(),
            scratch_ends: vec![0; 256],
            records: Vec::new(),
            base,
            consumed: 0,
            lines: 0,
            pending_lf: false,
            escape: opts.escape,
        }
    }

    /// A small input buffer, and the fast path on or off, to test that both
    /// paths agree wherever a buffer boundary falls.
    #[cfg(test)]
    pub(crate) fn with_limits(mut self, buffer: usize, fast: bool) -> Self {
        self.inbuf = vec![0; buffer];
        self.inbuf_limit = buffer;
        self.fast = fast;
        self
    }

    /// Records held in the current batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Drops the batch's records, keeping buffers.
    pub fn clear(&mut self) {
        self.data_len = 0;
        self.ends.clear();
        self.records.clear();
    }

    /// Field `i` of record `r`, if the record has that many fields.
    #[inline(always)]
    pub fn field(&self, r: usize, i: usize) -> Option<&[u8]> {
        let rec = &self.records[r];
        if i >= rec.width {
            return None;
        }
        let start = if i == 0 {
            rec.start
        } else {
            self.ends[rec.first_end + i - 1] + rec.gap
        };
        Some(&self.data[start..self.ends[rec.first_end + i]])
    }

    /// Number of fields of record `r`.
    pub fn width(&self, r: usize) -> usize {
        self.records[r].width
    }

    /// Object byte offset where record `r` starts.
    pub fn start(&self, r: usize) -> u64 {
        self.records[r].offset
    }

    /// Drops the last record read.
    pub fn pop(&mut self) {
        if let Some(rec) = self.records.pop() {
            self.data_len = rec.start;
            self.ends.truncate(rec.first_end);
        }
    }

    /// Line on which record `r` ends (1-based).
    pub fn line(&self, r: usize) -> u64 {
        self.records[r].line
    }

    /// How record `r`'s quoting is broken, if it is.
    pub fn fault(&self, r: usize) -> Option<QuoteFault> {
        self.records[r].fault
    }

    /// Reads one more record into the batch; `false` at the end of input.
    pub fn read_record(&mut self) -> std::io::Result<bool> {
        if self.consumed == 0 && self.base == 0 {
            self.skip_bom()?;
        }
        loop {
            // A record csv-core ended at a carriage return still owns the
            // line feed after it.
            if std::mem::take(&mut self.pending_lf)
                && self.fill()?
                && self.inbuf[self.in_pos] == b'\n'
            {
                self.advance(1, 1);
            }
            let (len, feed) = match self.next_line()? {
                Line::End => return Ok(false),
                Line::TooLong => return self.core_record(),
                Line::Found { len, feed } => (len, feed),
            };
            let line = &self.inbuf[self.in_pos..self.in_pos + len];
            let body = line.strip_suffix(b"\r").unwrap_or(line);
            if body.is_empty() || self.comment.is_some_and(|c| body[0] == c) {
                // Blank lines and comments are no records (as in Spark).
                self.advance(len + usize::from(feed), u64::from(feed));
                continue;
            }
            if !self.fast || memchr::memchr2(self.quote, b'\r', body).is_some() {
                return self.core_record();
            }
            self.plain_record(body.len(), len + usize::from(feed), feed);
            return Ok(true);
        }
    }

    /// Skips a UTF-8 byte-order mark at the start of the input.
    fn skip_bom(&mut self) -> std::io::Result<()> {
        while self.in_len - self.in_pos < 3 && self.more()? {}
        if self.inbuf[self.in_pos..self.in_len].starts_with(b"\xEF\xBB\xBF") {
            self.advance(3, 0);
        }
        Ok(())
    }

    /// Consumes `bytes` input bytes holding `feeds` line feeds.
    fn advance(&mut self, bytes: usize, feeds: u64) {
        self.in_pos += bytes;
        self.consumed += bytes as u64;
        self.lines += feeds;
    }

    /// Finds the end of the line at the read position, reading more input
    /// as needed (up to [`MAX_LINE`] bytes).
    fn next_line(&mut self) -> std::io::Result<Line> {
        let mut searched = 0;
        loop {
            let rest = &self.inbuf[self.in_pos..self.in_len];
            if let Some(i) = memchr::memchr(b'\n', &rest[searched..]) {
                return Ok(Line::Found {
                    len: searched + i,
                    feed: true,
                });
            }
            searched = rest.len();
            if rest.len() >= MAX_LINE {
                return Ok(Line::TooLong);
            }
            if !self.more()? {
                let len = self.in_len - self.in_pos;
                return Ok(if len == 0 {
                    Line::End
                } else {
                    Line::Found { len, feed: false }
                });
            }
        }
    }

    /// Moves the unread bytes to the front of the buffer and reads more
    /// after them, growing the buffer when it is full; `false` at the end.
    fn more(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        self.outgrown();
        let rest = self.in_len - self.in_pos;
        self.inbuf.copy_within(self.in_pos..self.in_len, 0);
        self.in_pos = 0;
        self.in_len = rest;
        if rest == self.inbuf.len() {
            self.inbuf.resize(self.inbuf.len() * 2, 0);
        }
        let n = read_full(&mut self.input, &mut self.inbuf[rest..])?;
        self.in_len += n;
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// Doubles the input buffer, up to [`BUFFER`], once a read has filled
    /// it: a small file (or Kafka message set) is read into a small buffer,
    /// a large one in large pieces.
    fn outgrown(&mut self) {
        if self.in_len == self.inbuf.len() && self.inbuf.len() < self.inbuf_limit {
            self.inbuf.resize(self.inbuf.len() * 2, 0);
        }
    }

    /// Takes the line at the read position, `body` bytes without its
    /// terminator and `taken` bytes with it (`feed`: ending in a line feed),
    /// as a record: it holds no quote and no carriage return, so its fields
    /// are what lies between the delimiters. The line is copied in one
    /// piece, delimiters included.
    fn plain_record(&mut self, body: usize, taken: usize, feed: bool) {
        let offset = self.base + self.consumed;
        let line = self.lines + 1;
        if self.data.len() - self.data_len < body {
            let grow = self.data.len().max(body);
            self.data.resize(self.data.len() + grow, 0);
        }
        let start = self.data_len;
        let end = start + body;
        self.data[start..end].copy_from_slice(&self.inbuf[self.in_pos..self.in_pos + body]);
        let first_end = self.ends.len();
        self.ends
            .extend(memchr::memchr_iter(self.delimiter, &self.data[start..end]).map(|d| start + d));
        self.ends.push(end);
        self.data_len = end;
        self.advance(taken, u64::from(feed));
        self.records.push(RecordSpan {
            first_end,
            width: self.ends.len() - first_end,
            start,
            gap: 1,
            line,
            offset,
            fault: None,
        });
    }

    /// Refills the input buffer once it is used up; `false` at the end.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.in_pos == self.in_len && !self.eof {
            self.outgrown();
            self.in_len = read_full(&mut self.input, &mut self.inbuf)?;
            self.in_pos = 0;
            self.eof = self.in_len == 0;
        }
        Ok(self.in_pos < self.in_len)
    }

    /// Reads one record with csv-core.
    fn core_record(&mut self) -> std::io::Result<bool> {
        let record_start = self.data_len;
        let first_end = self.ends.len();
        let mut nends = 0usize;
        let mut offset = self.base + self.consumed;
        // Line feeds consumed by this record, and its last byte.
        let mut feeds = 0u64;
        let mut last = None;
        let mut check = QuoteCheck::new(self);
        loop {
            self.fill()?;
            if self.data.len() - self.data_len < 1024 {
                let grow = self.data.len();
                self.data.resize(self.data.len() + grow, 0);
            }
            let (res, nin, nout, nend) = self.core.read_record(
                &self.inbuf[self.in_pos..self.in_len],
                &mut self.data[self.data_len..],
                &mut self.scratch_ends[nends..],
            );
            if nin > 0 {
                let taken = &self.inbuf[self.in_pos..self.in_pos + nin];
                feeds += memchr::memchr_iter(b'\n', taken).count() as u64;
                last = taken.last().copied();
                check.feed(taken);
            }
            self.in_pos += nin;
            self.consumed += nin as u64;
            self.data_len += nout;
            nends += nend;
            use csv_core::ReadRecordResult::*;
            match res {
                InputEmpty | OutputFull => continue,
                OutputEndsFull => {
                    let len = self.scratch_ends.len();
                    self.scratch_ends.resize(len * 2, 0);
                }
                Record => {
                    if nends == 1 && self.data_len == record_start {
                        // A blank line is no record (as in Spark).
                        nends = 0;
                        check = QuoteCheck::new(self);
                        check.line += feeds;
                        offset = self.base + self.consumed;
                        if last == Some(b'\r') && self.inbuf.get(self.in_pos) == Some(&b'\n') {
                            offset += 1;
                        }
                        continue;
                    }
                    self.ends
                        .extend(self.scratch_ends[..nends].iter().map(|e| record_start + e));
                    // The record ends on the line its terminator closes; a
                    // record ended by a carriage return or by the end of the
                    // input ends on the line after the last feed.
                    let before = self.lines;
                    self.lines += feeds;
                    self.pending_lf = last == Some(b'\r');
                    let line = if last == Some(b'\n') {
                        self.lines
                    } else {
                        self.lines + 1
                    };
                    debug_assert!(line > before);
                    self.records.push(RecordSpan {
                        first_end,
                        width: nends,
                        start: record_start,
                        gap: 0,
                        line,
                        offset,
                        fault: check.finish(self.eof && self.in_pos == self.in_len),
                    });
                    return Ok(true);
                }
                End => return Ok(false),
            }
        }
    }
}

/// Where the line at the read position ends.
enum Line {
    /// It has `len` bytes before its line feed (or before the end of the
    /// input, when `feed` is false).
    Found { len: usize, feed: bool },
    /// It is longer than [`MAX_LINE`]: csv-core streams it.
    TooLong,
    /// There is no more input.
    End,
}

/// The longest line [`Tokenizer::next_line`] buffers to look at whole.
const MAX_LINE: usize = 16 << 20;

/// The input buffer and the field buffer start this large: filling them
/// costs time (a megabyte each for each of 10,000 small files was a sixth
/// of loading them), and most inputs that are small stay small.
const FIRST_BUFFER: usize = 64 << 10;

/// The input buffer grows to this size while a read fills it.
const BUFFER: usize = 1 << 20;

thread_local! {
    /// The csv-core reader of the last tokenizer dropped, and its syntax.
    static SPARE: std::cell::RefCell<Option<(Syntax, csv_core::Reader)>> =
        const { std::cell::RefCell::new(None) };
}

/// A csv-core reader for `syntax`, as new. Building one works out its
/// state machine, about a seventh of loading 10,000 small files when a
/// reader was built for each, so the last tokenizer's is reset and reused
/// (not cloned: csv-core's `Clone` copies only part of the state machine).
fn core_reader(syntax: &Syntax) -> csv_core::Reader {
    match SPARE.with_borrow_mut(Option::take) {
        Some((s, mut reader)) if s == *syntax => {
            reader.reset();
            reader
        }
        _ => csv_core::ReaderBuilder::new()
            .delimiter(syntax.delimiter)
            .quote(syntax.quote)
            .escape(syntax.escape)
            .double_quote(syntax.escape.is_none())
            .comment(syntax.comment)
            .build(),
    }
}

impl Drop for Tokenizer {
    fn drop(&mut self) {
        let syntax = Syntax {
            delimiter: self.delimiter,
            quote: self.quote,
            escape: self.escape,
            comment: self.comment,
        };
        let core = std::mem::take(&mut self.core);
        // During a thread's teardown there is no next tokenizer to give it.
        let _ = SPARE.try_with(|spare| *spare.borrow_mut() = Some((syntax, core)));
    }
}

fn read_full(input: &mut Box<dyn Read>, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(text: &str, opts: &Syntax) -> Tokenizer {
        let bytes = text.as_bytes().to_vec();
        Tokenizer::new(Box::new(std::io::Cursor::new(bytes)), opts)
    }

    fn default_opts() -> Syntax {
        Syntax::default()
    }

    #[test]
    fn tokenizer_handles_quotes_multiline_comments_and_bom() {
        let mut o = default_opts();
        o.comment = Some(b'#');
        let mut t = tok(
            "\u{feff}a,b\n# skipped\n1,\"x\ny\"\n2,\"he said \"\"hi\"\"\"\n",
            &o,
        );
        while t.read_record().unwrap() {}
        assert_eq!(t.len(), 3);
        assert_eq!(t.field(0, 0), Some(&b"a"[..]));
        assert_eq!(t.field(1, 1), Some(&b"x\ny"[..]));
        assert_eq!(t.field(2, 1), Some(&b"he said \"hi\""[..]));
        assert_eq!(t.line(0), 1);
        assert_eq!(t.line(2), 5);
    }

    fn faults(text: &str, opts: &Syntax) -> Vec<Option<QuoteFault>> {
        let mut t = tok(text, opts);
        while t.read_record().unwrap() {}
        (0..t.len()).map(|r| t.fault(r)).collect()
    }

    proptest::proptest! {
        /// Records written by the `csv` crate read back field for field,
        /// by the fast path and by csv-core alike, with no quote fault.
        #[test]
        fn records_a_reference_writer_wrote_read_back_equal(
            records in proptest::collection::vec(
                proptest::collection::vec("[a-z0-9 ,;\"\r\né#]{0,6}", 1..5),
                1..20,
            ),
            buffer in 16usize..64,
        ) {
            // A record of one empty field is a blank line to Spark and to
            // Sluice: leave those out.
            let records: Vec<Vec<String>> = records
                .into_iter()
                .filter(|r| !(r.len() == 1 && r[0].is_empty()))
                .collect();
            let mut w = ::csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
            for r in &records {
                w.write_record(r).unwrap();
            }
            let text = w.into_inner().unwrap();
            for fast in [true, false] {
                let mut t = Tokenizer::new(
                    Box::new(std::io::Cursor::new(text.clone())),
                    &default_opts(),
                )
                .with_limits(buffer, fast);
                while t.read_record().unwrap() {}
                proptest::prop_assert_eq!(t.len(), records.len());
                for (i, r) in records.iter().enumerate() {
                    let got: Vec<&[u8]> = (0..t.width(i)).map(|f| t.field(i, f).unwrap()).collect();
                    let want: Vec<&[u8]> = r.iter().map(|f| f.as_bytes()).collect();
                    proptest::prop_assert_eq!(got, want);
                    proptest::prop_assert_eq!(t.fault(i), None);
                }
            }
        }
    }

    #[test]
    fn broken_quoting_is_noticed_where_csv_core_reads_on() {
        let o = default_opts();
        // Unterminated: the rest of the file would be one value.
        assert_eq!(
            faults("a,b\n1,2\n3,\"x\n4,5\n6,7\n", &o),
            [None, None, Some(QuoteFault::Unterminated { line: 3 })]
        );
        // Text after the closing quote would be merged in.
        assert_eq!(
            faults("a,b\n1,\"x\"y\n2,3\n", &o),
            [None, Some(QuoteFault::TextAfterQuote { line: 2 }), None]
        );
        // What is well quoted passes: doubled quotes, quoted newlines,
        // quotes inside unquoted fields, CRLF.
        assert_eq!(
            faults(
                "a,b\r\n\"x\"\"y\",\"1\n2\"\r\nsay \"hi\",3\r\n\"z\"\r\n",
                &o
            ),
            [None, None, None, None]
        );
        let mut e = default_opts();
        e.escape = Some(b'\\');
        assert_eq!(faults("a\n\"x\\\"y\"\n\"p\\\\\"\n", &e), [None, None, None]);
    }

    fn all_records(t: &mut Tokenizer) -> Vec<(u64, u64, Vec<Vec<u8>>)> {
        while t.read_record().unwrap() {}
        (0..t.len())
            .map(|r| {
                let fields = (0..t.width(r)).map(|i| t.field(r, i).unwrap().to_vec());
                (t.line(r), t.start(r), fields.collect())
            })
            .collect()
    }

    #[test]
    fn plain_lines_agree_with_csv_core() {
        let mut o = default_opts();
        o.comment = Some(b'#');
        let text = "\u{feff}id,name,note\r\n1,a,plain\r\n2,\"b,c\",quoted\n\n# comment, here\n3,,\n\
                    4,\"multi\nline\",x\n5,d,\"he said \"\"hi\"\"\"\n6,e,f\rg\n7,last,row";
        let want = all_records(&mut tok(text, &o).with_limits(1 << 20, false));
        assert_eq!(want.len(), 9, "{want:?}");
        assert_eq!(want[1].0, 2, "CRLF lines count: {want:?}");
        assert_eq!(want[8].0, 11, "{want:?}");
        for buffer in 1..text.len() + 2 {
            let got = all_records(&mut tok(text, &o).with_limits(buffer, true));
            assert_eq!(got, want, "buffer of {buffer} bytes");
        }
    }
}
