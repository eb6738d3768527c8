//! The PostgreSQL connector against a real server (Debian's, started once
//! per test binary by the harness with `wal_level=logical`): a snapshot of
//! each table, then its changes by logical replication, applied by key as
//! SCD type 1 or 2; tables compared value by value with the source through
//! psycopg.

use std::time::{Duration, Instant};

use crate::harness::{Case, PG_PASSWORD, PG_USER, Postgres, python, root, wait_until};
use crate::serve::Server;

/// Every type the connector reads as its own column type, and some it
/// keeps as text.
const TYPES: &str = "CREATE TABLE orders (
    id int PRIMARY KEY,
    qty smallint,
    big bigint,
    amount numeric(12,2),
    anynum numeric,
    price real,
    ratio double precision,
    paid boolean,
    note text,
    code varchar(10),
    letter char(3),
    blob bytea,
    day date,
    at timestamp,
    at_tz timestamptz,
    uid uuid,
    doc jsonb,
    raw json,
    tags text[],
    nums int[],
    span interval
);
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);";

const ROWS: &str = "INSERT INTO orders VALUES
  (1, 7, 9007199254740993, 12.50, 3.14159265358979323846, 1.5, 0.1, true,
   'tab\there, newline\nhere, back\\slash', 'abc', 'x', '\\x00ff10', '2024-02-29',
   '2024-02-29 23:59:59.123456', '2024-02-29 23:59:59.5+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   '{\"a\": [1, 2], \"b\": null}', '{\"z\": 1}', ARRAY['x', NULL, 'y z', '\"q\"'], ARRAY[1, NULL, 3],
   '1 day 02:03:04'),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL),
  (3, -32768, -9223372036854775808, -9999999999.99, 0, -0.25, 1e300, false, '', '', '',
   '\\x', '0001-01-01', '1900-01-01 00:00:00', '1969-12-31 23:59:59.999999+00',
   '00000000-0000-0000-0000-000000000000', '[]', '[]', '{}', '{}', '-3 hours');
INSERT INTO customers SELECT i, 'customer ' || i FROM generate_series(1, 500) i;";

/// A `cdc` pipeline file of `tables` in `database`, into `./lake/shop`.
fn pipeline(pg: &Postgres, database: &str, tables: &[&str], scd: u8, extra: &str) -> String {
    let tables: Vec<String> = tables.iter().map(|t| format!("{t:?}")).collect();
    format!(
        "mode = \"cdc\"\nconnector = \"postgres\"\nsource = \"{}\"\ntables = [{}]\ntable = \"./lake/shop\"\nscd_type = {scd}\n\n[options]\npassword = \"${{secret:PG_PASSWORD}}\"\n{extra}",
        pg.url(database),
        tables.join(", ")
    )
}

fn secret() -> Vec<(String, String)> {
    vec![("SLUICE_SECRET_PG_PASSWORD".into(), PG_PASSWORD.into())]
}

fn run(c: &Case, file: &str) -> String {
    c.ok_env(&["run", file], &secret())
}

