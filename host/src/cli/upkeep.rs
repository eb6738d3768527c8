//! `sluice optimize` and `sluice vacuum`: table upkeep.

use anyhow::{Result, bail};
use sluice_pipeline::incremental::{parse_bytes, parse_duration};

use crate::cli::ingest::{FormatArg, Tuning};
use crate::cli::{Env, human_bytes};

/// `sluice optimize`'s arguments.
#[derive(clap::Args)]
pub struct OptimizeArgs {
    /// The table: a path, a URL, or a name under the warehouse (an Iceberg
    /// table by its name in the catalog).
    pub table: String,
    /// The table's format.
    #[arg(long, value_enum, default_value = "delta")]
    pub table_format: FormatArg,
    /// The size compacted files aim at; files smaller than it are packed.
    #[arg(long, default_value = "128MiB")]
    pub target_size: String,
    /// Compact only the partitions this predicate selects (Delta's
    /// OPTIMIZE ... WHERE, on partition columns).
    #[arg(long = "where", value_name = "PREDICATE")]
    pub predicate: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice vacuum`'s arguments.
#[derive(clap::Args)]
pub struct VacuumArgs {
    /// The table: a path, a URL, or a name under the warehouse (an Iceberg
    /// table by its name in the catalog).
    pub table: String,
    /// The table's format. For Iceberg, vacuum expires the snapshots
    /// older than --retain and deletes the files only they used.
    #[arg(long, value_enum, default_value = "delta")]
    pub table_format: FormatArg,
    /// Keep every file a version committed within this long still uses
    /// (time travel back that far keeps working).
    #[arg(long, default_value = "168h")]
    pub retain: String,
    /// List what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow a retention shorter than the table's
    /// delta.deletedFileRetentionDuration (7 days by default).
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice optimize`.
pub async fn optimize(env: &Env, args: OptimizeArgs) -> Result<()> {
    let target = parse_bytes("--target-size", &args.target_size)?;
    let engine = env.engine(&Tuning::default())?;
    if let Some(p) = &args.predicate {
        // Sluice writes unpartitioned tables, and Delta's OPTIMIZE WHERE
        // selects partitions only.
        bail!(
            "--where '{p}': compacting only some partitions is not supported yet (Sluice's tables are not partitioned); compact the whole table without --where"
        );
    }
    let done = match args.table_format {
        FormatArg::Delta => engine.optimize(&args.table, target).await?,
        FormatArg::Iceberg => engine.optimize_iceberg(&args.table, target).await?,
        FormatArg::Parquet => {
            bail!("optimize compacts Delta and Iceberg tables, not Parquet datasets")
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "version": done.version,
                "files_before": done.files_before,
                "files_after": done.files_after,
                "files_removed": done.files_removed,
                "files_added": done.files_added,
                "bytes_removed": done.bytes_removed,
                "bytes_added": done.bytes_added,
                "rows": done.rows,
            })
        );
    } else if let Some(v) = done.version {
        println!(
            "optimized {}: {} files ({}) compacted into {} ({}), {} rows; {} -> {} data files, version {v}",
            args.table,
            done.files_removed,
            human_bytes(done.bytes_removed),
            done.files_added,
            human_bytes(done.bytes_added),
            done.rows,
            done.files_before,
            done.files_after
        );
    } else {
        println!(
            "{}: nothing to compact ({} data files, none two or more below {})",
            args.table,
            done.files_before,
            human_bytes(target)
        );
    }
    Ok(())
}

/// `sluice vacuum`.
pub async fn vacuum(env: &Env, args: VacuumArgs) -> Result<()> {
    let retain = parse_duration(&args.retain).map_err(|e| anyhow::anyhow!("--retain: {e}"))?;
    match args.table_format {
        FormatArg::Delta => {}
        FormatArg::Iceberg => {
            let done = env
                .engine(&Tuning::default())?
                .expire_snapshots(&args.table, retain, args.dry_run)
                .await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "snapshots_expired": done.snapshots,
                        "files": done.files,
                        "dry_run": args.dry_run,
                    })
                );
                return Ok(());
            }
            let (expire, delete) = if args.dry_run {
                ("would expire", "would delete")
            } else {
                ("expired", "deleted")
            };
            println!(
                "{}: {expire} {} snapshots older than {}; {delete} {} files",
                args.table,
                done.snapshots,
                args.retain,
                done.files.len()
            );
            if args.dry_run {
                for f in &done.files {
                    println!("  {f}");
                }
            }
            return Ok(());
        }
        FormatArg::Parquet => bail!("a Parquet dataset has no versions to vacuum"),
    }
    let done = env
        .engine(&Tuning::default())?
        .vacuum(&args.table, retain, args.dry_run, args.force)
        .await?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"files": done.files, "dry_run": done.dry_run})
        );
        return Ok(());
    }
    let verb = if done.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    println!("{}: {verb} {} files", args.table, done.files.len());
    if done.dry_run {
        for f in &done.files {
            println!("  {f}");
        }
    }
    Ok(())
}
