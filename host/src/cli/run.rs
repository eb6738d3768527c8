//! `sluice run`: a pipeline file (TOML or JSON), run to completion, or,
//! for a stream whose trigger is `continuous` or `every=N`, until Ctrl-C
//! or SIGTERM (after the batch in progress commits).

use std::path::PathBuf;

use anyhow::{Context, Result};
use sluice::engine::{Observer, Secrets, Stop, Trigger};
use sluice_pipeline::{Load, Pipeline};

use super::console::{Console, version};
use super::ingest::Tuning;
use super::{Env, signals};

/// `sluice run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The pipeline file (`.toml` or `.json`), as `PUT /pipelines/{name}` takes it.
    pub file: PathBuf,
    /// The pipeline's name (its default checkpoint is named after it)
    /// [default: the file name without extension].
    #[arg(long)]
    pub name: Option<String>,
    /// Where `sluice serve` keeps its state: uploaded connectors are found
    /// under `<state>/connectors`.
    #[arg(long, value_name = "LOCATION")]
    pub state: Option<String>,
    /// A file of `NAME=value` secrets (besides `SLUICE_SECRET_<NAME>`
    /// variables).
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
    /// When a stream runs its batches, in place of the file's `trigger`:
    /// `available-now`, `every=30s` or `continuous`.
    #[arg(long, value_name = "TRIGGER")]
    pub trigger: Option<Trigger>,
    /// Print the run's report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// `sluice run`.
pub async fn run(env: &Env, args: RunArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let mut pipeline =
        Pipeline::parse(&text).with_context(|| format!("in {}", args.file.display()))?;
    if args.trigger.is_some() {
        pipeline.trigger = args.trigger;
        pipeline.validate()?;
    }
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .file
            .file_stem()
            .and_then(|s| s.to_str())
            .context("give the pipeline a --name")?
            .to_string(),
    };
    let mut engine = env.engine(&args.tuning)?;
    if let Some(state) = &args.state {
        engine.keep_state(&env.location(state.trim_end_matches('/'))?)?;
    }
    if let Some(f) = &args.secrets_file {
        engine.secrets = Secrets::from_file(f)?;
    }
    let trigger = pipeline.trigger.clone().unwrap_or(Trigger::AvailableNow);
    // A stream stops between batches; a batch load ends at once.
    let stop = if pipeline.streams() {
        signals::listen()
    } else {
        Stop::new()
    };
    let load = Load::named(&name, pipeline);
    // JSON is the whole of stdout; batch lines are for people.
    let mut console = Console::new();
    let observer: &mut dyn Observer = if args.json { &mut () } else { &mut console };
    let report = engine.run(&load, &trigger, observer, &stop).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        // A connector's pipeline reads no files.
        let files = if load.pipeline.connector.is_some() {
            String::new()
        } else {
            format!("{} files, ", report.files)
        };
        let lag = report
            .source_lag_bytes
            .map(|b| format!(" (the source was {b} bytes ahead when last planned)"))
            .unwrap_or_default();
        println!(
            "pipeline {name}: {files}{} rows in {:.2} s into {}{}{lag}",
            report.rows,
            report.seconds,
            load.pipeline.table,
            version(&report)
        );
    }
    Ok(())
}