fn fails(c: &Case, file: &str) -> String {
    let out = c.run_env(&["run", file], &secret());
    assert!(
        !out.status.success(),
        "sluice run {file} should have failed; stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// Compares source table `source` with the table at `./lake/shop/<name>`.
fn same(c: &Case, pg: &Postgres, database: &str, source: &str, scd: u8, versions: Option<&str>) {
    if let Err(e) = compare(c, pg, database, source, scd, versions) {
        panic!("{source} and its table differ: {e}");
    }
}

/// What [`same`] checks, as a result.
fn compare(
    c: &Case,
    pg: &Postgres,
    database: &str,
    source: &str,
    scd: u8,
    versions: Option<&str>,
) -> Result<(), String> {
    let name = source.rsplit('.').next().unwrap();
    let mut cmd = std::process::Command::new(python());
    cmd.arg(root().join("tests/interop/compare_postgres.py"))
        .arg(pg.url(database))
        .arg(PG_PASSWORD)
        .arg(source)
        .arg(c.path(&format!("lake/shop/{name}")))
        .arg("id")
        .args(["--scd", &scd.to_string()])
        // An interval is kept as its ISO 8601 text, checked on its own.
        .args(["--skip", "span"]);
    if let Some(v) = versions {
        cmd.args(["--versions", v]);
    }
    let out = cmd.output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The changes the tests make between runs, each its own transaction:
/// inserts, updates, deletes, a key that comes back.
const WORKLOAD: &[&str] = &[
    "BEGIN;
     INSERT INTO orders (id, qty, note) VALUES (4, 1, 'four'), (5, 2, 'five');
     UPDATE orders SET qty = qty + 100, note = 'updated' WHERE id = 1;
     DELETE FROM orders WHERE id = 3;
     COMMIT",
    "UPDATE orders SET amount = 1.01 WHERE id = 4",
    "UPDATE orders SET amount = 2.02 WHERE id = 4",
    "DELETE FROM orders WHERE id = 5",
    "INSERT INTO orders (id, note) VALUES (5, 'five again')",
    "UPDATE customers SET name = name || '!' WHERE id % 7 = 0",
    "DELETE FROM customers WHERE id > 490",
    "INSERT INTO customers SELECT i, 'late ' || i FROM generate_series(501, 520) i",
];

/// A TRUNCATE and what comes after it, in one transaction and the next.
const TRUNCATE: &[&str] = &[
    "BEGIN; TRUNCATE customers; INSERT INTO customers VALUES (7, 'after truncate'); COMMIT",
    "INSERT INTO customers VALUES (8, 'later')",
];

fn workload(pg: &Postgres, db: &str) {
    for t in WORKLOAD {
        pg.sql(db, t);
    }
}

#[test]
fn a_database_is_copied_then_its_changes_applied_as_scd_type_1() {
    let (pg, c) = (Postgres::shared(), Case::new());
    let db = pg.database("cdc_scd1");
    pg.sql(&db, TYPES);
    pg.sql(&db, ROWS);
    c.write(
        "shop.toml",
        pipeline(pg, &db, &["public.orders", "public.customers"], 1, ""),
    );
    run(&c, "shop.toml");
    same(&c, pg, &db, "orders", 1, None);
    same(&c, pg, &db, "customers", 1, None);
    let t = crate::harness::read_delta(&c.path("lake/shop/orders"));
    let span: Vec<String> = t
        .data_by("id")
        .iter()
        .map(|r| r["span"].as_str().unwrap_or("-").to_string())
        .collect();
    assert_eq!(span, ["P1DT2H3M4S", "-", "PT-3H"]);
    assert_eq!(t.type_of("amount"), "decimal128(12, 2)");
    assert_eq!(
        t.type_of("anynum"),
        "string",
        "unconstrained numeric is kept exact, as text"
    );

    // Nothing new: no batch, no new table version.
    let before = crate::harness::read_delta(&c.path("lake/shop/orders")).version;
    run(&c, "shop.toml");
    assert_eq!(
        crate::harness::read_delta(&c.path("lake/shop/orders")).version,
        before
    );

    workload(pg, &db);
    run(&c, "shop.toml");
    same(&c, pg, &db, "orders", 1, None);
    same(&c, pg, &db, "customers", 1, None);

    // A column added to a source table is added to its table.
    pg.sql(
        &db,
        "ALTER TABLE customers ADD COLUMN tier text; UPDATE customers SET tier = 'gold' WHERE id < 10",
    );
    run(&c, "shop.toml");
    same(&c, pg, &db, "customers", 1, None);
    assert_eq!(
        crate::harness::read_delta(&c.path("lake/shop/customers")).type_of("tier"),
        "string"
    );

    // A TRUNCATE empties the table; what follows it stays.
    for t in TRUNCATE {
        pg.sql(&db, t);
    }
    run(&c, "shop.toml");
    same(&c, pg, &db, "customers", 1, None);
    same(&c, pg, &db, "orders", 1, None);
}

#[test]
fn scd_type_2_keeps_every_version_of_each_key() {
    let (pg, c) = (Postgres::shared(), Case::new());
    let db = pg.database("cdc_scd2");
    pg.sql(&db, TYPES);
    pg.sql(&db, ROWS);
    // Small batches: the backlog of changes is several, each ending at a
    // commit.
    c.write(
        "shop.toml",
        pipeline(
            pg,
            &db,
            &["public.orders"],
            2,
            "maxChangesPerBatch = \"4\"\n",
        ),
    );
    run(&c, "shop.toml");
    workload(pg, &db);
    let out = run(&c, "shop.toml");
    assert!(
        out.contains("batch 3:"),
        "the changes came in several batches: {out}"
    );
    // 1: copied, updated; 2: copied; 3: copied, deleted (closed); 4:
    // inserted, updated twice; 5: inserted, deleted, inserted again.
    same(
        &c,
        pg,
        &db,
        "orders",
        2,
        Some(r#"{"1": 2, "2": 1, "3": 1, "4": 3, "5": 2}"#),
    );
    // A TRUNCATE ends every current version; what follows it starts anew.
    pg.sql(
        &db,
        "BEGIN; TRUNCATE orders; INSERT INTO orders (id, note) VALUES (1, 'back'), (7, 'after truncate'); COMMIT",
    );
    pg.sql(&db, "INSERT INTO orders (id, note) VALUES (8, 'later')");
    run(&c, "shop.toml");
    same(
        &c,
        pg,
        &db,
        "orders",
        2,
        Some(r#"{"1": 3, "2": 1, "3": 1, "4": 3, "5": 2, "7": 1, "8": 1}"#),
    );
}

/// An update that leaves a TOASTed value alone (the table's replica
/// identity is its key, so the value is not sent) keeps the value the
/// table has: from the stored row, or from the change before it in the
/// same batch.
#[test]
fn an_update_that_leaves_a_toasted_value_keeps_the_stored_one() {
    let pg = Postgres::shared();
    for scd in [1, 2] {
        let c = Case::new();
        let db = pg.database(&format!("cdc_toast{scd}"));
        // Stored out of line, uncompressed, past ~2 kB.
        pg.sql(
            &db,
            "CREATE TABLE docs (id int PRIMARY KEY, n int, body text);
             ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
             INSERT INTO docs SELECT i, 0, repeat(md5(i::text), 100) FROM generate_series(1, 3) i",
        );
        c.write("shop.toml", pipeline(pg, &db, &["public.docs"], scd, ""));
        run(&c, "shop.toml");
        pg.sql(
            &db,
            "UPDATE docs SET n = 1;
             UPDATE docs SET body = 'short' WHERE id = 2;
             INSERT INTO docs VALUES (4, 0, repeat('y', 5000));
             UPDATE docs SET n = 3 WHERE id = 4",
        );
        run(&c, "shop.toml");
        same(&c, pg, &db, "docs", scd, None);
    }
}

/// A table with no changes while others change a lot: its slot still
/// moves on, so it does not keep the server's WAL.
#[test]
fn a_quiet_tables_slot_keeps_no_wal_back() {
    let (pg, c) = (Postgres::shared(), Case::new());
    let db = pg.database("cdc_quiet");
    pg.sql(
        &db,
        "CREATE TABLE quiet (id int PRIMARY KEY); CREATE TABLE busy (id int PRIMARY KEY, v text);
         INSERT INTO quiet VALUES (1)",
    );
    c.write("shop.toml", pipeline(pg, &db, &["public.quiet"], 1, ""));
    let out = run(&c, "shop.toml");
    assert!(out.contains("bytes ahead when last planned"), "{out}");
    pg.sql(
        &db,
        "INSERT INTO busy SELECT i, repeat('x', 100) FROM generate_series(1, 20000) i",
    );
    let before = pg.sql(&db, "SELECT pg_current_wal_lsn()");
    run(&c, "shop.toml");
    let behind = pg.sql(
        &db,
        &format!(
            "SELECT confirmed_flush_lsn >= '{}' FROM pg_replication_slots WHERE database = '{db}'",
            before.trim()
        ),
    );
    assert_eq!(behind.trim(), "t", "the quiet table's slot moved on");
    same(&c, pg, &db, "quiet", 1, None);
}

/// TLS to the server: the connector asks for it inside the protocol
/// (`SSLRequest`), the host runs it and verifies the server's certificate
/// against the pipeline's `network_ca`; against the public roots the test
/// CA's certificate fails, naming TLS.
#[test]
fn tls_to_the_server_is_verified_against_the_pipelines_ca() {
    let (pg, c) = (Postgres::shared(), Case::new());
    let db = pg.database("cdc_tls");
    pg.sql(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')",
    );
    let tls = pipeline(pg, &db, &["public.t"], 1, "sslmode = \"require\"\n");
    c.write("untrusted.toml", &tls);
    let e = fails(&c, "untrusted.toml");
    assert!(e.contains("TLS"), "{e}");
    c.write(
        "shop.toml",
        format!(
            "{tls}\n[grants]\nnetwork_ca = {:?}\n",
            pg.ca.display().to_string()
        ),
    );
    run(&c, "shop.toml");
    pg.sql(
        &db,
        "INSERT INTO t VALUES (2, 'b'); UPDATE t SET v = 'a2' WHERE id = 1",
    );
    run(&c, "shop.toml");
    // sslmode=require: had the server not started TLS, the run failed.
    same(&c, pg, &db, "t", 1, None);
}

#[test]
fn a_tables_without_a_key_wrong_password_and_missing_publication_say_what_to_fix() {
    let (pg, c) = (Postgres::shared(), Case::new());
    let db = pg.database("cdc_bad");
    pg.sql(
        &db,
        "CREATE TABLE nokey (a int, b text); CREATE TABLE k (id int PRIMARY KEY)",
    );

    c.write("nokey.toml", pipeline(pg, &db, &["public.nokey"], 1, ""));
    let e = fails(&c, "nokey.toml");
    assert!(
        e.contains("public.nokey has no primary key") && e.contains("REPLICA IDENTITY FULL"),
        "{e}"
    );

    // With REPLICA IDENTITY FULL every column is the key.
    pg.sql(
        &db,
        "ALTER TABLE nokey REPLICA IDENTITY FULL; INSERT INTO nokey VALUES (1, 'x')",
    );
    run(&c, "nokey.toml");

    let out = c.run_env(
        &["run", "nokey.toml"],
        &[("SLUICE_SECRET_PG_PASSWORD".into(), "wrong".into())],
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(
        !e.contains("wrong"),
        "the password is not in the error: {e}"
    );

    c.write(
        "nopub.toml",
        pipeline(pg, &db, &["public.k"], 1, "createPublication = \"false\"\n"),
    );
    let e = fails(&c, "nopub.toml");
    assert!(
        e.contains("CREATE PUBLICATION") && e.contains("FOR TABLE \"public\".\"k\""),
        "{e}"
    );

    c.write(
        "missing.toml",
        pipeline(pg, &db, &["public.nothere"], 1, ""),
    );
    let e = fails(&c, "missing.toml");
    assert!(e.contains("table public.nothere does not exist"), "{e}");
}

/// A writer beside the runs: transactions that each add one to `v` of a
/// few keys, or insert a new key, a few hundred a second, until `stop`
/// exists.
fn writer(pg: &Postgres, db: &str, stop: &std::path::Path) -> std::process::Child {
    let script = format!(
        "import os, random, time, psycopg\n\
         pg = psycopg.connect({url:?}, password={PG_PASSWORD:?}, autocommit=True)\n\
         rng, next_id = random.Random(7), 100001\n\
         while not os.path.exists({stop:?}):\n    \
             if rng.random() < 0.2:\n        \
                 pg.execute('INSERT INTO t VALUES (%s, 0, %s)', (next_id, 'new'))\n        \
                 next_id += 1\n    \
             else:\n        \
                 ids = [rng.randint(1, 300) for _ in range(3)]\n        \
                 pg.execute('UPDATE t SET v = v + 1 WHERE id = ANY(%s)', (ids,))\n    \
             time.sleep(0.002)\n",
        url = pg.url(db),
        stop = stop.display().to_string(),
    );
    std::process::Command::new(python())
        .args(["-c", &script])
        .spawn()
        .unwrap()
}

/// SIGKILL at random points of the snapshot and of the change batches
/// (planning, writing, committing, recording), while a writer goes on:
/// the SCD 2 table holds every version of every key exactly once (each
/// update adds one to `v`, so a key's versions from the one the snapshot
/// saw on are consecutive numbers, without a gap or a repeat), and its
/// current rows equal the source.
#[test]
fn sigkill_during_snapshot_and_streaming_loses_and_doubles_no_change() {
    let (pg, c) = (Postgres::shared(), Case::new());
    let db = pg.database("cdc_crash");
    pg.sql(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, pad text);
         INSERT INTO t SELECT i, 0, repeat('x', 200) FROM generate_series(1, 100000) i",
    );
    // The snapshot (about 25 MB) in three parts read at once.
    c.write(
        "t.toml",
        pipeline(
            pg,
            &db,
            &["public.t"],
            2,
            "maxChangesPerBatch = \"3000\"\nsnapshotPartBytes = \"4194304\"\n",
        ),
    );
    let stop = c.path("stop-writer");
    let mut w = writer(pg, &db, &stop);
    let by_phase = crate::crash::crash(
        &c,
        &["run", "t.toml", "--parallelism", "3"],
        &secret(),
        16,
        1,
    );
    std::fs::write(&stop, "").unwrap();
    assert!(w.wait().unwrap().success(), "the writer failed");
    run(&c, "t.toml");
    crate::crash::assert_every_step_was_hit(&by_phase, 1);
    same(&c, pg, &db, "t", 2, None);
    let (keys, versions) = versions_follow_on(&c, "lake/shop/t");
    println!("{keys} keys, {versions} versions");
    assert!(versions > 100_000, "the writer's changes were applied");
}

/// The keys and versions of the SCD 2 table at `table`, after checking
/// that each key's versions of `v` (which each update adds one to) are
/// consecutive numbers: no change lost, none applied twice.
fn versions_follow_on(c: &Case, table: &str) -> (u64, u64) {
    let gaps = c.python(&format!(
        "from deltalake import DeltaTable\n\
         from collections import defaultdict\n\
         seen = defaultdict(list)\n\
         for r in DeltaTable({table:?}).to_pyarrow_table(columns=['id', 'v']).to_pylist():\n    \
             seen[r['id']].append(r['v'])\n\
         bad = {{k: sorted(v) for k, v in seen.items() if sorted(v) != list(range(min(v), min(v) + len(v)))}}\n\
         print(len(seen), sum(len(v) for v in seen.values()), dict(list(bad.items())[:5]))\n",
        table = c.path(table).display().to_string(),
    ));
    let parts: Vec<&str> = gaps.trim().splitn(3, ' ').collect();
    assert_eq!(
        parts[2], "{}",
        "keys whose versions have a gap or a repeat: {gaps}"
    );
    (parts[0].parse().unwrap(), parts[1].parse().unwrap())
}

/// The server stopped while a run streams its changes (a fast shutdown
/// ends every session, the replication stream too) and started again: the
/// run fails naming the server, a run while it is down says it cannot be
/// reached, and the run after it is back resumes from the slot, every
/// version of every key exactly once.
#[test]
fn a_server_restarted_mid_stream_resumes_exactly_once() {
    let (mut pg, c) = (Postgres::private(), Case::new());
    let db = pg.database("cdc_restart");
    pg.sql(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO t SELECT i, 0 FROM generate_series(1, 2000) i",
    );
    c.write(
        "t.toml",
        pipeline(
            &pg,
            &db,
            &["public.t"],
            2,
            "maxChangesPerBatch = \"2000\"\n",
        ),
    );
    run(&c, "t.toml");
    // 60,000 changes in 60 transactions: about 60 batches.
    pg.sql(
        &db,
        "DO $$ BEGIN FOR i IN 1..60 LOOP UPDATE t SET v = v + 1 WHERE id % 2 = i % 2; COMMIT; END LOOP; END $$",
    );
    let running = c
        .command(&["run", "t.toml"], &secret())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The server goes once the run has committed a change batch.
    let log = c.path("lake/shop/t/_delta_log");
    wait_until("no change batch was committed", 120, || {
        log.join(format!("{:020}.json", 1)).exists()
    });
    pg.stop();
    let out = running.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    let server = format!("PostgreSQL 127.0.0.1:{}", pg.port);
    assert!(!out.status.success(), "the run went on without the server");
    assert!(e.contains(&server), "{e}");

    let e = fails(&c, "t.toml");
    assert!(e.contains(&format!("{server}: Connection refused")), "{e}");

    pg.start_again();
    run(&c, "t.toml");
    same(&c, &pg, &db, "t", 2, None);
    let (keys, versions) = versions_follow_on(&c, "lake/shop/t");
    assert_eq!((keys, versions), (2000, 2000 + 60_000));
}

/// A slot another process streams from, a user who may not replicate, and
/// a column changed to a type the table's column cannot take: each fails
/// saying what to fix; the last commits nothing.
#[test]
fn a_held_slot_a_user_who_may_not_replicate_and_a_changed_type_say_what_to_fix() {
    let (pg, c) = (Postgres::shared(), Case::new());
    let db = pg.database("cdc_bad_more");
    pg.sql(
        &db,
        "CREATE TABLE k (id int PRIMARY KEY, v int); INSERT INTO k VALUES (1, 1)",
    );
    c.write("k.toml", pipeline(pg, &db, &["public.k"], 1, ""));
    run(&c, "k.toml");

    // pg_recvlogical streams from the stream's slot.
    let slot = pg.sql(
        &db,
        "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()",
    );
    let publication = pg.sql(&db, "SELECT pubname FROM pg_publication");
    let active = |db: &str| {
        pg.sql(
            db,
            &format!(
                "SELECT active_pid IS NOT NULL FROM pg_replication_slots WHERE slot_name = '{slot}'"
            ),
        ) == "t"
    };
    /// Stops the process it holds when dropped, a failed assertion too.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let holder = std::process::Command::new(pg.program("pg_recvlogical"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            PG_USER,
            "-d",
            &db,
        ])
        .args(["--slot", &slot, "--start", "-f", "/dev/null"])
        .args(["-o", "proto_version=1", "-o"])
        .arg(format!("publication_names={publication}"))
        .env("PGPASSWORD", PG_PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let holder = Killed(holder);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !active(&db) {
        assert!(
            Instant::now() < deadline,
            "pg_recvlogical did not take the slot"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    pg.sql(&db, "INSERT INTO k VALUES (2, 2)");
    let e = fails(&c, "k.toml");
    assert!(
        e.contains(&format!(
            "replication slot '{slot}' is in use by server process"
        )) && e.contains("slotPrefix"),
        "{e}"
    );
    drop(holder);
    while active(&db) {
        assert!(Instant::now() < deadline, "pg_recvlogical did not let go");
        std::thread::sleep(Duration::from_millis(50));
    }
    run(&c, "k.toml");
    same(&c, pg, &db, "k", 1, None);

    // A user without the REPLICATION attribute.
    pg.sql(
        "postgres",
        "DROP ROLE IF EXISTS cdc_reader; CREATE ROLE cdc_reader LOGIN PASSWORD 'reader-pw-1'",
    );
    pg.sql(&db, "GRANT SELECT ON k TO cdc_reader");
    let url = pg.url(&db).replace(PG_USER, "cdc_reader");
    c.write(
        "reader.toml",
        pipeline(pg, &db, &["public.k"], 1, "slotPrefix = \"reader\"\n")
            .replace(&pg.url(&db), &url)
            .replace("./lake/shop", "./lake/reader"),
    );
    let out = c.run_env(
        &["run", "reader.toml"],
        &[("SLUICE_SECRET_PG_PASSWORD".into(), "reader-pw-1".into())],
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        e.contains("may not replicate") && e.contains("ALTER ROLE \"cdc_reader\" REPLICATION"),
        "{e}"
    );

    // A column whose type changed to one its table column cannot take.
    let version = crate::harness::read_delta(&c.path("lake/shop/k")).version;
    pg.sql(
        &db,
        "ALTER TABLE k ALTER COLUMN v TYPE text; UPDATE k SET v = 'not a number' WHERE id = 1",
    );
    let e = fails(&c, "k.toml");
    println!("a changed type: {e}");
    assert!(
        e.contains("public.k.v")
            && e.contains("'not a number'")
            && e.contains("Int32")
            && e.contains("the source column is now of type text"),
        "{e}"
    );
    assert_eq!(
        crate::harness::read_delta(&c.path("lake/shop/k")).version,
        version,
        "nothing was committed"
    );
}

/// A large table's snapshot is copied in ranges of its pages, read at
/// once, one lane each, under the one snapshot its slot exported: the
/// table equals the source, and the changes after it apply.
#[test]
fn a_large_tables_snapshot_is_copied_in_parts_at_once() {
    let (pg, c) = (Postgres::shared(), Case::new());
    let db = pg.database("cdc_parts");
    pg.sql(
        &db,
        "CREATE TABLE big (id bigint PRIMARY KEY, amount numeric(12,2), at timestamptz, note text);
         INSERT INTO big SELECT i, i / 100.0, timestamptz '2024-01-01' + i * interval '1 minute',
                                md5(i::text) FROM generate_series(1, 30000) i",
    );
    c.write(
        "big.toml",
        pipeline(
            pg,
            &db,
            &["public.big"],
            1,
            "snapshotPartBytes = \"262144\"\n",
        ),
    );
    let mut env = secret();
    env.push(("SLUICE_LOG".into(), "sluice::component=info".into()));
    let out = c.run_env(&["run", "big.toml", "--parallelism", "3"], &env);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("in 3 parts at once"), "{log}");
    same(&c, pg, &db, "big", 1, None);
    pg.sql(
        &db,
        "UPDATE big SET note = 'changed' WHERE id % 1000 = 0; DELETE FROM big WHERE id > 29990;
         INSERT INTO big VALUES (40000, 1.5, now(), 'new')",
    );
    run(&c, "big.toml");
    same(&c, pg, &db, "big", 1, None);
}

/// `sluice serve` keeps a `cdc` pipeline with `trigger = "continuous"`
/// running: the snapshot, then changes as they commit, until the service
/// stops between batches.
#[test]
fn serve_keeps_a_cdc_pipeline_running() {
    let (pg, c) = (Postgres::shared(), Case::new());
    let db = pg.database("cdc_serve");
    pg.sql(
        &db,
        "CREATE TABLE items (id int PRIMARY KEY, v int); INSERT INTO items SELECT i, 0 FROM generate_series(1, 100) i",
    );
    let pipeline = format!(
        "mode = \"cdc\"\nconnector = \"postgres\"\nsource = \"{}\"\ntables = [\"public.items\"]\n\
         table = \"./lake/shop\"\ntrigger = \"continuous\"\n\n[options]\npassword = \"${{secret:PG_PASSWORD}}\"\n",
        pg.url(&db)
    );
    let mut s = Server::start_with(
        &c,
        "",
        "127.0.0.1:0",
        &[("SLUICE_SECRET_PG_PASSWORD", PG_PASSWORD)],
    );
    s.define("shop", &pipeline);
    let until_same = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            match compare(&c, pg, &db, "items", 1, None) {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("{what}: {e}\n{}", s.log()),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    };
    until_same("the snapshot");
    pg.sql(
        &db,
        "INSERT INTO items VALUES (101, 1); UPDATE items SET v = 7 WHERE id <= 10",
    );
    pg.sql(&db, "DELETE FROM items WHERE id BETWEEN 50 AND 59");
    until_same("the changes");
    // The slot's lag, as the stream last planned.
    let metrics = s.get("/metrics", crate::serve::ADMIN).body;
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with("sluice_source_lag_bytes{pipeline=\"shop\",stream=\"public.items\"}")),
        "{metrics}"
    );
    assert!(s.terminate(Duration::from_secs(60)), "{}", s.log());
}
