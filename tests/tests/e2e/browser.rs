//! The page `sluice serve` serves at `/`, driven in headless Chromium by
//! `tests/browser/page.py` (Playwright): a user enters a token, sees a
//! pipeline's last run, previews a CSV upload and loads it. The table is
//! then read back by an independent reader.

use std::process::Command;
use std::time::Instant;

use crate::harness::{Case, python, read_delta, root};
use crate::serve::{ADMIN, Server, WRITER};

#[test]
fn a_user_sees_a_pipelines_last_run_and_uploads_a_file_in_the_browser() {
    let c = Case::new();
    let s = Server::start(&c, "backstop_interval = \"0s\"");

    // A pipeline the writer may see, run once, so the page has a last run.
    c.write("land/in/a.csv", "id\n1\n2\n");
    let def = "mode = \"stream\"\nsource = \"land/in/\"\nformat = \"csv\"\ntable = \"events\"\n";
    s.define("events", def);
    let r = s.run_and_wait("events", ADMIN);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["report"]["rows"], 2, "{}", r.body);

    // A name as users' files have, with a space the server does not take in
    // a file name: the page makes it one it takes.
    let csv = c.write(
        "city temps.csv",
        "id,city,temp\n1,Oslo,-3.5\n2,Lima,19.25\n3,\"Cape Town, ZA\",22\n",
    );
    // Kept after the test (the case's directory is not): a failure leaves
    // a screenshot and the page's HTML here.
    let out = root().join("target/e2e-browser");
    let _ = std::fs::remove_dir_all(&out);
    drive(
        "page.py",
        &[
            s.url.as_str(),
            WRITER,
            out.to_str().unwrap(),
            "--pipeline",
            "events",
            "--pipeline-rows",
            "2",
            "--table",
            "uploaded",
            "--csv",
            csv.to_str().unwrap(),
            "--columns",
            "id:Int64,city:Utf8,temp:Float64",
        ],
    );

    // What the page loaded is in the table, as another reader sees it.
    let t = read_delta(&c.path("warehouse/uploaded"));
    let mut rows: Vec<(i64, String, f64)> = t
        .rows
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["city"].as_str().unwrap().to_string(),
                r["temp"].as_f64().unwrap(),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    assert_eq!(
        rows,
        [
            (1, "Oslo".into(), -3.5),
            (2, "Lima".into(), 19.25),
            (3, "Cape Town, ZA".into(), 22.0)
        ]
    );

    // The page acted with the token the user entered: the writer's.
    let audit = s.get("/audit", ADMIN);
    assert_eq!(audit.status, 200, "{}", audit.body);
    let by_page: Vec<&str> = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["principal"] == "loader" && e["outcome"] == "ok")
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        by_page.contains(&"table.preview") && by_page.contains(&"table.upload"),
        "{by_page:?}"
    );
}

/// The console's flows (`tests/browser/console.py`): add data with a type
/// change and a rename, then an append and the table's history; a
/// pipeline's run history and chart after three runs; a kept stream's live
/// chart; an admin's mistake in a definition shown where it is; a volume's
/// files; a refused connector upload; the activity log; a writer who
/// cannot see the other tables. Screenshots of the main pages land in
/// `target/console-screenshots` (README shows them, from `docs/console`).
#[test]
fn the_console_adds_data_shows_runs_and_tables_and_keeps_writers_to_theirs() {
    let c = Case::new();
    let s = Server::start(&c, "backstop_interval = \"0s\"");
    let def = "mode = \"stream\"\nsource = \"land/in/\"\nformat = \"csv\"\ntable = \"events\"\n";
    s.define("events", def);
    for i in 0..3 {
        c.write(&format!("land/in/{i}.csv"), format!("id\n{i}\n"));
        let r = s.run_and_wait("events", ADMIN);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = s.call(
        "POST",
        "/tables/secret/upload?filename=s.csv",
        Some(ADMIN),
        None,
        Some(b"x\n1\n".to_vec()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // A stream the service keeps running, with rows for the live chart.
    c.write("land/live/a.csv", "id\n1\n2\n");
    s.define(
        "live",
        "mode = \"stream\"\nsource = \"land/live/\"\nformat = \"csv\"\ntable = \"live\"\ntrigger = \"continuous\"\n",
    );
    let csv = c.write(
        "zip codes.csv",
        "zip code,city,pop\n02134,Boston,5\n10001,New York,8\n",
    );
    let more = c.write("more.csv", "zip code,city,pop\n02110,Boston,2\n");

    let out = root().join("target/e2e-console");
    let _ = std::fs::remove_dir_all(&out);
    let shots = root().join("target/console-screenshots");
    drive(
        "console.py",
        &[
            s.url.as_str(),
            ADMIN,
            WRITER,
            out.to_str().unwrap(),
            "--shots",
            shots.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
            "--more",
            more.to_str().unwrap(),
            "--table",
            "zips",
            "--pipeline",
            "events",
            "--runs",
            "3",
            "--hidden",
            "secret,events,live",
            "--live",
            "live",
        ],
    );

    // The table as another reader sees it: the retyped zip code (a name
    // with a space, renamed) kept its leading zeros, the renamed column is
    // there.
    let t = read_delta(&c.path("warehouse/zips"));
    let cols: Vec<(&str, &str)> = t
        .schema
        .iter()
        .map(|(n, ty)| (n.as_str(), ty.as_str()))
        .collect();
    assert_eq!(
        cols,
        [("zip", "string"), ("town", "string"), ("pop", "int64")]
    );
    let mut zips: Vec<&str> = t.rows.iter().map(|r| r["zip"].as_str().unwrap()).collect();
    zips.sort();
    assert_eq!(zips, ["02110", "02134", "10001"]);
    // The definition the admin broke and put back is the one in force.
    let p = s.get("/pipelines/events", ADMIN);
    assert_eq!(p.body["pipeline"]["mode"], "stream", "{}", p.body);
}

/// Runs `tests/browser/<script>` with `args` and fails the test with what
/// it printed unless it succeeds; prints its summary and time.
fn drive(script: &str, args: &[&str]) {
    let started = Instant::now();
    let run = Command::new(python())
        .arg(root().join("tests/browser").join(script))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        run.status
    );
    println!("{} ({:.1?})", stdout.trim(), started.elapsed());
}
