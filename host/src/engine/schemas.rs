//! A stream's schema history and how it evolves, for every runner that
//! infers its schema from the data: the files runner ([`incremental`]) and
//! the planned-batch runner ([`positions`]) with a connector whose columns
//! come from its records (Kafka's `valueFormat=json`).
//!
//! The first batch's schema is inferred and made to fit the table; later
//! batches read with the latest one. A batch whose connector reports keys
//! the schema lacks is inferred again and, as the mode says
//! (`schemaEvolutionMode`), the schema gains them (a new version, kept
//! before the batch commits), the batch fails naming them, or they are
//! rescued or dropped.
//!
//! [`incremental`]: crate::engine::incremental
//! [`positions`]: crate::engine::positions

use std::sync::Arc;

use anyhow::{Result, bail};
use arrow_schema::{Field, FieldRef, Schema, SchemaRef};
use sluice_checkpoint::{SchemaLog, SchemaVersion};
use sluice_pipeline::Evolution;
use sluice_pipeline::schema::{Drift, drift, evolve};
use sluice_sink::{Location, SchemaChange, Target};

use crate::engine::incremental::now_ms;

/// A stream's schema history under its evolution mode.
pub struct Schemas {
    log: SchemaLog,
    evolution: Evolution,
}

/// What a batch's inferred schema does to the current one.
pub enum Evolved {
    /// Nothing new after all.
    Same,
    /// The schema gained columns: the new version and the columns' names.
    Added(Schema, Vec<String>),
    /// The mode refuses the columns (failOnNewColumns); nothing was kept.
    Refused(Drift),
}

impl Schemas {
    /// Opens the history at `location`, under `evolution`.
    pub fn open(location: &Location, evolution: Evolution) -> Result<Self> {
        Ok(Schemas {
            log: SchemaLog::open(location)?,
            evolution,
        })
    }

    /// The evolution mode.
    pub fn evolution(&self) -> Evolution {
        self.evolution
    }

    /// The latest schema, if any batch was planned with one.
    pub async fn latest(&self) -> Result<Option<SchemaVersion>> {
        Ok(self.log.latest().await?)
    }

    /// Whether a read's counters call for the batch to be inferred again:
    /// it met keys the schema lacks (`new_columns`) or, with type widening,
    /// values it had to rescue.
    pub fn suspect(&self, new_columns: u64, rescued: u64) -> bool {
        self.evolution.inspects_batches()
            && (new_columns > 0
                || (self.evolution == Evolution::AddNewColumnsWithTypeWidening && rescued > 0))
    }

    /// How a commit may change the table's schema under this mode.
    pub fn change(&self) -> SchemaChange {
        match self.evolution {
            Evolution::AddNewColumns | Evolution::AddNewColumnsWithTypeWidening => {
                SchemaChange::AddColumns
            }
            _ => SchemaChange::None,
        }
    }

    /// Keeps the first schema, inferred from batch `batch`'s input and
    /// made to fit `target` (see [`Schemas::align`]); `input` names what
    /// was inferred and `advice` says how to let new columns in when the
    /// mode refuses them.
    pub async fn first(
        &mut self,
        inferred: &SchemaRef,
        target: &Target,
        batch: u64,
        (input, advice): (&str, &str),
    ) -> Result<SchemaVersion> {
        let schema = self.align(inferred, target, input, advice).await?;
        Ok(self
            .log
            .append(schema, batch, "inferred".into(), now_ms())
            .await?)
    }

    /// Evolves `current` for batch `batch`, whose input infers as
    /// `inferred`, as the mode says.
    pub async fn evolve(
        &mut self,
        inferred: &Schema,
        current: &Schema,
        batch: u64,
    ) -> Result<Evolved> {
        let (stored_data, _) = split_schema(current);
        let (inferred_data, _) = split_schema(inferred);
        let mut d: Drift = drift(&stored_data, &inferred_data);
        if self.evolution != Evolution::AddNewColumnsWithTypeWidening {
            // Types never change: values that do not fit are rescued.
            d.widened.clear();
        }
        if d.is_empty() {
            return Ok(Evolved::Same);
        }
        if self.evolution == Evolution::FailOnNewColumns {
            return Ok(Evolved::Refused(d));
        }
        if let Some((name, from, to)) = d.widened.first() {
            bail!(
                "column '{name}' widens from {from} to {to} (schemaEvolutionMode=addNewColumnsWithTypeWidening): widening a column of an existing Delta table needs the typeWidening table feature, which the Delta library Sluice uses cannot write yet; nothing was committed. Use schemaEvolutionMode=addNewColumns to keep the column's type (values that do not fit go to the rescued data column)"
            );
        }
        let added: Vec<String> = d.added.iter().map(|f| f.name().clone()).collect();
        let schema = with_data(current, evolve(&stored_data, &d));
        let reason = format!("added column(s) {}", d.added_names());
        let v = self.log.append(schema, batch, reason, now_ms()).await?;
        Ok(Evolved::Added(v.schema, added))
    }

