//! `sluice copy-into`: COPY INTO, idempotently.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use sluice::incremental::{BatchReport, Kind, Runner};
use sluice_pipeline::{Format, StreamOptions};

use super::ingest::{FormatArg, Tuning};
use super::stream::{Totals, config, copy_into_checkpoint};
use super::{Env, key_values};

/// `sluice copy-into`.
#[derive(clap::Args)]
pub struct CopyIntoArgs {
    /// The table: a path or URL.
    pub table: String,
    /// Where the files are: a directory (FROM).
    #[arg(long)]
    pub from: String,
    /// Input format (FILEFORMAT).
    #[arg(long, short)]
    pub format: Format,
    /// Only files matching this glob, relative to --from (PATTERN).
    #[arg(long, conflicts_with = "files")]
    pub pattern: Option<String>,
    /// Only these files, relative to --from, comma-separated (FILES).
    #[arg(long, value_delimiter = ',')]
    pub files: Vec<String>,
    /// Reader option as key=value (repeatable): FORMAT_OPTIONS.
    #[arg(long = "format-option", value_name = "KEY=VALUE")]
    pub format_options: Vec<String>,
    /// mergeSchema=true (add new columns to the table) or force=true (load
    /// files again even if they were loaded): COPY_OPTIONS.
    #[arg(long = "copy-option", value_name = "KEY=VALUE")]
    pub copy_options: Vec<String>,
    /// Table format (COPY INTO needs Delta).
    #[arg(long, value_enum, default_value_t = FormatArg::Delta)]
    pub table_format: FormatArg,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// What COPY INTO loads.
pub struct CopySpec {
    /// The table.
    pub table: String,
    /// FROM.
    pub from: String,
    /// FILEFORMAT.
    pub format: Format,
    /// PATTERN.
    pub pattern: Option<String>,
    /// FILES.
    pub files: Vec<String>,
    /// FORMAT_OPTIONS.
    pub format_options: BTreeMap<String, String>,
    /// COPY_OPTIONS.
    pub copy_options: BTreeMap<String, String>,
}

/// `sluice copy-into`.
pub async fn copy_into(env: &Env, args: CopyIntoArgs) -> Result<()> {
    let spec = CopySpec {
        table: args.table,
        from: args.from,
        format: args.format,
        pattern: args.pattern,
        files: args.files,
        format_options: key_values(&args.format_options)?,
        copy_options: key_values(&args.copy_options)?,
    };
    run(env, spec, args.table_format, &args.tuning).await
}

/// Runs COPY INTO and prints what it did.
pub async fn run(
    env: &Env,
    spec: CopySpec,
    table_format: FormatArg,
    tuning: &Tuning,
) -> Result<()> {
    let kind = sluice::pipeline::copy_into_kind(&spec.copy_options)?;
    let force = matches!(kind, Kind::CopyInto { force: true, .. });
    sluice::pipeline::check_copy_format_options(&spec.format_options)?;
    if spec.pattern.is_some() && !spec.files.is_empty() {
        bail!("give PATTERN or FILES, not both");
    }
    let options = StreamOptions::parse(&spec.format_options)?;
    let table = env.location(&spec.table)?;
    let checkpoint = copy_into_checkpoint(env, &table)?;
    let source = match &spec.pattern {
        Some(p) => format!(
            "{}/{}",
            spec.from.trim_end_matches('/'),
            p.trim_start_matches('/')
        ),
        None => spec.from.clone(),
    };
    let mut config = config(
        env,
        kind,
        &source,
        Some(spec.format),
        options,
        &spec.table,
        table_format,
        checkpoint,
        tuning,
    )?;
    if !spec.files.is_empty() {
        let base = config.source.base().as_dir();
        let mut only = Vec::new();
        for f in &spec.files {
            let url = base
                .url()
                .join(f.trim_start_matches('/'))
                .map_err(|e| anyhow::anyhow!("FILES entry '{f}': {e}"))?;
            only.push(url.to_string());
        }
        config.only = Some(only);
    }
    let table_name = config.target.location().display();
    // A load an earlier run left half-done is finished first, and counts.
    let mut settled: Option<BatchReport> = None;
    let mut runner = Runner::open(config, &mut |r: &BatchReport| {
        super::stream::print_batch(r);
        settled = Some(r.clone());
    })
    .await?;
    runner.list(&mut |_: &BatchReport| {}).await?;
    let skipped = runner.already_loaded;
    let mut totals = Totals::default();
    for r in settled.iter().chain(runner.next().await?.iter()) {
        totals.add(r);
    }
    let version = totals
        .version()
        .map(|v| format!(", version {v}"))
        .unwrap_or_default();
    println!(
        "copied {} files, {} rows into {table_name}{version}; {skipped} files were loaded before and skipped{}",
        totals.files(),
        totals.rows(),
        if force { " (force=true)" } else { "" }
    );
    Ok(())
}
