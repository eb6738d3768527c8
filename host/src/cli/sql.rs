//! `sluice sql`: the SQL Databricks users write to ingest files.
//!
//! - `CREATE [OR REPLACE] TABLE t AS SELECT ... FROM read_files(...)` is a
//!   batch ingest (`sluice ingest`) with the select list applied;
//! - `COPY INTO` is `sluice copy-into`;
//! - `CREATE OR REFRESH STREAMING TABLE` runs one available-now stream
//!   whose checkpoint is kept with the table (`<table>/_sluice/streaming`).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use sluice::builtin;
use sluice::incremental::{BatchReport, Kind, Runner};
use sluice::ingest::Input;
use sluice_pipeline::{StreamOptions, TableRef};
use sluice_sink::{Location, TableFormat, WriteMode};
use sluice_sql::{Statement, TableKind, TableName};

use super::copy_into::CopySpec;
use super::ingest::{FormatArg, Tuning, run_job};
use super::signals::Shutdown;
use super::stream::{Totals, Trigger, config, print_batch, run_trigger};
use super::{Env, human_bytes};

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
    for s in statements {
        run(env, s, &args.tuning).await?;
    }
    Ok(())
}

/// A table's location and format.
fn resolve(env: &Env, name: &TableName) -> Result<(Location, FormatArg)> {
    Ok(match name {
        TableName::Path { format, path } => (
            env.location(path)?,
            match format {
                TableKind::Delta => FormatArg::Delta,
                TableKind::Parquet => FormatArg::Parquet,
            },
        ),
        TableName::Named(parts) => (
            TableRef::from_parts(parts)?.location(&env.location(&env.warehouse)?)?,
            FormatArg::Delta,
        ),
    })
}

fn display(name: &TableName) -> String {
    match name {
        TableName::Path { format, path } => {
            let f = if *format == TableKind::Delta {
                "delta"
            } else {
                "parquet"
            };
            format!("{f}.`{path}`")
        }
        TableName::Named(parts) => parts.join("."),
    }
}

/// Whether a table is there: a Delta log, or any Parquet file.
async fn exists(location: &Location, format: FormatArg) -> Result<bool> {
    Ok(match format {
        FormatArg::Delta => sluice_sink::delta::load(location).await?.is_some(),
        FormatArg::Parquet => {
            let (store, root) = location.store()?;
            use futures::StreamExt;
            store.list(Some(&root)).next().await.is_some()
        }
    })
}

async fn run(env: &Env, statement: Statement, tuning: &Tuning) -> Result<()> {
    match statement {
        Statement::CreateTableAs {
            table,
            replace,
            if_not_exists,
            select,
        } => {
            let (location, format) = resolve(env, &table)?;
            if exists(&location, format).await? && !replace {
                if if_not_exists {
                    println!("table {} exists; nothing to do", display(&table));
                    return Ok(());
                }
                bail!(
                    "table {} already exists: use CREATE OR REPLACE TABLE to replace it, or COPY INTO to add to it",
                    display(&table)
                );
            }
            let input = Input::Files {
                source: select.path.clone(),
                format: select.format()?,
                options: select.reader_options(),
            };
            let runtime = env.runtime()?;
            run_job(
                env,
                runtime,
                builtin::FILES,
                input,
                location,
                TableFormat::from(format),
                WriteMode::Overwrite,
                Some(select.projection),
                tuning,
            )
            .await?;
        }
        Statement::CopyInto {
            table,
            from,
            format,
            pattern,
            files,
            format_options,
            copy_options,
        } => {
            let (location, table_format) = resolve(env, &table)?;
            let spec = CopySpec {
                table: location.url().to_string(),
                from,
                format,
                pattern,
                files,
                format_options,
                copy_options,
            };
            super::copy_into::run(env, spec, table_format, tuning).await?;
        }
        Statement::StreamingTable {
            table,
            or_refresh,
            if_not_exists,
            select,
        } => {
            let (location, table_format) = resolve(env, &table)?;
            if exists(&location, table_format).await? && !or_refresh {
                if if_not_exists {
                    println!("streaming table {} exists; nothing to do", display(&table));
                    return Ok(());
                }
                bail!(
                    "streaming table {} already exists: CREATE OR REFRESH STREAMING TABLE loads what is new",
                    display(&table)
                );
            }
            let format = select.format()?;
            let options = StreamOptions::parse(&select.reader_options())?;
            let checkpoint = env.location(&format!(
                "{}/_sluice/streaming",
                location.url().as_str().trim_end_matches('/')
            ))?;
            let mut config = config(
                env,
                Kind::Stream,
                &select.path,
                Some(format),
                options,
                location.url().as_str(),
                table_format,
                checkpoint,
                tuning,
            )?;
            config.projection = Some(select.projection);
            let started = Instant::now();
            let mut totals = Totals::default();
            let mut bytes = 0;
            let mut on_batch = |r: &BatchReport| {
                print_batch(r);
                bytes += r.bytes;
                totals.add(r);
            };
            let mut runner = Runner::open(config, &mut on_batch).await?;
            let shutdown = Shutdown::listen();
            run_trigger(
                &mut runner,
                Trigger::AvailableNow,
                std::time::Duration::ZERO,
                &shutdown,
                &mut on_batch,
            )
            .await?;
            println!(
                "refreshed streaming table {}: {} new files ({}), {} rows in {:.2} s",
                display(&table),
                totals.files(),
                human_bytes(bytes),
                totals.rows(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
