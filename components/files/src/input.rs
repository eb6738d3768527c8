//! Opening a file for sequential reading, decompressing by extension.

use std::io::{BufReader, Read};

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

/// Opens `file` for sequential reading, decompressed.
pub fn open(file: &FileRef) -> Result<Box<dyn Read>, Error> {
    let raw = ObjectReader::new(file.location.clone(), file.size);
    Ok(match Compression::of(&file.location) {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 20, raw))),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(raw)
                .map_err(|e| Error::Io(format!("{}: {e}", file.location)))?,
        ),
    })
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
