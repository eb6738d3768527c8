//! Streams whose connector plans its own batches: a message bus's offsets
//! per partition, a database's log range. The exactly-once protocol is the
//! files' one ([`crate::engine::incremental`]), with the connector's plan
//! in place of a list of files:
//!
//! 1. the connector plans the batch after the last one (`planner.plan`),
//!    and the plan is written to the checkpoint (`offsets/N`) before
//!    anything is read;
//! 2. the connector reads exactly that plan into data files;
//! 3. one table commit holds them with `txn(appId, N)`;
//! 4. `commits/N` is recorded, then the connector is told the batch is
//!    durable (`planner.committed`: a replication slot may advance).
//!
//! A batch planned but not committed is redone from its plan on restart,
//! unless the table already holds it.
//!
//! The table's schema is the stream's schema history ([`schemas`]): the
//! first batch's is discovered from its plan, and a batch whose records
//! bring keys the schema lacks evolves it as `schemaEvolutionMode` says,
//! as a files stream's does.
//!
//! [`schemas`]: crate::engine::schemas

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow_schema::SchemaRef;
use sluice_checkpoint::{Checkpoint, Plan, State};
use sluice_pipeline::Evolution;
use sluice_sink::{Location, Target};

use crate::engine::incremental::{self, BatchReport, now_ms, phase};
use crate::engine::read::{Configured, Held, Reading};
use crate::engine::schemas::{Evolved, Schemas};
use crate::wasm::capability::Counters;
use crate::wasm::session::Stream;

/// The counter a connector's `plan` adds how far the source is ahead of
/// the stream to (for PostgreSQL, the WAL bytes its slot holds back): one
/// plan's count is the lag as it planned.
pub const SOURCE_LAG: &str = "source-lag-bytes";

/// What to do about new keys the mode refuses.
const ADVICE: &str = "schemaEvolutionMode=failOnNewColumns stops here: change the mode (addNewColumns adds them; rescue keeps them in the rescued data column)";

/// A running stream of planned batches.
pub struct Positions {
    reading: Reading,
    /// The stream's name.
    name: String,
    target: Target,
    checkpoint: Checkpoint,
    state: State,
    app_id: String,
    schemas: Schemas,
    /// Where an available-now run stops: the input's end when it started.
    until: Option<String>,
    /// What the connector said of the source's lag when it last planned.
    lag: Option<u64>,
}

impl Positions {
    /// Opens the checkpoint and its schema history (at `schemas`) and
    /// settles a batch an earlier run left pending.
    pub async fn open(
        reading: Reading,
        target: Target,
        (checkpoint, schemas): (&Location, &Location),
        evolution: Evolution,
        on_batch: &mut impl FnMut(&BatchReport),
    ) -> Result<Self> {
        incremental::require_log(&target)?;
        // The stream's name, from a description of no records.
        let name = match &reading.stream {
            Some(name) => name.clone(),
            None => with_plan(&reading, None)?.discover(&[]).await?.info.name,
        };
        let (checkpoint, state, app_id) = incremental::open_checkpoint(checkpoint).await?;
        let mut positions = Positions {
            reading,
            name,
            target,
            checkpoint,
            state,
            app_id,
            schemas: Schemas::open(schemas, evolution)?,
            until: None,
            lag: None,
        };
        if let Some(plan) = positions.state.pending().cloned() {
            let started = Instant::now();
            let mut report =
                if incremental::in_table(&positions.target, &positions.app_id, &plan).await? {
                    positions.record(&plan, None, 0, 0).await?;
                    BatchReport {
                        replayed: true,
                        ..report(&plan)
                    }
                } else {
                    positions.execute(&plan).await?
                };
            report.elapsed = started.elapsed();
            on_batch(&report);
        }
        Ok(positions)
    }

    /// Bounds the run by the input there is now: an available-now run reads
    /// up to it and then ends.
    pub async fn bound(&mut self) -> Result<()> {
        let (config, name) = (self.reading.config_text()?, self.name.clone());
        self.until = Some(
            self.reading
                .call("latest", move |s| s.latest(&config, &name))
                .await?,
        );
        Ok(())
    }

    /// Plans and runs the next batch; `None` when there is nothing new.
    pub async fn next(&mut self) -> Result<Option<BatchReport>> {
        let started = Instant::now();
        let (config, name) = (self.reading.config_text()?, self.name.clone());
        let (after, until) = (self.state.last_position.clone(), self.until.clone());
        let counters = self.reading.counters.clone();
        let lag_before = counters.get(SOURCE_LAG);
        let planned = self
            .reading
            .call("plan", move |s| {
                s.plan(&config, &name, after.as_deref(), until.as_deref())
            })
            .await?;
        if counters.has(SOURCE_LAG) {
            self.lag = Some(counters.get(SOURCE_LAG) - lag_before);
        }
        let Some(position) = planned else {
            return Ok(None);
        };
        phase("plan", self.state.next_batch);
        let plan = self
            .checkpoint
            .plan_position(&mut self.state, position, None, now_ms())
            .await?;
        let mut report = self.execute(&plan).await?;
        report.elapsed = started.elapsed();
        Ok(Some(report))
    }

    /// The stream's name, and how far its source was ahead when it last
    /// planned, where its connector says ([`SOURCE_LAG`]).
    pub fn source_lag(&self) -> Option<(&str, u64)> {
        Some((&self.name, self.lag?))
    }

