//! `sluice sql`: the SQL Databricks users write to ingest files. Each
//! statement is a [`sluice_pipeline::Load`] (`sluice_sql` says which), run
//! as the matching command runs it:
//!
//! - `CREATE [OR REPLACE] TABLE t AS SELECT ... FROM read_files(...)` is a
//!   batch ingest (`sluice ingest`) with the select list applied;
//! - `COPY INTO` is `sluice copy-into`;
//! - `CREATE OR REFRESH STREAMING TABLE` runs one available-now stream
//!   whose checkpoint is kept with the table (`<table>/_sluice/streaming`);
//!   without a query it declares the target of a flow;
//! - `CREATE FLOW ... AS AUTO CDC INTO` (or `APPLY CHANGES INTO`) runs one
//!   available-now stream applied to its table by key.

use anyhow::{Context, Result, bail};
use sluice::engine::{Engine, RunReport, Trigger};
use sluice_pipeline::Load;
use sluice_sql::Statement;

use super::console::Console;
use super::ingest::{Tuning, run_batch};
use super::{Env, human_bytes, signals};

/// `sluice sql`.
#[derive(clap::Args)]
pub struct SqlArgs {
    /// The statements, separated by `;`.
    pub sql: Option<String>,
    /// Read the statements from this file.
    #[arg(long, short = 'f', conflicts_with = "sql")]
    pub file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// `sluice sql`.
pub async fn sql(env: &Env, args: SqlArgs) -> Result<()> {
    let text = match (&args.sql, &args.file) {
        (Some(s), None) => s.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        _ => bail!("give the SQL to run, or -f FILE"),
    };
    let statements = sluice_sql::parse(&text)?;
    let engine = env.engine(&args.tuning)?;
    for s in statements {
        run(&engine, s).await?;
    }
    Ok(())
}

async fn run(engine: &Engine, statement: Statement) -> Result<()> {
    let table = statement.table();
    match &statement {
        Statement::DeclareStreamingTable { .. } => {
            println!("streaming table {table}: declared (a flow writes it)");
            Ok(())
        }
        Statement::AutoCdc { flow, .. } => {
            let r = available_now(engine, &statement.load()?).await?;
            let flow = flow
                .as_deref()
                .map(|f| format!("flow {f}: "))
                .unwrap_or_default();
            println!(
                "{flow}applied {} changes by key to {table} in {:.2} s",
                r.rows, r.seconds
            );
            Ok(())
        }
        Statement::CreateTableAs {
            replace,
            if_not_exists,
            ..
        } => {
            let load = statement.load()?;
            if !replace && engine.table_exists(&load.pipeline).await? {
                if *if_not_exists {
                    println!("table {table} exists; nothing to do");
                    return Ok(());
                }
                bail!(
                    "table {table} already exists: use CREATE OR REPLACE TABLE to replace it, or COPY INTO to add to it"
                );
            }
            run_batch(engine, &load).await
        }
        Statement::CopyInto { .. } => super::copy_into::run(engine, &statement.load()?).await,
        Statement::StreamingTable {
            or_refresh,
            if_not_exists,
            ..
        } => {
            let load = statement.load()?;
            if !or_refresh && engine.table_exists(&load.pipeline).await? {
                if *if_not_exists {
                    println!("streaming table {table} exists; nothing to do");
                    return Ok(());
                }
                bail!(
                    "streaming table {table} already exists: CREATE OR REFRESH STREAMING TABLE loads what is new"
                );
            }
            let r = available_now(engine, &load).await?;
            println!(
                "refreshed streaming table {table}: {} new files ({}), {} rows in {:.2} s",
                r.files,
                human_bytes(r.bytes),
                r.rows,
                r.seconds
            );
            Ok(())
        }
    }
}

/// Runs a stream available-now, printing its batches; Ctrl-C stops it
/// between batches.
async fn available_now(engine: &Engine, load: &Load) -> Result<RunReport> {
    Ok(engine
        .run(
            load,
            &Trigger::AvailableNow,
            &mut Console::new(),
            &signals::listen(),
        )
        .await?)
}
