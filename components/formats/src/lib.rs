//! The connectors' pure parsing pieces: what reads bytes into records and
//! judges their syntax, with no host imports, so the same code runs in the
//! files and Kafka components, in native tests and fuzz targets
//! (`tests/fuzz`).
//!
//! ```
//! use sluice_formats::json::Checker;
//! let mut c = Checker::default();
//! assert!(c.feed(b"{\"a\": [1, 2]}\n").is_ok());
//! assert!(c.feed(b"{\"a\": [1,,2]}\n").is_err());
//! ```

pub mod csv;
pub mod flat_json;
pub mod hints;
pub mod json;
pub mod kinds;
pub mod objects;
