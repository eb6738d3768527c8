//! What a table name means.
//!
//! A table is given either as a path or URL (`./events`, `/lake/events`,
//! `s3://lake/events`: anything holding a `/`) or as a name: `table` or
//! `schema.table`, each part letters, digits, `_` and `-`. A name lives
//! under the warehouse root, laid out as Spark and Hive lay out theirs:
//!
//! ```text
//! events            <warehouse>/events
//! default.events    <warehouse>/events
//! sales.orders      <warehouse>/sales.db/orders
//! ```
//!
//! so a schema's tables never nest inside a table that shares the schema's
//! name, and a name can never climb out of the warehouse (`x..y`, `a.b.c`
//! and `../x` as names are refused, with what to write instead).
//!
//! ```
//! use sluice_location::Location;
//! use sluice_pipeline::table::TableRef;
//! let warehouse = Location::parse("s3://lake/warehouse", Default::default()).unwrap();
//! let t = TableRef::parse("sales.orders").unwrap().location(&warehouse).unwrap();
//! assert_eq!(t.url().as_str(), "s3://lake/warehouse/sales.db/orders");
//! ```

use sluice_location::Location;

use crate::error::{Error, Result};

/// The schema whose tables sit right under the warehouse root.
pub const DEFAULT_SCHEMA: &str = "default";

/// The longest part of a table name.
pub const MAX_NAME_PART: usize = 128;

/// A table as a user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableRef {
    /// A path or URL.
    Path(String),
    /// A name under the warehouse.
    Name {
        /// Its schema, when qualified (and not `default`).
        schema: Option<String>,
        /// The table's own name.
        table: String,
    },
}

impl TableRef {
    /// Reads a table as given on the command line, in a pipeline file or in
    /// an upload's URL: a path or URL if it holds a `/`, else a name.
    pub fn parse(text: &str) -> Result<Self> {
        if text.contains('/') || text.contains('\\') {
            return Ok(TableRef::Path(text.to_string()));
        }
        let parts: Vec<&str> = text.split('.').collect();
        Self::from_parts(&parts)
    }

    /// Reads an Iceberg table's name: `table`, `namespace.table` or
    /// `catalog.namespace.table` (returning the catalog part, which the
    /// caller checks against its catalog). A path is refused: an Iceberg
    /// table is named in its catalog.
    pub fn parse_iceberg(text: &str) -> Result<(Option<String>, Self)> {
        let parts: Vec<&str> = text.split('.').collect();
        if text.contains('/') || text.contains('\\') || parts.len() > 3 {
            return Err(Error::Invalid(format!(
                "Iceberg table '{}': an Iceberg table is named in its catalog as [catalog.]namespace.table or table (letters, digits, '_' and '-'), not by a path; its files go under the warehouse",
                text.escape_debug()
            )));
        }
        match parts[..] {
            [catalog, namespace, table] => Ok((
                Some(catalog.to_string()),
                Self::from_parts(&[namespace, table])?,
            )),
            _ => Ok((None, Self::from_parts(&parts)?)),
        }
    }

    /// A name from its dot-separated parts (as SQL identifiers give them).
    pub fn from_parts(parts: &[impl AsRef<str>]) -> Result<Self> {
        let parts: Vec<&str> = parts.iter().map(AsRef::as_ref).collect();
        let joined = parts.join(".");
        let invalid = |why: &str| {
            Error::Invalid(format!(
                "table name '{}': {why}; name a table as `table` or `schema.table` (letters, digits, '_' and '-'), or give a path such as ./{}",
                joined.escape_debug(),
                joined.escape_debug()
            ))
        };
        for p in &parts {
            if p.is_empty() {
                return Err(invalid("it has an empty part"));
            }
            if p.len() > MAX_NAME_PART {
                return Err(invalid(&format!(
                    "a part is longer than {MAX_NAME_PART} characters"
                )));
            }
            if !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            {
                return Err(invalid(
                    "it holds characters other than letters, digits, '_' and '-'",
                ));
            }
        }
        match parts[..] {
            [table] => Ok(TableRef::Name {
                schema: None,
                table: table.to_string(),
            }),
            [schema, table] => Ok(TableRef::Name {
                schema: (schema != DEFAULT_SCHEMA).then(|| schema.to_string()),
                table: table.to_string(),
            }),
            _ => Err(invalid("catalog-qualified names are not supported")),
        }
    }

    /// Where the table lives: the path itself (reached with the
    /// warehouse's object-store options), or its place under `warehouse`.
    pub fn location(&self, warehouse: &Location) -> Result<Location> {
        Ok(match self {
            TableRef::Path(p) => Location::parse(p, warehouse.options().clone())?,
            TableRef::Name {
                schema: None,
                table,
            } => warehouse.child(table)?,
            TableRef::Name {
                schema: Some(schema),
                table,
            } => warehouse.child(&format!("{schema}.db/{table}"))?,
        })
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableRef::Path(p) => f.write_str(p),
            TableRef::Name {
                schema: Some(s),
                table,
            } => write!(f, "{s}.{table}"),
            TableRef::Name {
                schema: None,
                table,
            } => f.write_str(table),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn warehouse() -> Location {
        Location::parse("file:///lake/wh", HashMap::new()).unwrap()
    }

    fn at(name: &str) -> String {
        TableRef::parse(name)
            .unwrap()
            .location(&warehouse())
            .unwrap()
            .url()
            .to_string()
    }

    #[test]
    fn names_live_under_the_warehouse_as_spark_lays_it_out() {
        assert_eq!(at("events"), "file:///lake/wh/events");
        assert_eq!(at("default.events"), "file:///lake/wh/events");
        assert_eq!(at("sales.orders"), "file:///lake/wh/sales.db/orders");
        assert_eq!(at("raw-2026.t_1"), "file:///lake/wh/raw-2026.db/t_1");
        // A schema named like a table holds its tables beside it, not in it.
        assert_ne!(
            at("t1.nested")
                .strip_prefix(&at("t1"))
                .map(|r| r.starts_with('/')),
            Some(true)
        );
    }

    #[test]
    fn paths_are_paths() {
        assert_eq!(at("s3://lake/events"), "s3://lake/events");
        assert!(at("./events").ends_with("/events"));
        assert_eq!(at("/abs/t"), "file:///abs/t");
    }

    #[test]
    fn bad_names_say_what_to_write() {
        for bad in [
            "x..y",
            ".x",
            "x.",
            "a.b.c",
            "",
            "a b",
            "t\0",
            "é",
            &"x".repeat(200),
        ] {
            let e = TableRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains("schema.table"), "{bad:?}: {e}");
        }
    }
}
