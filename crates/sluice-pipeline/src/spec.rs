//! The description of an ingest, validated before anything runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;

pub use sluice_files_contract::Format;

impl From<sluice_files_contract::UnknownFormat> for Error {
    fn from(e: sluice_files_contract::UnknownFormat) -> Self {
        Error::Invalid(e.to_string())
    }
}

/// One batch ingest: read `source` as `format`, write `table`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ingest {
    /// A file, directory or glob; a local path or an object-store URL.
    pub source: String,
    /// Input format.
    pub format: Format,
    /// Reader options by their Auto Loader names (`header`, `delimiter`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Target table: a local path or an object-store URL.
    pub table: String,
}

impl Ingest {
    /// Parses `key=value` reader options, refusing malformed pairs.
    pub fn parse_options(pairs: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let mut out = BTreeMap::new();
        for pair in pairs {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                Error::Invalid(format!(
                    "option '{pair}' must be key=value, e.g. header=true"
                ))
            })?;
            let k = k.trim();
            if k.is_empty() {
                return Err(Error::Invalid(format!("option '{pair}' has no name")));
            }
            if out.insert(k.to_string(), v.to_string()).is_some() {
                return Err(Error::Invalid(format!("option '{k}' is given twice")));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_refuse_garbage() {
        let o = Ingest::parse_options(&["header=true".into(), "delimiter=;".into()]).unwrap();
        assert_eq!(o["delimiter"], ";");
        assert!(Ingest::parse_options(&["header".into()]).is_err());
        assert!(Ingest::parse_options(&["a=1".into(), "a=2".into()]).is_err());
        assert_eq!("NDJSON".parse::<Format>().unwrap(), Format::Json);
        assert!("xml".parse::<Format>().is_err());
        assert_eq!(Format::from_path("in/A.CSV.gz"), Some(Format::Csv));
        assert_eq!(Format::from_path("x.jsonl"), Some(Format::Json));
        assert_eq!(Format::from_path("x.txt"), None);
    }
}
