//! `sluice connector test`: a connector's conformance run, as a report.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use sluice::engine::conformance::{Conformance, Outcome};
use sluice_pipeline::{Load, Pipeline};

use crate::cli::Env;
use crate::cli::human_bytes;
use crate::cli::ingest::{Tuning, use_connector};

/// What `sluice connector` does.
#[derive(clap::Subcommand)]
pub enum ConnectorCommand {
    /// Check that a connector component keeps the contract: its spec and
    /// config schema, check (accepting the config, refusing a broken one
    /// with error.config), discover, a read of every stream in its
    /// discovered schema, a read resumed from a mid-stream checkpoint, and
    /// errors as WIT variants rather than traps, within the memory and time
    /// limits. Exits non-zero when a check fails.
    Test(TestArgs),
}

/// `sluice connector test`'s arguments.
#[derive(clap::Args)]
pub struct TestArgs {
    /// The component (.wasm).
    pub component: PathBuf,
    /// Its config: JSON, or a file holding it.
    #[arg(long, value_name = "JSON|FILE")]
    pub config: String,
    /// What it may reach (repeatable), as for `sluice ingest --grant`.
    #[arg(long = "grant", value_name = "PREFIX|tcp://HOST:PORT")]
    pub grants: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `sluice connector ...`.
pub async fn connector(env: &Env, command: ConnectorCommand) -> Result<()> {
    match command {
        ConnectorCommand::Test(args) => test(env, args).await,
    }
}

async fn test(env: &Env, args: TestArgs) -> Result<()> {
    let config = if serde_json::from_str::<serde_json::Value>(&args.config).is_ok() {
        args.config.clone()
    } else {
        std::fs::read_to_string(&args.config)
            .with_context(|| format!("--config '{}' is neither JSON nor a file", args.config))?
    };
    if !args.component.is_file() {
        bail!(
            "{} is not a file (give the connector's .wasm)",
            args.component.display()
        );
    }
    let size = std::fs::metadata(&args.component)?.len();
    let mut pipeline = Pipeline::new(".");
    let component_file = use_connector(
        &mut pipeline,
        &args.component,
        Some(&config),
        None,
        &args.grants,
    )?;
    let load = Load {
        component_file,
        ..Load::new(pipeline)
    };
    let report = env
        .engine(&Tuning::default())?
        .test_connector(&load)
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report, &args.component, size);
    }
    if !report.passed() {
        let failed = report
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>();
        bail!(
            "the connector failed {}: {}",
            failed.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

fn print(report: &Conformance, component: &std::path::Path, size: u64) {
    println!(
        "{} ({}, {}, hands over {})",
        report.connector,
        component.display(),
        human_bytes(size),
        report.hands_over
    );
    for c in &report.checks {
        let mark = match c.outcome {
            Outcome::Pass => "ok  ",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        };
        if c.detail.is_empty() {
            println!("  {mark} {}", c.name);
        } else {
            println!(
                "  {mark} {}: {}",
                c.name,
                c.detail.replace('\n', "\n         ")
            );
        }
    }
    let passed = report
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Pass)
        .count();
    println!(
        "{passed} of {} checks passed; instantiate {:.1} ms, {} rows read at {:.0} rows/s",
        report.checks.len(),
        report.instantiate_ms,
        report.rows,
        report.rows_per_second
    );
}
