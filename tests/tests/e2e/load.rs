//! A bounded load test on loopback: for `SLUICE_LOAD_SECONDS` (default 60)
//! concurrent clients upload files to a table, push records through the
//! hosted edge function into the same table, land files in a volume and
//! trigger the stream pipeline that loads them. It prints requests/s and
//! p50/p99 latency per kind, and checks that every acknowledged row is in
//! its table exactly once and that no request failed except those meant to.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::functions::edge_server;
use crate::harness::{Case, read_delta};
use crate::serve::{ADMIN, WRITER};

const ROWS_PER_REQUEST: i64 = 20;

#[derive(Default)]
struct Tally {
    /// Latencies by request kind.
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    /// Rows acknowledged into `uploaded` and into `events`.
    uploaded: Vec<i64>,
    landed: Vec<i64>,
    /// Requests refused as the test meant them to be.
    meant_to_fail: usize,
    /// Anything else that did not succeed.
    unexpected: Vec<String>,
}

fn ids(first: i64) -> Vec<i64> {
    (first..first + ROWS_PER_REQUEST).collect()
}

fn csv(ids: &[i64]) -> Vec<u8> {
    let mut out = String::from("id,payload\n");
    for id in ids {
        out.push_str(&format!("{id},row {id} of a load test\n"));
    }
    out.into_bytes()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[test]
fn sustained_uploads_pushes_and_triggers_lose_and_duplicate_nothing() {
    let seconds: u64 = std::env::var("SLUICE_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let c = Case::new();
    let s = edge_server(
        &c,
        "edge",
        "SLUICE_TABLE = \"uploaded\"\nREQUIRED_FIELDS = \"id\"\n",
    );
    let def = "mode = \"stream\"\nsource = \"land/in/\"\nformat = \"csv\"\ntable = \"events\"\n";
    s.define("events", def);

    let tally = Mutex::new(Tally::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let timed = |kind: &'static str, f: &mut dyn FnMut() -> crate::serve::Reply| {
        let t = Instant::now();
        let r = f();
        tally
            .lock()
            .unwrap()
            .latencies
            .entry(kind)
            .or_default()
            .push(t.elapsed());
        r
    };
    std::thread::scope(|scope| {
        // Uploaders: a CSV file per request; every 25th request is one
        // the service must refuse (a format it cannot tell).
        for t in 0..4i64 {
            let (s, tally, timed) = (&s, &tally, &timed);
            scope.spawn(move || {
                let mut k = 0i64;
                while Instant::now() < deadline {
                    k += 1;
                    if k % 25 == 0 {
                        let r = timed("upload (refused)", &mut || {
                            s.call(
                                "POST",
                                "/tables/uploaded/upload?filename=x.bin",
                                Some(WRITER),
                                Some("application/octet-stream"),
                                Some(b"\x00\x01".to_vec()),
                            )
                        });
                        let mut t = tally.lock().unwrap();
                        if r.status == 415 {
                            t.meant_to_fail += 1;
                        } else {
                            t.unexpected
                                .push(format!("refused upload got {}: {}", r.status, r.body));
                        }
                        continue;
                    }
                    let batch = ids(1_000_000 * (t + 1) + k * ROWS_PER_REQUEST);
                    let r = timed("upload", &mut || {
                        s.call(
                            "POST",
                            &format!("/tables/uploaded/upload?filename=u{t}-{k}.csv"),
                            Some(WRITER),
                            Some("text/csv"),
                            Some(csv(&batch)),
                        )
                    });
                    let mut t = tally.lock().unwrap();
                    if r.status == 200 {
                        t.uploaded.extend(batch);
                    } else {
                        t.unexpected
                            .push(format!("upload got {}: {}", r.status, r.body));
                    }
                }
            });
        }
        // Pushers: JSON records through the hosted edge function.
        for t in 0..2i64 {
            let (s, tally, timed) = (&s, &tally, &timed);
            scope.spawn(move || {
                let mut k = 0i64;
                while Instant::now() < deadline {
                    k += 1;
                    let batch = ids(10_000_000 * (t + 1) + k * ROWS_PER_REQUEST);
                    let body: Vec<serde_json::Value> = batch
                        .iter()
                        .map(|id| serde_json::json!({"id": id, "payload": format!("pushed {id}")}))
                        .collect();
                    let r = timed("edge push", &mut || {
                        s.call(
                            "POST",
                            "/fn/edge/ingest",
                            Some(ADMIN),
                            Some("application/json"),
                            Some(serde_json::to_vec(&body).unwrap()),
                        )
                    });
                    let mut t = tally.lock().unwrap();
                    if r.status == 200 {
                        t.uploaded.extend(batch);
                    } else {
                        t.unexpected
                            .push(format!("push got {}: {}", r.status, r.body));
                    }
                }
            });
        }
        // A lander: files into the volume, and a trigger every 5th file.
        {
            let (s, tally, timed) = (&s, &tally, &timed);
            scope.spawn(move || {
                let mut k = 0i64;
                while Instant::now() < deadline {
                    k += 1;
                    let batch = ids(100_000_000 + k * ROWS_PER_REQUEST);
                    let r = timed("volume put", &mut || {
                        s.call(
                            "PUT",
                            &format!("/volumes/landing/in/f{k:06}.csv"),
                            Some(WRITER),
                            Some("text/csv"),
                            Some(csv(&batch)),
                        )
                    });
                    {
                        let mut t = tally.lock().unwrap();
                        if r.status == 201 {
                            t.landed.extend(batch);
                        } else {
                            t.unexpected
                                .push(format!("volume put got {}: {}", r.status, r.body));
                        }
                    }
                    if k % 5 == 0 {
                        let r = timed("trigger", &mut || {
                            s.call("POST", "/pipelines/events/runs", Some(WRITER), None, None)
                        });
                        if r.status != 202 {
                            tally
                                .lock()
                                .unwrap()
                                .unexpected
                                .push(format!("trigger got {}: {}", r.status, r.body));
                        }
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    // One last run picks up every landed file.
    let r = s.run_and_wait("events", WRITER);
    assert_eq!(r.status, 200, "{}", r.body);

    let t = tally.into_inner().unwrap();
    let total: usize = t.latencies.values().map(Vec::len).sum();
    println!(
        "load: {total} requests in {:.1} s = {:.1} requests/s ({} refused as meant)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        t.meant_to_fail
    );
    println!(
        "{:<18} {:>8} {:>10} {:>10}",
        "kind", "count", "p50 ms", "p99 ms"
    );
    for (kind, lat) in &t.latencies {
        let mut lat = lat.clone();
        lat.sort();
        println!(
            "{kind:<18} {:>8} {:>10.1} {:>10.1}",
            lat.len(),
            percentile(&lat, 0.50).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3
        );
    }
    assert!(
        t.unexpected.is_empty(),
        "{} requests failed unexpectedly, first: {:?}",
        t.unexpected.len(),
        &t.unexpected[..t.unexpected.len().min(5)]
    );
    assert!(t.meant_to_fail > 0 && !t.uploaded.is_empty() && !t.landed.is_empty());

    for (table, mut want) in [("uploaded", t.uploaded), ("events", t.landed)] {
        let got = read_delta(&c.path(&format!("warehouse/{table}"))).ids();
        want.sort();
        let dups = got.windows(2).filter(|w| w[0] == w[1]).count();
        assert_eq!(dups, 0, "{table}: {dups} duplicated rows");
        assert_eq!(got.len(), want.len(), "{table}: rows lost or extra");
        assert_eq!(
            got, want,
            "{table}: the rows differ from those acknowledged"
        );
        println!("{table}: {} rows, none lost, none duplicated", got.len());
    }
}
