//! Schema evolution across the batches of an incremental load, with Auto
//! Loader's modes (`cloudFiles.schemaEvolutionMode`).
//!
//! The stored schema's columns never change type and are never dropped: a
//! batch that lacks a column reads it as null; a value that does not fit
//! its column's type goes to the rescued data column. What a mode decides is
//! what happens to columns the stored schema does not have.

use std::str::FromStr;

use arrow_schema::{DataType, Field, FieldRef};

use crate::error::Error;

/// `cloudFiles.schemaEvolutionMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evolution {
    /// New columns are added to the schema (and the table) with the batch
    /// that brought them; the stream goes on.
    AddNewColumns,
    /// As `AddNewColumns`, and a column whose type widens (an integer that
    /// becomes fractional, a date that gains a time) widens too.
    AddNewColumnsWithTypeWidening,
    /// The schema never changes; what does not fit goes to the rescued
    /// data column.
    Rescue,
    /// A batch with new columns fails, naming the files and columns.
    FailOnNewColumns,
    /// The schema never changes and new columns are dropped (rescued only
    /// if a rescued data column is set).
    None,
}

impl FromStr for Evolution {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "addnewcolumns" => Ok(Evolution::AddNewColumns),
            "addnewcolumnswithtypewidening" => Ok(Evolution::AddNewColumnsWithTypeWidening),
            "rescue" => Ok(Evolution::Rescue),
            "failonnewcolumns" => Ok(Evolution::FailOnNewColumns),
            "none" => Ok(Evolution::None),
            _ => Err(Error::Invalid(format!(
                "schemaEvolutionMode={s}: use addNewColumns, addNewColumnsWithTypeWidening, rescue, failOnNewColumns or none"
            ))),
        }
    }
}

impl Evolution {
    /// Whether the mode needs each batch's schema inferred to compare.
    pub fn inspects_batches(self) -> bool {
        !matches!(self, Evolution::Rescue | Evolution::None)
    }

    /// Whether the mode keeps a rescued data column by default.
    pub fn rescues(self) -> bool {
        self != Evolution::None
    }
}

/// How a batch's inferred columns differ from the stored schema's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drift {
    /// Columns the stored schema lacks.
    pub added: Vec<FieldRef>,
    /// Columns whose type the batch widens: (name, stored, wider).
    pub widened: Vec<(String, DataType, DataType)>,
}

impl Drift {
    /// Whether the batch fits the stored schema as it is.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.widened.is_empty()
    }

    /// The added columns' names, for messages.
    pub fn added_names(&self) -> String {
        self.added
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Compares a batch's inferred data columns with the stored ones.
pub fn drift(stored: &[FieldRef], inferred: &[FieldRef]) -> Drift {
    let mut d = Drift::default();
    for f in inferred {
        match stored.iter().find(|s| s.name() == f.name()) {
            None => d.added.push(f.clone()),
            Some(s) => {
                if let Some(w) = widen(s.data_type(), f.data_type())
                    && &w != s.data_type()
                {
                    d.widened.push((f.name().clone(), s.data_type().clone(), w));
                }
            }
        }
    }
    d
}

/// The wider of two types where one widens to the other without loss of
/// meaning (Delta's type-widening rules for the types Sluice infers);
/// `None` where neither does.
pub fn widen(from: &DataType, to: &DataType) -> Option<DataType> {
    use DataType::*;
    let rank = |t: &DataType| match t {
        Int8 => Some(0),
        Int16 => Some(1),
        Int32 => Some(2),
        Int64 => Some(3),
        _ => None,
    };
    match (from, to) {
        (a, b) if a == b => Some(a.clone()),
        (a, b) if rank(a).is_some() && rank(b).is_some() => Some(if rank(a) > rank(b) {
            a.clone()
        } else {
            b.clone()
        }),
        (Int8 | Int16 | Int32 | Int64 | Float32, Float64) => Some(Float64),
        (Float64, Int8 | Int16 | Int32 | Int64 | Float32) => Some(Float64),
        (Float32, Int8 | Int16) => Some(Float32),
        (Int8 | Int16, Float32) => Some(Float32),
        (Date32, Timestamp(u, tz)) | (Timestamp(u, tz), Date32) => Some(Timestamp(*u, tz.clone())),
        _ => None,
    }
}

/// `stored` with `drift` applied: widened types, then the added columns.
pub fn evolve(stored: &[FieldRef], drift: &Drift) -> Vec<FieldRef> {
    let mut out: Vec<FieldRef> = stored
        .iter()
        .map(
            |f| match drift.widened.iter().find(|(n, _, _)| n == f.name()) {
                Some((_, _, wider)) => {
                    std::sync::Arc::new(Field::new(f.name(), wider.clone(), f.is_nullable()))
                }
                None => f.clone(),
            },
        )
        .collect();
    out.extend(
        drift
            .added
            .iter()
            .map(|f| std::sync::Arc::new(f.as_ref().clone().with_nullable(true))),
    );
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::TimeUnit;

    use super::*;

    fn f(name: &str, t: DataType) -> FieldRef {
        Arc::new(Field::new(name, t, true))
    }

    #[test]
    fn new_columns_and_widened_types_are_found_and_applied() {
        let stored = vec![f("id", DataType::Int64), f("day", DataType::Date32)];
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let inferred = vec![
            f("id", DataType::Float64),
            f("day", ts.clone()),
            f("note", DataType::Utf8),
        ];
        let d = drift(&stored, &inferred);
        assert_eq!(d.added_names(), "note");
        assert_eq!(d.widened.len(), 2);
        let evolved = evolve(&stored, &d);
        let types: Vec<&DataType> = evolved.iter().map(|f| f.data_type()).collect();
        assert_eq!(types, [&DataType::Float64, &ts, &DataType::Utf8]);
    }

    #[test]
    fn narrower_or_unrelated_types_are_no_drift_to_widen() {
        let stored = vec![f("id", DataType::Float64), f("name", DataType::Utf8)];
        let inferred = vec![f("id", DataType::Int64), f("name", DataType::Int64)];
        let d = drift(&stored, &inferred);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(widen(&DataType::Utf8, &DataType::Int64), None);
        assert_eq!(
            widen(&DataType::Int32, &DataType::Int64),
            Some(DataType::Int64)
        );
    }

    #[test]
    fn modes_parse_by_auto_loader_names() {
        assert_eq!(
            "addNewColumns".parse::<Evolution>().unwrap(),
            Evolution::AddNewColumns
        );
        assert_eq!(
            "failOnNewColumns".parse::<Evolution>().unwrap(),
            Evolution::FailOnNewColumns
        );
        assert!("sometimes".parse::<Evolution>().is_err());
        assert!(!Evolution::Rescue.inspects_batches());
        assert!(!Evolution::None.rescues());
    }
}
