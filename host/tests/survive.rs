//! One host, many runs: a component that loops, hogs memory or panics fails
//! its own run, and the same runtime goes straight on to the next pipeline.

use std::time::{Duration, Instant};

use sluice::engine::{Engine, Limits, Stop, Trigger};
use sluice_pipeline::pipeline::ConnectorRef;
use sluice_pipeline::{Format, Load, Pipeline};

static MISBEHAVE: &[u8] = include_bytes!(env!("SLUICE_MISBEHAVE_WASM"));

fn table(dir: &std::path::Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_survives_traps_and_runs_the_next_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::new(
        None,
        Limits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_millis(500),
            // As `sluice serve` runs connectors: from the pooling allocator,
            // whose slots a trapped instance must give back.
            pool: Some(4),
            ..Limits::default()
        },
        Default::default(),
        &dir.path().display().to_string(),
    )
    .unwrap();
    engine.parallelism = 2;
    let component = dir.path().join("misbehave.wasm");
    std::fs::write(&component, MISBEHAVE).unwrap();
    for (what, expect) in [
        ("loop", "time limit"),
        ("hog", "memory limit"),
        ("panic", "crashed"),
        ("garbage", "Arrow IPC"),
    ] {
        let pipeline = Pipeline {
            connector: Some(ConnectorRef {
                id: format!("sha256:{}", "0".repeat(64)),
                config: serde_json::json!({ "do": what }),
                stream: None,
            }),
            ..Pipeline::new(&table(dir.path(), what))
        };
        let load = Load {
            component_file: Some(component.clone()),
            ..Load::new(pipeline)
        };
        let started = Instant::now();
        let err = engine
            .run(&load, &Trigger::AvailableNow, &mut (), &Stop::new())
            .await
            .unwrap_err();
        assert!(err.message.contains(expect), "{what}: {}", err.message);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} took {:?}",
            started.elapsed()
        );
        assert!(!dir.path().join(what).join("_delta_log").exists());
    }

    std::fs::write(dir.path().join("a.csv"), "x,y\n1,a\n2,b\n").unwrap();
    let pipeline = Pipeline {
        source: Some(dir.path().join("a.csv").display().to_string()),
        format: Some(Format::Csv),
        ..Pipeline::new(&table(dir.path(), "good"))
    };
    let report = engine
        .run(
            &Load::new(pipeline),
            &Trigger::AvailableNow,
            &mut (),
            &Stop::new(),
        )
        .await
        .unwrap();
    assert_eq!(report.rows, 2);
    assert_eq!(report.version, Some(0));
}
