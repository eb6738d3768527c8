//! The built-in files connector's contract beyond WIT.
//!
//! WIT says how a connector is called (`check`, `discover`, `read`) and
//! that its config is JSON text; what that JSON holds for the files
//! connector is said here, once, for the host that writes it and the guest
//! that reads it (this crate builds natively and for `wasm32-wasip2`):
//!
//! - [`Config`]: the input [`Format`], the [`FileRef`]s the host planned
//!   (whole files or byte ranges of them), Auto Loader's reader options,
//!   and the schema to read with;
//! - [`RangeReport`]: the checkpoint text a connector returns when it ends
//!   a byte range, so the host can check adjacent ranges met;
//! - [`APPENDED`]: the schema metadata key listing the columns the
//!   connector appends to the data's (the rescued data column,
//!   `_metadata`).
//!
//! ```
//! use sluice_files_contract::{Config, FileRef, Format};
//! let config = Config {
//!     files: vec![FileRef::whole("file:///in/a.csv", 10, 0)],
//!     ..Config::new(Format::Csv)
//! };
//! let text = serde_json::to_string(&config).unwrap();
//! let back: Config = serde_json::from_str(&text).unwrap();
//! assert_eq!(back, config);
//! ```

use std::collections::BTreeMap;
use std::str::FromStr;

use arrow_schema::Schema;
use serde::{Deserialize, Serialize};

/// Schema metadata key in which the files connector lists, comma-separated,
/// the columns it appends to the data's (the rescued data column,
/// `_metadata`), so a schema handed back to `read` splits the same way
/// `discover` built it.
pub const APPENDED: &str = "sluice.appended";

/// The columns `schema` says were appended to the data's ([`APPENDED`]).
pub fn appended(schema: &Schema) -> Vec<&str> {
    schema
        .metadata()
        .get(APPENDED)
        .map(|a| a.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// Input formats of the files connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Delimited text.
    Csv,
    /// Newline-delimited JSON, or whole JSON documents.
    Json,
    /// Apache Parquet.
    Parquet,
}

/// A format name that is none of `csv`, `json` (`ndjson`, `jsonl`) and
/// `parquet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl std::fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown format '{}'; use csv, json or parquet", self.0)
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "json" | "ndjson" | "jsonl" => Ok(Format::Json),
            "parquet" => Ok(Format::Parquet),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

impl Format {
    /// The format a file name's extension says (`.csv`, `.json`,
    /// `.ndjson`, `.jsonl`, `.parquet`), after a compression suffix
    /// (`.gz`, `.gzip`, `.zst`, `.zstd`).
    pub fn from_path(path: &str) -> Option<Format> {
        let path = path.to_ascii_lowercase();
        let path = [".gz", ".gzip", ".zst", ".zstd"]
            .iter()
            .find_map(|c| path.strip_suffix(c))
            .unwrap_or(&path);
        [
            (".csv", Format::Csv),
            (".json", Format::Json),
            (".ndjson", Format::Json),
            (".jsonl", Format::Json),
            (".parquet", Format::Parquet),
        ]
        .into_iter()
        .find_map(|(ext, format)| path.ends_with(ext).then_some(format))
    }
}

/// One file to read: whole, or the records whose first byte lies in a
/// byte range of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// Full URL of the object.
    pub location: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    #[serde(default)]
    pub last_modified_ms: i64,
    /// `[start, end)`: read only the records whose first byte lies here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<(u64, u64)>,
}

impl FileRef {
    /// The whole file at `location`.
    pub fn whole(location: &str, size: u64, last_modified_ms: i64) -> Self {
        FileRef {
            location: location.to_string(),
            size,
            last_modified_ms,
            range: None,
        }
    }

    /// The last path segment.
    pub fn name(&self) -> &str {
        self.location.rsplit('/').next().unwrap_or(&self.location)
    }

    /// Bytes this reads: the range's, or the whole file's.
    pub fn bytes(&self) -> u64 {
        self.range.map_or(self.size, |(s, e)| e - s)
    }
}

/// The JSON the host passes to the files connector's `check`, `discover`
/// and `read`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Input format.
    pub format: Format,
    /// The files to read, planned by the host.
    #[serde(default)]
    pub files: Vec<FileRef>,
    /// Reader options, by their Auto Loader names.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The output schema to read with (as `discover` returned it); inferred
    /// from the files when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Schema>,
}

impl Config {
    /// A config for `format` with no files, no options and no schema.
    pub fn new(format: Format) -> Self {
        Config {
            format,
            files: Vec::new(),
            options: BTreeMap::new(),
            schema: None,
        }
    }
}

/// What the files connector returns, as a batch's checkpoint text, when it
/// ends a byte range: where the range's first record began and where the
/// first record after it begins. Adjacent ranges met exactly when each
/// one's `stop` is the next one's `first`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeReport {
    /// The file.
    pub location: String,
    /// The range's start.
    pub start: u64,
    /// The range's end.
    pub end: u64,
    /// Where its first record began.
    pub first: u64,
    /// Where the first record after it begins (the file size at the end).
    pub stop: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_file_says_no_range_and_old_configs_still_read() {
        let f = FileRef::whole("s3://b/a.csv", 5, 7);
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"location":"s3://b/a.csv","size":5,"last_modified_ms":7}"#
        );
        let c: Config = serde_json::from_str(r#"{"format": "json"}"#).unwrap();
        assert_eq!(c, Config::new(Format::Json));
        assert!(serde_json::from_str::<Config>(r#"{"format": "csv", "extra": 1}"#).is_err());
    }

    #[test]
    fn formats_by_name_and_by_extension() {
        assert_eq!("NDJSON".parse::<Format>(), Ok(Format::Json));
        assert!(
            "xml"
                .parse::<Format>()
                .unwrap_err()
                .to_string()
                .contains("use csv")
        );
        assert_eq!(Format::from_path("a/b.CSV.gz"), Some(Format::Csv));
        assert_eq!(Format::from_path("a/b.txt"), None);
    }

    #[test]
    fn appended_columns_come_from_the_metadata() {
        let s =
            Schema::empty().with_metadata([(APPENDED.into(), "_rescued,_metadata".into())].into());
        assert_eq!(appended(&s), ["_rescued", "_metadata"]);
        assert!(appended(&Schema::empty()).is_empty());
    }
}
