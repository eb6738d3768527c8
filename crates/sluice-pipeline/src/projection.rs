//! A select list applied to every batch before it is written: which
//! columns a table gets, renamed and cast (`SELECT a, CAST(b AS INT) AS c,
//! _metadata.file_name FROM ...`).
//!
//! `*` is every column of the input except `_metadata`, which, as in
//! Databricks, is there to be selected by name. A `*` follows the input as
//! its schema evolves; named columns stay as they are.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, StructArray};
use arrow_cast::cast::{CastOptions, cast_with_options};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};

/// The hidden file-metadata column.
pub const METADATA: &str = "_metadata";

/// A value of the select list.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A column of the input.
    Column(String),
    /// A field of a struct column (`_metadata.file_name`).
    Field(String, String),
    /// `CAST(expr AS type)`; a value that does not convert is an error
    /// that names it (ANSI casts, as Databricks SQL does).
    Cast(Box<Expr>, DataType),
}

/// One item of the select list.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `*`: the input's columns but `_metadata`.
    Wildcard,
    /// `struct.*`: a struct column's fields as columns.
    FieldsOf(String),
    /// A value, named by its alias or its column.
    Expr {
        /// The value.
        expr: Expr,
        /// `AS alias`.
        alias: Option<String>,
    },
}

/// A select list.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// Its items, in output order.
    pub items: Vec<Item>,
}

impl Expr {
    /// The name a value gets without an alias.
    fn name(&self) -> String {
        match self {
            Expr::Column(c) => c.clone(),
            Expr::Field(_, f) => f.clone(),
            Expr::Cast(e, _) => e.name(),
        }
    }

    fn field(&self, input: &Schema) -> Result<Field> {
        match self {
            Expr::Column(c) => input
                .field_with_name(c)
                .cloned()
                .map_err(|_| unknown(c, input)),
            Expr::Field(s, f) => match input.field_with_name(s).map(|c| c.data_type()) {
                Ok(DataType::Struct(fields)) => fields
                    .iter()
                    .find(|x| x.name() == f)
                    .map(|x| x.as_ref().clone())
                    .ok_or_else(|| Error::Invalid(format!("column {s} has no field {f}"))),
                Ok(other) => Err(Error::Invalid(format!(
                    "column {s} is {other}, not a struct: {s}.{f} selects nothing"
                ))),
                Err(_) => Err(unknown(s, input)),
            },
            Expr::Cast(e, t) => Ok(Field::new(e.name(), t.clone(), true)),
        }
    }

    fn eval(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        match self {
            Expr::Column(c) => batch
                .column_by_name(c)
                .cloned()
                .ok_or_else(|| unknown(c, batch.schema_ref())),
            Expr::Field(s, f) => {
                let column = batch
                    .column_by_name(s)
                    .ok_or_else(|| unknown(s, batch.schema_ref()))?;
                let strukt = column
                    .as_any()
                    .downcast_ref::<StructArray>()
                    .ok_or_else(|| Error::Invalid(format!("column {s} is not a struct")))?;
                strukt
                    .column_by_name(f)
                    .cloned()
                    .ok_or_else(|| Error::Invalid(format!("column {s} has no field {f}")))
            }
            Expr::Cast(e, t) => {
                let value = e.eval(batch)?;
                let options = CastOptions {
                    safe: false,
                    ..Default::default()
                };
                cast_with_options(&value, t, &options)
                    .map_err(|err| Error::Invalid(format!("CAST({} AS {t}): {err}", e.name())))
            }
        }
    }
}

fn unknown(column: &str, input: &Schema) -> Error {
    let names: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
    Error::Invalid(format!(
        "column '{column}' is not in the input (its columns: {})",
        names.join(", ")
    ))
}

impl Projection {
    /// `SELECT *`.
    pub fn all() -> Self {
        Projection {
            items: vec![Item::Wildcard],
        }
    }

