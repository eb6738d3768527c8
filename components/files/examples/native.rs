//! The files connector built for this machine instead of `wasm32-wasip2`,
//! driven as the host drives one lane: `check`, `discover`, then `read` with
//! the discovered schema and `next` until the end. It times the `next`
//! calls as the host times a lane's connector calls (the `connector` and
//! `connector cpu` figures of `sluice ingest`'s timings line), so the two
//! give the price of running the same code as a component. A measuring
//! instrument for `tests/bench`:
//!
//! ```text
//! cd components && cargo run --release --target <host> --features native \
//!     -p sluice-files --example native -- --format csv [-o k=v]... PATH...
//! ```
//!
//! A PATH that is a directory stands for every file under it. Prints one
//! JSON object: rows, batches, bytes of IPC, and seconds (wall and this
//! thread's CPU) in `next`.

use std::io::Cursor;
use std::time::Instant;

use arrow_ipc::reader::StreamReader;
use sluice_connector_sdk::storage::list_all;
use sluice_connector_sdk::{Guest, GuestReader, host};
use sluice_files::Files;
use sluice_files_contract::{Config, FileRef, Format};

fn main() {
    if let Err(e) = run() {
        eprintln!("native: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut format = None;
    let mut options = std::collections::BTreeMap::new();
    let mut paths = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--format" => format = Some(args.next().ok_or("--format needs a value")?),
            "-o" => {
                let kv = args.next().ok_or("-o needs key=value")?;
                let (k, v) = kv.split_once('=').ok_or("-o needs key=value")?;
                options.insert(k.to_string(), v.to_string());
            }
            _ => paths.push(arg),
        }
    }
    let format: Format = format
        .ok_or("--format csv|json|parquet is required")?
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut files = Vec::new();
    for path in &paths {
        let path = std::fs::canonicalize(path).map_err(|e| format!("{path}: {e}"))?;
        let prefix = format!("file://{}", path.display());
        let metas = if path.is_dir() {
            list_all(&prefix).map_err(said)?
        } else {
            vec![host::head(&prefix).map_err(said)?]
        };
        files.extend(
            metas
                .iter()
                .map(|m| FileRef::whole(&m.location, m.size, m.last_modified_ms)),
        );
    }
    if files.is_empty() {
        return Err("no files: give a file or a directory".into());
    }

    let mut config = Config {
        files,
        options,
        ..Config::new(format)
    };
    let json = |c: &Config| serde_json::to_string(c).map_err(|e| e.to_string());
    Files::check(json(&config)?).map_err(said)?;
    let streams = Files::discover(json(&config)?).map_err(said)?;
    let schema = StreamReader::try_new(Cursor::new(&streams[0].arrow_schema), None)
        .map_err(|e| e.to_string())?
        .schema();
    config.schema = Some(schema.as_ref().clone());

    let reader = sluice_files::open(&json(&config)?, "files").map_err(said)?;
    let (mut rows, mut batches, mut ipc_bytes, mut in_next, mut cpu) = (0, 0, 0, 0.0, 0.0);
    loop {
        let (started, cpu_before) = (Instant::now(), thread_cpu());
        let next = reader.next().map_err(said)?;
        in_next += started.elapsed().as_secs_f64();
        cpu += thread_cpu() - cpu_before;
        let Some(batch) = next else { break };
        batches += 1;
        ipc_bytes += batch.ipc.len();
        for b in StreamReader::try_new(Cursor::new(&batch.ipc), None).map_err(|e| e.to_string())? {
            rows += b.map_err(|e| e.to_string())?.num_rows();
        }
    }
    let encode_us = host::counters().get("ipc-encode-us").copied().unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({
            "rows": rows,
            "batches": batches,
            "ipc_bytes": ipc_bytes,
            "connector_s": in_next,
            "connector_cpu_s": cpu,
            "ipc_encode_s": encode_us as f64 / 1e6,
        })
    );
    Ok(())
}

/// This thread's CPU seconds, as the host counts a connector call's
/// (`/proc/thread-self/schedstat`).
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

fn said(e: sluice_connector_sdk::Error) -> String {
    format!("{e:?}")
}
