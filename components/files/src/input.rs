//! Opening a file for sequential reading, decompressing by extension.

use std::io::{BufRead, BufReader, Read};

use flate2::read::MultiGzDecoder;
use sluice_connector_sdk::Error;
use sluice_connector_sdk::storage::ObjectReader;

use crate::options::FileRef;

/// Compression, from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// gzip (`.gz`, `.gzip`).
    Gzip,
    /// Zstandard (`.zst`, `.zstd`).
    Zstd,
}

impl Compression {
    /// Picks the codec from the file name's extension.
    pub fn of(location: &str) -> Self {
        let lower = location.to_ascii_lowercase();
        if lower.ends_with(".gz") || lower.ends_with(".gzip") {
            Compression::Gzip
        } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Opens `file` for sequential reading, decompressed; a compressed file
/// that decompresses to more than `limit` bytes fails the read
/// (`maxDecompressedBytes`).
pub fn open(file: &FileRef, limit: Option<u64>) -> Result<Box<dyn Read>, Error> {
    let raw = ObjectReader::new(file.location.clone(), file.size);
    let decoded: Box<dyn Read> = match Compression::of(&file.location) {
        Compression::None => return Ok(Box::new(raw)),
        Compression::Gzip => Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 20, raw))),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(raw)
                .map_err(|e| Error::Io(format!("{}: {e}", file.location)))?,
        ),
    };
    Ok(match limit {
        Some(limit) => Box::new(Bounded {
            inner: decoded,
            left: limit,
            limit,
        }),
        None => decoded,
    })
}

/// A decompressed stream that fails once it passes its limit: a small
/// compressed file cannot expand without end.
struct Bounded {
    inner: Box<dyn Read>,
    left: u64,
    limit: u64,
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.left.checked_sub(n as u64) {
            Some(left) => {
                self.left = left;
                Ok(n)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "it decompresses to more than {} bytes (the maxDecompressedBytes limit)",
                    self.limit
                ),
            )),
        }
    }
}

/// A buffered reader that can be asked for more bytes while it still holds
/// some not consumed, so that a record the buffer's end cuts can be read
/// whole from one slice. It starts small (a small file costs no megabyte
/// of zeroed buffer) and doubles up to its capacity while reads fill it,
/// and past that only as far as one record needs.
pub struct Refill {
    inner: Box<dyn Read>,
    buf: Vec<u8>,
    /// The unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    capacity: usize,
}

impl Refill {
    const FIRST: usize = 64 << 10;

    /// Reads `inner` through a buffer that grows to `capacity` bytes.
    pub fn new(inner: Box<dyn Read>, capacity: usize) -> Self {
        Refill {
            inner,
            buf: vec![0; Self::FIRST.min(capacity)],
            start: 0,
            end: 0,
            capacity,
        }
    }

    /// The bytes read and not consumed.
    pub fn buffer(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads more after the bytes not consumed, which move to the front of
    /// the buffer (growing it when they fill it); `false` at the end of
    /// the input.
    pub fn fill_more(&mut self) -> std::io::Result<bool> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.inner.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n > 0)
    }
}

impl Read for Refill {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.fill_buf()?.read(out)?;
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Refill {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.start == self.end {
            let filled = self.end == self.buf.len();
            self.start = 0;
            self.end = 0;
            // A read that filled the buffer asks for a bigger one.
            if filled && self.buf.len() < self.capacity {
                self.buf.resize((self.buf.len() * 2).min(self.capacity), 0);
            }
            self.end = self.inner.read(&mut self.buf)?;
        }
        Ok(self.buffer())
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }
}

/// Where the first record of a split starting at `start` begins: just after
/// the first newline at or after byte `start - 1` (the end of the file if
/// there is none).
pub fn first_record_at(file: &FileRef, start: u64) -> Result<u64, Error> {
    if start == 0 {
        return Ok(0);
    }
    let mut pos = start - 1;
    while pos < file.size {
        let len = (1u64 << 20).min(file.size - pos);
        let chunk = sluice_connector_sdk::host::get_range(&file.location, pos, len)?;
        if chunk.is_empty() {
            break;
        }
        if let Some(i) = chunk.iter().position(|b| *b == b'\n') {
            return Ok(pos + i as u64 + 1);
        }
        pos += chunk.len() as u64;
    }
    Ok(file.size)
}

/// Opens bytes `from..` of `file` (never compressed: the host splits only
/// plain files).
pub fn open_at(file: &FileRef, from: u64) -> Box<dyn Read> {
    Box::new(ObjectReader::with_range(
        file.location.clone(),
        from,
        file.size,
    ))
}

/// Maps a read error to the WIT error, naming the file.
pub fn io_error(file: &FileRef, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
            Error::Data(format!("{}: {e}", file.location))
        }
        _ => Error::Io(format!("{}: {e}", file.location)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_stream_fails_past_its_limit() {
        let mut ok = Bounded {
            inner: Box::new(&b"12345"[..]),
            left: 5,
            limit: 5,
        };
        let mut out = Vec::new();
        ok.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"12345");
        let mut over = Bounded {
            inner: Box::new(&b"123456"[..]),
            left: 5,
            limit: 5,
        };
        let e = over.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("maxDecompressedBytes"), "{e}");
    }
}
