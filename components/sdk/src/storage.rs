//! Reading objects through the host's granted object-store access.

use std::io::{self, Read};

use crate::{Error, ObjectMeta, host};

/// How many bytes one `get-range` call asks for when streaming an object:
/// enough that a call's round trip is a small share of its time (a 1 GiB
/// file is 512 calls), small enough that a connector's memory stays small
/// (each lane holds one chunk, in the guest and on its way from the host).
pub const DEFAULT_CHUNK: u64 = 2 * 1024 * 1024;

/// Lists every object under `prefix`, following the host's pagination.
pub fn list_all(prefix: &str) -> Result<Vec<ObjectMeta>, Error> {
    let mut out: Vec<ObjectMeta> = Vec::new();
    loop {
        let after = out.last().map(|m| m.location.clone());
        let page = host::list_objects(prefix, after.as_deref(), 1000)?;
        let done = page.len() < 1000;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// A sequential [`Read`] over an object, fetched in ranged chunks.
pub struct ObjectReader {
    location: String,
    size: u64,
    pos: u64,
    chunk: u64,
    buf: Vec<u8>,
    buf_pos: usize,
}

impl ObjectReader {
    /// Streams the object at `location`, of `size` bytes.
    pub fn new(location: impl Into<String>, size: u64) -> Self {
        Self::with_range(location, 0, size)
    }

    /// Streams bytes `start..end` of the object at `location`.
    pub fn with_range(location: impl Into<String>, start: u64, end: u64) -> Self {
        Self {
            location: location.into(),
            size: end,
            pos: start,
            chunk: DEFAULT_CHUNK,
            buf: Vec::new(),
            buf_pos: 0,
        }
    }

    /// Fetches `chunk` bytes per `get-range` call instead of the default.
    pub fn with_chunk(mut self, chunk: u64) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    /// Bytes of the object consumed by reads so far.
    pub fn position(&self) -> u64 {
        self.pos - (self.buf.len() - self.buf_pos) as u64
    }
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf_pos == self.buf.len() {
            if self.pos >= self.size {
                return Ok(0);
            }
            let len = self.chunk.min(self.size - self.pos);
            // The chunk read is dropped before the next one arrives: the
            // guest's memory holds one chunk, not two.
            self.buf = Vec::new();
            self.buf = host::get_range(&self.location, self.pos, len)
                .map_err(|e| io::Error::other(e.to_string()))?;
            if self.buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} ended at byte {} of {}",
                        self.location, self.pos, self.size
                    ),
                ));
            }
            self.pos += self.buf.len() as u64;
            self.buf_pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.buf_pos);
        out[..n].copy_from_slice(&self.buf[self.buf_pos..self.buf_pos + n]);
        self.buf_pos += n;
        Ok(n)
    }
}
