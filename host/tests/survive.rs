//! One host, many runs: a component that loops, hogs memory or panics fails
//! its own run, and the same runtime goes straight on to the next pipeline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::builtin;
use sluice::capability::Counters;
use sluice::ingest::{Input, Job};
use sluice::runtime::{Limits, Loaded, Runtime};
use sluice_pipeline::Format;
use sluice_sink::{Location, TableFormat, Target, WriteMode, WriteOptions};

const MISBEHAVE: &[u8] = include_bytes!(env!("SLUICE_MISBEHAVE_WASM"));

fn job(runtime: &Runtime, connector: &Loaded, input: Input, table: &std::path::Path) -> Job {
    let location = Location::parse(table.to_str().unwrap(), Default::default()).unwrap();
    Job {
        runtime: runtime.clone(),
        connector: connector.clone(),
        input,
        target: Target::new(location, TableFormat::Delta, WriteOptions::default()),
        mode: WriteMode::Overwrite,
        parallelism: 2,
        split_bytes: sluice::split::DEFAULT_SPLIT_BYTES,
        storage_options: Default::default(),
        counters: Arc::new(Counters::default()),
        projection: None,
        redactor: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_survives_traps_and_runs_the_next_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(
        None,
        Limits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_millis(500),
            // As `sluice serve` runs connectors: from the pooling allocator,
            // whose slots a trapped instance must give back.
            pool: Some(4),
            ..Limits::default()
        },
    )
    .unwrap();
    let bad = runtime.load(MISBEHAVE).unwrap();
    for (what, expect) in [
        ("loop", "time limit"),
        ("hog", "memory limit"),
        ("panic", "crashed"),
        ("garbage", "Arrow IPC"),
    ] {
        let input = Input::Connector {
            config: format!("{{\"do\": \"{what}\"}}"),
            stream: None,
            grants: vec![],
        };
        let started = Instant::now();
        let err = job(&runtime, &bad, input, &dir.path().join(what))
            .run(|_| {})
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains(expect), "{what}: {err:#}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} took {:?}",
            started.elapsed()
        );
        assert!(!dir.path().join(what).join("_delta_log").exists());
    }

    std::fs::write(dir.path().join("a.csv"), "x,y\n1,a\n2,b\n").unwrap();
    let files = runtime.load(builtin::FILES).unwrap();
    let input = Input::Files {
        source: dir.path().join("a.csv").display().to_string(),
        format: Format::Csv,
        options: Default::default(),
    };
    let summary = job(&runtime, &files, input, &dir.path().join("good"))
        .run(|_| {})
        .await
        .unwrap();
    assert_eq!(summary.committed.rows, 2);
    assert_eq!(summary.committed.version, Some(0));
}
