//! The connector's configuration and reader options.
//!
//! Reader options use the names Auto Loader and Spark use (`header`,
//! `delimiter`, `inferColumnTypes`, `schemaHints`, `mode`,
//! `rescuedDataColumn`, ...). Unknown names and bad values are refused with a
//! message that says what to fix; nothing is read before they validate.

use std::collections::BTreeMap;

use arrow_schema::DataType;
use sluice_connector_sdk::Error;

pub use sluice_files_contract::{Config, FileRef, Format};
use sluice_formats::hints::parse_schema_hints;

pub use sluice_formats::objects::Mode;

/// Validated reader options.
#[derive(Debug, Clone)]
pub struct Options {
    /// CSV: the first record names the columns.
    pub header: bool,
    /// CSV: field delimiter.
    pub delimiter: u8,
    /// CSV: quote character.
    pub quote: u8,
    /// CSV: escape character inside quoted fields; `None` means doubled quotes.
    pub escape: Option<u8>,
    /// CSV: lines starting with this byte are skipped.
    pub comment: Option<u8>,
    /// A field equal to this string is null.
    pub null_value: String,
    /// Infer column types; otherwise every leaf column is a string.
    pub infer_column_types: bool,
    /// Types that override inference, by column name.
    pub schema_hints: Vec<(String, DataType)>,
    /// Malformed-record policy.
    pub mode: Mode,
    /// Name of the rescued data column, when rescue is on.
    pub rescued_data_column: Option<String>,
    /// Rows per emitted batch.
    pub batch_size: usize,
    /// The most bytes a compressed file may decompress to.
    pub max_decompressed_bytes: Option<u64>,
    /// JSON: a file holds whole, possibly pretty-printed objects (one or
    /// more), not one record per line.
    pub multi_line: bool,
}

const KNOWN: &[&str] = &[
    "batchSize",
    "comment",
    "delimiter",
    "encoding",
    "escape",
    "header",
    "inferColumnTypes",
    "inferSchema",
    "maxDecompressedBytes",
    "mode",
    "multiLine",
    "nullValue",
    "quote",
    "rescuedDataColumn",
    "schemaHints",
    "sep",
];

impl Options {
    /// The CSV syntax these options give.
    pub fn syntax(&self) -> sluice_formats::csv::Syntax {
        sluice_formats::csv::Syntax {
            delimiter: self.delimiter,
            quote: self.quote,
            escape: self.escape,
            comment: self.comment,
        }
    }

    /// Validates `raw` (option name → value).
    pub fn parse(raw: &BTreeMap<String, String>) -> Result<Self, Error> {
        let mut o = Options {
            header: true,
            delimiter: b',',
            quote: b'"',
            escape: None,
            comment: None,
            null_value: String::new(),
            infer_column_types: true,
            schema_hints: Vec::new(),
            mode: Mode::FailFast,
            rescued_data_column: None,
            batch_size: 16_384,
            max_decompressed_bytes: None,
            multi_line: false,
        };
        for (key, value) in raw {
            let name = key.strip_prefix("cloudFiles.").unwrap_or(key);
            match name {
                "header" => o.header = parse_bool(key, value)?,
                "delimiter" | "sep" => o.delimiter = parse_char(key, value)?,
                "quote" => o.quote = parse_char(key, value)?,
                "escape" => o.escape = Some(parse_char(key, value)?),
                "comment" => o.comment = Some(parse_char(key, value)?),
                "nullValue" => o.null_value = value.clone(),
                "inferColumnTypes" | "inferSchema" => {
                    o.infer_column_types = parse_bool(key, value)?
                }
                "schemaHints" => {
                    o.schema_hints = parse_schema_hints(value).map_err(Error::Config)?
                }
                "mode" => o.mode = Mode::parse(key, value).map_err(Error::Config)?,
                "rescuedDataColumn" => {
                    if value.is_empty() {
                        return Err(Error::Config(format!("option '{key}' needs a column name")));
                    }
                    o.rescued_data_column = Some(value.clone())
                }
                "batchSize" => o.batch_size = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1_048_576).contains(n))
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "option '{key}' must be a row count from 1 to 1048576, got '{value}'"
                        ))
                    })?,
                "maxDecompressedBytes" => o.max_decompressed_bytes = Some(
                    value
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            Error::Config(format!(
                                "option '{key}' must be a positive number of bytes, got '{value}'"
                            ))
                        })?,
                ),
                "encoding" => {
                    let v = value.to_ascii_lowercase().replace('-', "");
                    if v != "utf8" {
                        return Err(Error::Config(format!(
                            "option '{key}': only UTF-8 input is supported, got '{value}'"
                        )));
                    }
                }
                // CSV's quoted fields may always span lines; for JSON it
                // reads whole (pretty-printed) objects rather than lines.
                "multiLine" => o.multi_line = parse_bool(key, value)?,
                _ => {
                    return Err(Error::Config(format!(
                        "unknown option '{key}'{}; known options: {}",
                        suggest(name)
                            .map(|s| format!(" (did you mean '{s}'?)"))
                            .unwrap_or_default(),
                        KNOWN.join(", ")
                    )));
                }
            }
        }
        if o.mode == Mode::Permissive && o.rescued_data_column.is_none() {
            o.rescued_data_column = Some("_rescued_data".to_string());
        }
        if o.escape == Some(o.quote) {
            // `escape` equal to `quote` is the doubled-quote convention.
            o.escape = None;
        }
        Ok(o)
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, Error> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::Config(format!(
            "option '{key}' must be true or false, got '{value}'"
        ))),
    }
}

fn parse_char(key: &str, value: &str) -> Result<u8, Error> {
    let unescaped = match value {
        "\\t" => "\t",
        other => other,
    };
    match unescaped.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(Error::Config(format!(
            "option '{key}' must be one ASCII character, got '{value}'"
        ))),
    }
}

fn suggest(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    KNOWN
        .iter()
        .copied()
        .find(|k| k.to_ascii_lowercase() == lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Result<Options, Error> {
        Options::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn unknown_option_suggests_the_right_spelling() {
        let err = opts(&[("Header", "true")]).unwrap_err().to_string();
        assert!(err.contains("did you mean 'header'"), "{err}");
    }

    #[test]
    fn permissive_turns_on_the_rescued_column() {
        let o = opts(&[("mode", "permissive")]).unwrap();
        assert_eq!(o.rescued_data_column.as_deref(), Some("_rescued_data"));
        assert_eq!(opts(&[]).unwrap().rescued_data_column, None);
    }

    #[test]
    fn cloudfiles_prefix_is_accepted_and_bad_values_refused() {
        assert_eq!(
            opts(&[("cloudFiles.delimiter", "|")]).unwrap().delimiter,
            b'|'
        );
        assert!(opts(&[("delimiter", "||")]).is_err());
        assert!(opts(&[("header", "yes")]).is_err());
    }
}