    /// The batch `position` in parts to read at once, when the run has
    /// lanes to spare and the connector splits batches (none: it is read
    /// whole), and the instance that split it, which the parts may need
    /// until their readers are open: kept until the batch is read.
    async fn split(&self, position: &str) -> Result<(Vec<String>, Option<Held>)> {
        let lanes = self.reading.parallelism;
        if lanes < 2 || !self.reading.connector.splits() {
            return Ok((Vec::new(), None));
        }
        let (config, name) = (self.reading.config_text()?, self.name.clone());
        let plan = position.to_string();
        let whole = plan.clone();
        let (parts, held) = self
            .reading
            .held("split", move |s| {
                s.split(&config, &name, &plan, lanes.min(u32::MAX as usize) as u32)
            })
            .await?;
        // Not split: the instance (a pool slot, in a service) goes now.
        if parts == [whole] {
            return Ok((Vec::new(), None));
        }
        Ok((parts, Some(held)))
    }

    /// Reads a planned batch and commits it exactly once.
    async fn execute(&mut self, plan: &Plan) -> Result<BatchReport> {
        let position = plan
            .position
            .clone()
            .with_context(|| format!("batch {} was planned without a position", plan.batch))?;
        let mut schema = self.schema_for(plan, &position).await?;
        let mut added = Vec::new();
        let (parts, held) = self.split(&position).await?;
        let (reading, wrote) = loop {
            let counters = Arc::new(Counters::default());
            let reading = Reading {
                state: Some(position.clone()),
                counters: counters.clone(),
                ..self.reading.clone()
            };
            phase("write", plan.batch);
            let wrote = reading
                .write_parts(&parts, &self.stream(&schema), &self.target)
                .await
                .with_context(|| format!("batch {} was not committed", plan.batch))?;
            // Records with keys the schema lacks: the batch is inferred
            // again and, if the mode evolves the schema, read again with
            // the new one (the first read's data files are never
            // committed).
            let suspect = self.schemas.suspect(
                counters.get("records-with-new-columns"),
                counters.get("rows-rescued"),
            );
            if added.is_empty() && suspect {
                let inferred = self.discover(Some(&position)).await?;
                match self.schemas.evolve(&inferred, &schema, plan.batch).await? {
                    Evolved::Same => {}
                    Evolved::Added(evolved, names) => {
                        schema = Arc::new(evolved);
                        added = names;
                        continue;
                    }
                    Evolved::Refused(d) => bail!(
                        "batch {}: new column(s) {} in the records: nothing was committed; {ADVICE}",
                        plan.batch,
                        d.added_names()
                    ),
                }
            }
            break (reading, wrote);
        };
        drop(held);
        let table_schema = reading.table_schema(&self.stream(&schema), &self.target)?;
        let done = incremental::commit(
            &self.target,
            &table_schema,
            wrote.written,
            &self.app_id,
            plan,
            self.schemas.change(),
        )
        .await?;
        self.record(plan, done.version, done.rows, done.bytes)
            .await?;
        Ok(BatchReport {
            rows: done.rows,
            bytes: reading.counters.get("network-bytes-in"),
            version: done.version,
            replayed: done.replayed,
            added_columns: added,
            ..report(plan)
        })
    }

    /// The schema batch `plan` reads with: the history's latest, or, for
    /// the first batch, what the connector discovers from the plan's
    /// records, made to fit the table.
    async fn schema_for(&mut self, plan: &Plan, position: &str) -> Result<SchemaRef> {
        if let Some(current) = self.schemas.latest().await? {
            return Ok(Arc::new(current.schema));
        }
        let inferred = self.discover(Some(position)).await?;
        let v = self
            .schemas
            .first(&inferred, &self.target, plan.batch, ("the records", ADVICE))
            .await?;
        Ok(Arc::new(v.schema))
    }

    /// The stream's schema as the connector discovers it from the records
    /// of `plan`.
    async fn discover(&self, plan: Option<&str>) -> Result<SchemaRef> {
        Ok(with_plan(&self.reading, plan)?.discover(&[]).await?.schema)
    }

    /// The stream, read with `schema`.
    fn stream(&self, schema: &SchemaRef) -> Stream {
        Stream {
            info: crate::wasm::bindings::StreamInfo {
                name: self.name.clone(),
                arrow_schema: vec![],
                cursor_fields: vec![],
                primary_key: vec![],
            },
            schema: schema.clone(),
        }
    }

    /// Records that `plan` is done (step 4) and tells the connector.
    async fn record(
        &mut self,
        plan: &Plan,
        version: Option<u64>,
        rows: u64,
        bytes: u64,
    ) -> Result<()> {
        incremental::record(
            &self.checkpoint,
            &mut self.state,
            plan,
            version,
            rows,
            bytes,
        )
        .await?;
        if let Some(position) = plan.position.clone() {
            let (config, name) = (self.reading.config_text()?, self.name.clone());
            if let Err(e) = self
                .reading
                .call("committed", move |s| s.committed(&config, &name, &position))
                .await
            {
                // The batch is in the table; the source hears of it again
                // with the next one.
                tracing::warn!(
                    "batch {} is committed, but the connector was not told: {e:#}",
                    plan.batch
                );
            }
        }
        Ok(())
    }
}

/// `reading` whose `discover` describes the records of `plan` (none when
/// `None`): the config's `plan` key, as the planner contract says.
fn with_plan(reading: &Reading, plan: Option<&str>) -> Result<Reading> {
    let Configured::Connector(config) = &reading.config else {
        bail!("the files connector does not plan its batches");
    };
    let mut config = config.clone();
    config["plan"] = plan.map_or(serde_json::Value::Null, |p| p.into());
    Ok(Reading {
        config: Configured::Connector(config),
        ..reading.clone()
    })
}

/// A report of `plan` with nothing read yet.
fn report(plan: &Plan) -> BatchReport {
    BatchReport {
        batch: plan.batch,
        files: 0,
        bytes: 0,
        rows: 0,
        version: None,
        replayed: false,
        skipped: false,
        added_columns: vec![],
        elapsed: std::time::Duration::ZERO,
    }
}