    /// An inferred connector schema made to fit an existing table: the
    /// table's columns keep their types (a missing one reads as null), and
    /// new ones stay only where the mode may add them.
    async fn align(
        &self,
        inferred: &SchemaRef,
        target: &Target,
        input: &str,
        advice: &str,
    ) -> Result<Schema> {
        let Some(table) = target.schema().await? else {
            return Ok(inferred.as_ref().clone());
        };
        let (inferred_data, appended) = split_schema(inferred);
        let appended: Vec<&str> = appended.iter().map(|f| f.name().as_str()).collect();
        // The table's columns, in its order; a column the connector sends
        // as it is keeps the connector's field (a required one stays
        // required: its batches are checked against this schema).
        let mut data: Vec<FieldRef> = table
            .fields()
            .iter()
            .filter(|f| !appended.contains(&f.name().as_str()))
            .map(|f| {
                inferred_data
                    .iter()
                    .find(|i| i.name() == f.name() && i.data_type() == f.data_type())
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Field::new(f.name(), f.data_type().clone(), true)))
            })
            .collect();
        let new: Vec<FieldRef> = inferred_data
            .into_iter()
            .filter(|f| table.field_with_name(f.name()).is_err())
            .collect();
        if !new.is_empty() {
            match self.evolution {
                Evolution::AddNewColumns | Evolution::AddNewColumnsWithTypeWidening => {
                    data.extend(new)
                }
                Evolution::FailOnNewColumns => bail!(
                    "{input} have column(s) {} that table {} lacks: nothing was committed; {advice}",
                    new.iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    target.location().display(),
                ),
                Evolution::Rescue | Evolution::None => {}
            }
        }
        Ok(with_data(inferred, data))
    }
}

/// A connector schema's data fields and the fields it appends (listed
/// under [`sluice_files_contract::APPENDED`]).
pub fn split_schema(schema: &Schema) -> (Vec<FieldRef>, Vec<FieldRef>) {
    let appended = sluice_files_contract::appended(schema);
    schema
        .fields()
        .iter()
        .cloned()
        .partition(|f| !appended.contains(&f.name().as_str()))
}

/// `like` with its data fields replaced by `data`.
fn with_data(like: &Schema, data: Vec<FieldRef>) -> Schema {
    let (_, appended) = split_schema(like);
    let fields: Vec<FieldRef> = data.into_iter().chain(appended).collect();
    Schema::new_with_metadata(fields, like.metadata().clone())
}

#[cfg(test)]
mod tests {
    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use arrow_schema::DataType;
    use sluice_sink::{TableFormat, WriteMode, WriteOptions};

    use super::*;

    fn location(dir: &std::path::Path, name: &str) -> Location {
        Location::parse(dir.join(name).to_str().unwrap(), Default::default()).unwrap()
    }

    /// A Delta table at `name` under `dir` with columns `id` and `name`.
    async fn table(dir: &std::path::Path) -> Target {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(StringArray::from(vec!["a"])),
            ],
        )
        .unwrap();
        let target = Target::new(
            location(dir, "t"),
            TableFormat::Delta,
            WriteOptions::default(),
        );
        let mut lane = target.lane(schema.clone()).unwrap();
        lane.write(batch).await.unwrap();
        let written = lane.finish().await.unwrap();
        target
            .commit(&schema, vec![written], WriteMode::Overwrite, None)
            .await
            .unwrap();
        target
    }

    #[tokio::test]
    async fn the_first_schema_takes_the_tables_columns_and_keeps_the_connectors_fields() {
        let dir = tempfile::tempdir().unwrap();
        let target = table(dir.path()).await;
        // The connector sends `id` required and `name` as the table has
        // it, and a column the table lacks.
        let inferred = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
            Field::new("extra", DataType::Utf8, true),
        ]));
        let mut schemas =
            Schemas::open(&location(dir.path(), "schemas"), Evolution::AddNewColumns).unwrap();
        let first = schemas
            .first(&inferred, &target, 0, ("the records", "advice"))
            .await
            .unwrap()
            .schema;
        let fields: Vec<(&str, bool)> = first
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.is_nullable()))
            .collect();
        // The table's order, the connector's own `id` (required), the new
        // column last.
        assert_eq!(fields, [("id", false), ("name", true), ("extra", true)]);
        assert_eq!(schemas.latest().await.unwrap().unwrap().schema, first);

        let mut refusing = Schemas::open(
            &location(dir.path(), "refusing"),
            Evolution::FailOnNewColumns,
        )
        .unwrap();
        let e = refusing
            .first(&inferred, &target, 0, ("the records", "let them in"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("extra") && e.contains("let them in"), "{e}");
    }

    #[tokio::test]
    async fn a_batch_with_new_columns_evolves_as_the_mode_says() {
        let dir = tempfile::tempdir().unwrap();
        let current = Schema::new(vec![Field::new("id", DataType::Int64, true)]);
        let inferred = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("new", DataType::Utf8, true),
        ]);
        let mut adding =
            Schemas::open(&location(dir.path(), "a"), Evolution::AddNewColumns).unwrap();
        match adding.evolve(&inferred, &current, 3).await.unwrap() {
            Evolved::Added(schema, names) => {
                assert_eq!(names, ["new"]);
                assert!(schema.field_with_name("new").is_ok());
                assert_eq!(adding.latest().await.unwrap().unwrap().schema, schema);
            }
            _ => panic!("addNewColumns adds"),
        }
        let mut failing =
            Schemas::open(&location(dir.path(), "f"), Evolution::FailOnNewColumns).unwrap();
        assert!(matches!(
            failing.evolve(&inferred, &current, 3).await.unwrap(),
            Evolved::Refused(_)
        ));
        assert!(failing.latest().await.unwrap().is_none(), "nothing kept");
        let mut same = Schemas::open(&location(dir.path(), "s"), Evolution::AddNewColumns).unwrap();
        assert!(matches!(
            same.evolve(&current, &current, 3).await.unwrap(),
            Evolved::Same
        ));
        assert!(!adding.suspect(0, 5) && adding.suspect(1, 0));
    }
}
