//! `sluice copy-into`: COPY INTO, idempotently.

use anyhow::Result;
use sluice::engine::{Engine, Stop, Trigger};
use sluice_pipeline::Format;
use sluice_pipeline::load::CopyInto;
use sluice_pipeline::{Load, LoadMode};

use super::console::{Console, version};
use super::ingest::{FormatArg, Tuning};
use super::{Env, key_values};

/// `sluice copy-into`.
#[derive(clap::Args)]
pub struct CopyIntoArgs {
    /// The table: a path or URL, or a name under the warehouse.
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

/// `sluice copy-into`.
pub async fn copy_into(env: &Env, args: CopyIntoArgs) -> Result<()> {
    let mut load = CopyInto {
        table: args.table,
        from: args.from,
        format: args.format,
        pattern: args.pattern,
        files: args.files,
        format_options: key_values(&args.format_options)?,
        copy_options: key_values(&args.copy_options)?,
    }
    .load()?;
    load.pipeline.table_format = args.table_format.into();
    run(&env.engine(&args.tuning)?, &load).await
}

/// Runs a COPY INTO load and prints what it did.
pub async fn run(engine: &Engine, load: &Load) -> Result<()> {
    debug_assert_eq!(load.pipeline.mode, LoadMode::CopyInto);
    let r = engine
        .run(
            load,
            &Trigger::AvailableNow,
            &mut Console::new(),
            &Stop::new(),
        )
        .await?;
    let force = load
        .pipeline
        .options
        .get("force")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    println!(
        "copied {} files, {} rows into {}{}; {} files were loaded before and skipped{}",
        r.files,
        r.rows,
        r.table,
        version(&r),
        r.skipped_files,
        if force { " (force=true)" } else { "" }
    );
    Ok(())
}
