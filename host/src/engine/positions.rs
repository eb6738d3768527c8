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

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use sluice_checkpoint::{Checkpoint, Plan, State};
use sluice_sink::{Location, SchemaChange, Target};

use crate::engine::incremental::{self, BatchReport, now_ms, phase};
use crate::engine::read::Reading;
use crate::wasm::capability::Counters;
use crate::wasm::session::Stream;

/// A running stream of planned batches.
pub struct Positions {
    reading: Reading,
    stream: Stream,
    target: Target,
    checkpoint: Checkpoint,
    state: State,
    app_id: String,
    /// Where an available-now run stops: the input's end when it started.
    until: Option<String>,
}

impl Positions {
    /// Discovers the stream, opens the checkpoint and settles a batch an
    /// earlier run left pending.
    pub async fn open(
        reading: Reading,
        target: Target,
        checkpoint: &Location,
        on_batch: &mut impl FnMut(&BatchReport),
    ) -> Result<Self> {
        incremental::require_delta(&target)?;
        let stream = reading.discover(&[]).await?;
        let (checkpoint, state, app_id) = incremental::open_checkpoint(checkpoint).await?;
        let mut positions = Positions {
            reading,
            stream,
            target,
            checkpoint,
            state,
            app_id,
            until: None,
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
        let (config, name) = (self.reading.config_text()?, self.stream.info.name.clone());
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
        let (config, name) = (self.reading.config_text()?, self.stream.info.name.clone());
        let (after, until) = (self.state.last_position.clone(), self.until.clone());
        let Some(position) = self
            .reading
            .call("plan", move |s| {
                s.plan(&config, &name, after.as_deref(), until.as_deref())
            })
            .await?
        else {
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

    /// Reads a planned batch and commits it exactly once.
    async fn execute(&mut self, plan: &Plan) -> Result<BatchReport> {
        let position = plan
            .position
            .clone()
            .with_context(|| format!("batch {} was planned without a position", plan.batch))?;
        let counters = Arc::new(Counters::default());
        let reading = Reading {
            state: Some(position.clone()),
            counters: counters.clone(),
            ..self.reading.clone()
        };
        phase("write", plan.batch);
        let wrote = reading
            .write(&[], &self.stream, &self.target)
            .await
            .with_context(|| format!("batch {} was not committed", plan.batch))?;
        let table_schema = reading.table_schema(&self.stream, &self.target)?;
        let done = incremental::commit(
            &self.target,
            &table_schema,
            wrote.written,
            &self.app_id,
            plan,
            SchemaChange::None,
        )
        .await?;
        self.record(plan, done.version, done.rows, done.bytes)
            .await?;
        Ok(BatchReport {
            rows: done.rows,
            bytes: counters.get("network-bytes-in"),
            version: done.version,
            replayed: done.replayed,
            ..report(plan)
        })
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
            let (config, name) = (self.reading.config_text()?, self.stream.info.name.clone());
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