    /// What each output column is, for an input of `input`.
    fn plan(&self, input: &Schema) -> Result<Vec<(Field, Source)>> {
        let mut out: Vec<(Field, Source)> = Vec::new();
        for item in &self.items {
            match item {
                Item::Wildcard => {
                    for (i, f) in input.fields().iter().enumerate() {
                        if f.name() != METADATA {
                            out.push((f.as_ref().clone(), Source::Index(i)));
                        }
                    }
                }
                Item::FieldsOf(s) => match input.field_with_name(s).map(|f| f.data_type()) {
                    Ok(DataType::Struct(fields)) => {
                        for f in fields {
                            let e = Expr::Field(s.clone(), f.name().clone());
                            out.push((f.as_ref().clone(), Source::Expr(e)));
                        }
                    }
                    Ok(_) => {
                        return Err(Error::Invalid(format!(
                            "{s}.* needs a struct column; {s} is not one"
                        )));
                    }
                    Err(_) => return Err(unknown(s, input)),
                },
                Item::Expr { expr, alias } => {
                    let field = expr.field(input)?;
                    let name = alias.clone().unwrap_or_else(|| expr.name());
                    out.push((field.with_name(name), Source::Expr(expr.clone())));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (f, _) in &out {
            if !seen.insert(f.name().clone()) {
                return Err(Error::Invalid(format!(
                    "the select list names column '{}' twice; give one of them an alias",
                    f.name()
                )));
            }
        }
        Ok(out)
    }

    /// The schema of the output for an input of `input`.
    pub fn schema(&self, input: &Schema) -> Result<SchemaRef> {
        Ok(Arc::new(Schema::new(
            self.plan(input)?
                .into_iter()
                .map(|(f, _)| f)
                .collect::<Vec<_>>(),
        )))
    }

    /// Applies the select list to `batch`, producing `schema` (from
    /// [`Projection::schema`] of the batch's schema).
    pub fn apply(&self, batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
        let columns = self
            .plan(batch.schema_ref())?
            .iter()
            .map(|(_, source)| match source {
                Source::Index(i) => Ok(batch.column(*i).clone()),
                Source::Expr(e) => e.eval(batch),
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(schema.clone(), columns, &rows)
            .map_err(|e| Error::Invalid(format!("applying the select list: {e}")))
    }
}

/// Where an output column comes from.
enum Source {
    Index(usize),
    Expr(Expr),
}

#[cfg(test)]
mod tests {
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::Fields;

    use super::*;

    fn input() -> RecordBatch {
        let meta = Fields::from(vec![
            Field::new("file_path", DataType::Utf8, false),
            Field::new("file_name", DataType::Utf8, false),
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new(METADATA, DataType::Struct(meta.clone()), false),
        ]));
        let metadata = StructArray::new(
            meta,
            vec![
                Arc::new(StringArray::from(vec!["s3://b/a.csv"; 2])) as ArrayRef,
                Arc::new(StringArray::from(vec!["a.csv"; 2])),
            ],
            None,
        );
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["1", "2"])),
                Arc::new(Int64Array::from(vec![10, 20])),
                Arc::new(metadata),
            ],
        )
        .unwrap()
    }

    fn run(p: &Projection) -> Result<RecordBatch> {
        let batch = input();
        let schema = p.schema(batch.schema_ref())?;
        p.apply(&batch, &schema)
    }

    #[test]
    fn star_hides_metadata_and_named_items_select_cast_and_rename() {
        let out = run(&Projection::all()).unwrap();
        let names: Vec<String> = out
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["id", "n"]);

        let p = Projection {
            items: vec![
                Item::Expr {
                    expr: Expr::Cast(Box::new(Expr::Column("id".into())), DataType::Int32),
                    alias: Some("key".into()),
                },
                Item::Expr {
                    expr: Expr::Field(METADATA.into(), "file_name".into()),
                    alias: None,
                },
                Item::FieldsOf(METADATA.into()),
            ],
        };
        let err = run(&p).unwrap_err().to_string();
        assert!(err.contains("names column 'file_name' twice"), "{err}");
        let p = Projection {
            items: p.items[..2].to_vec(),
        };
        let out = run(&p).unwrap();
        assert_eq!(out.schema().field(0).name(), "key");
        assert_eq!(out.schema().field(0).data_type(), &DataType::Int32);
        assert_eq!(out.schema().field(1).name(), "file_name");
    }

    #[test]
    fn errors_name_the_problem() {
        let bad = Projection {
            items: vec![Item::Expr {
                expr: Expr::Column("nope".into()),
                alias: None,
            }],
        };
        assert!(
            run(&bad)
                .unwrap_err()
                .to_string()
                .contains("'nope' is not in the input")
        );
        let cast = Projection {
            items: vec![Item::Expr {
                expr: Expr::Cast(Box::new(Expr::Column("id".into())), DataType::Date32),
                alias: None,
            }],
        };
        let err = run(&cast).unwrap_err().to_string();
        assert!(err.contains("CAST(id AS Date32)"), "{err}");
    }
}
