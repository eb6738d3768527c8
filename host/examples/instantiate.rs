//! Per-request instantiation of a connector component, side by side: a
//! fresh store and instance of the built-in `files` connector from its
//! `InstancePre`, with memories mapped per instance (what a one-shot CLI
//! run uses) and from the pooling allocator's reserved slots (what
//! `sluice serve` uses), each timed from the new store to both torn down.
//! Prints medians, p99s and their ratio.
//!
//! `cargo run --release -p sluice --example instantiate [-- N]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::wasm::capability::{Counters, HostState};
use sluice::wasm::grants::Grants;
use sluice::wasm::runtime::{Limits, Runtime};

fn measure(
    runtime: &Runtime,
    n: usize,
    handle: &tokio::runtime::Handle,
) -> anyhow::Result<Vec<Duration>> {
    let loaded = runtime.load_builtin(&sluice::wasm::builtin::FILES)?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n + n / 10 {
        let host = HostState::new(
            "files",
            Grants::new(&[], Default::default())?,
            handle.clone(),
            Arc::new(Counters::default()),
        );
        // A request's whole cost: store, instance, and tearing both down.
        let t = Instant::now();
        let mut store = runtime.store(host)?;
        loaded.instantiate(&mut store)?;
        drop(store);
        times.push(t.elapsed());
    }
    // The first tenth warms up.
    times.drain(..n / 10);
    times.sort();
    Ok(times)
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Runtime::new()?;
    let on_demand = Runtime::new(None, Limits::default())?;
    let pooled = Runtime::new(
        None,
        Limits {
            pool: Some(64),
            ..Limits::default()
        },
    )?;
    println!(
        "{n} instantiations of the files connector (after {} to warm up)",
        n / 10
    );
    println!("{:24} {:>10} {:>10}", "allocator", "median µs", "p99 µs");
    let mut medians = vec![];
    for (name, runtime) in [
        ("on-demand (CLI)", &on_demand),
        ("pooling (serve)", &pooled),
    ] {
        let t = measure(runtime, n, rt.handle())?;
        let median = t[t.len() / 2];
        medians.push(median);
        println!(
            "{name:24} {:>10.1} {:>10.1}",
            median.as_secs_f64() * 1e6,
            t[t.len() * 99 / 100].as_secs_f64() * 1e6
        );
    }
    println!(
        "on-demand / pooling: {:.2}x",
        medians[0].as_secs_f64() / medians[1].as_secs_f64()
    );
    Ok(())
}
