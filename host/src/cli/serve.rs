//! `sluice serve`: the HTTP service.

use std::path::PathBuf;

use anyhow::{Context, Result};
use sluice::serve::{ServeConfig, serve};

use super::Env;
use super::ingest::Tuning;

/// `sluice serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The service's configuration (TOML): listen address, state location,
    /// volumes, tokens, secrets file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen here instead of the configuration's address (`127.0.0.1:0`
    /// picks a free port).
    #[arg(long)]
    pub listen: Option<String>,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// `sluice serve`.
pub async fn run(env: &Env, args: ServeArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::from_file(path)?,
        None => ServeConfig::local(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    // A long-running service instantiates connectors per request: reserve
    // their slots up front (the pooling allocator).
    let mut env = env.clone();
    env.limits.pool = Some(config.connector_slots);
    env.limits.slot_wait = sluice::engine::parse_interval(&config.connector_slot_wait)
        .context("connector_slot_wait")?
        .unwrap_or_default();
    env.limits.memory_budget = Some(
        usize::try_from(config.connector_memory_budget_mib)
            .ok()
            .and_then(|m| m.checked_mul(1 << 20))
            .ok_or_else(|| anyhow::anyhow!("connector_memory_budget_mib is too large"))?,
    );
    let mut engine = env.engine(&args.tuning)?;
    if let Some(w) = &config.warehouse {
        engine.warehouse = w.clone();
    }
    serve(engine, config, |addr| {
        // The first line on stdout: scripts and tests wait for it.
        println!("listening on http://{addr}");
    })
    .await
}
