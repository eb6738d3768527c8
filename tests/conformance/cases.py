"""The conformance suite's cases and their judge.

    cases.py prepare DIR   writes every case's input under DIR and DIR/manifest.json
    cases.py judge DIR     reads DIR/results.json (what `sluice ingest` did with each
                           case) and every table Sluice wrote, compares them with an
                           independent reader, and prints a JSON summary

The corpora (vendored under corpora/, each with its licence): apache/parquet-testing,
nst/JSONTestSuite, max-mapper/csv-spectrum; plus constructed edge cases (pyarrow-written
Parquet, Python-`csv`-judged CSV). Oracles: pyarrow for Parquet, Python's `json` for JSON
(NaN and Infinity refused, as RFC 8259 does), Python's `csv` (strict) for CSV.

Every case ends in one of: identical (loaded, every value equal to the oracle's), refused
(Sluice failed, saying why), or wrong (loaded where the oracle refuses or a value
differs). `expect` says what a case must do: load, fail, or either (implementation-
defined); a case that must load and is refused is counted as refused, not wrong.
"""

import csv
import datetime
import decimal
import io
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPORA = os.path.join(HERE, "corpora")

# Filler records before a JSON case, so that it is read past the schema sample
# (10,000 records) by the fast path, not while inferring.
FILLER = 10_001

PARQUET_MUST_FAIL = {
    "datapage_v1-corrupt-checksum.parquet",
    "rle-dict-uncompressed-corrupt-checksum.parquet",
    "large_string_map.brotli.parquet",
}
PARQUET_EITHER = {
    "nation.dict-malformed.parquet",
    "incorrect_map_schema.parquet",
    "unknown-logical-type.parquet",
    "ARROW-GH-43605.parquet",
}


# Where a corpus's own answer is wrong, the documented or re-derived one.
# int96_from_spark.md gives the microseconds (pyarrow wraps the last one).
DOCUMENTED = {
    "parquet-testing/data/int96_from_spark.parquet": [
        {"a": v}
        for v in [1704141296123456, 1704070800000000, 253402225200000000,
                  1735599600000000, None, 9089380393200000000]
    ],
}
# csv-spectrum's location_coordinates.json names another phone number than
# its CSV holds: judged by Python's csv instead.
SPECTRUM_ERRATA = {"location_coordinates.csv"}


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode, **({} if mode == "wb" else {"newline": ""})) as f:
        f.write(data)


def strict_json(text):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------- preparing


def parquet_cases(out):
    cases = []
    for sub in ["data", "bad_data"]:
        d = os.path.join(CORPORA, "parquet-testing", sub)
        for name in sorted(os.listdir(d)):
            if not name.endswith(".parquet"):
                continue
            if sub == "bad_data":
                expect = "either" if name in PARQUET_EITHER else "fail"
            elif name in PARQUET_MUST_FAIL:
                expect = "fail"
            elif name in PARQUET_EITHER:
                expect = "either"
            else:
                expect = "load"
            cases.append({
                "id": f"parquet-testing/{sub}/{name}",
                "format": "parquet",
                "input": os.path.join(d, name),
                "options": [],
                "expect": expect,
            })
    cases += constructed_parquet(out)
    return cases


def constructed_parquet(out):
    import pyarrow as pa
    import pyarrow.parquet as pq

    made = []

    def case(name, table, expect="load", **kw):
        path = os.path.join(out, "parquet", name + ".parquet")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(table, path, **kw)
        made.append({"id": f"constructed/{name}.parquet", "format": "parquet",
                     "input": path, "options": [], "expect": expect})

    case("unsigned_maxima", pa.table({
        "u8": pa.array([0, 255, None], pa.uint8()),
        "u16": pa.array([0, 65535, None], pa.uint16()),
        "u32": pa.array([0, 4294967295, None], pa.uint32()),
        "u64": pa.array([0, 18446744073709551615, None], pa.uint64()),
    }))
    ts = [datetime.datetime(1, 1, 1), datetime.datetime(1677, 9, 21),
          datetime.datetime(2262, 4, 12), datetime.datetime(9999, 12, 31, 23, 59, 59, 999999), None]
    case("int96_outside_ns_range", pa.table({"t": pa.array(ts, pa.timestamp("us"))}),
         use_deprecated_int96_timestamps=True)
    case("float16", pa.table({"h": pa.array([1.5, None, -0.0], pa.float16())}))
    case("timestamp_zones", pa.table({
        "utc": pa.array([datetime.datetime(2026, 1, 1, 12)], pa.timestamp("us", tz="+00:00")),
        "ny": pa.array([datetime.datetime(2026, 1, 1, 12)], pa.timestamp("ms", tz="America/New_York")),
        "ns": pa.array([1_700_000_000_123_456_789], pa.timestamp("ns")),
    }))
    case("time_of_day", pa.table({"t": pa.array([3600_000_000], pa.time64("us"))}), expect="fail")
    case("decimal256_wide", pa.table({"d": pa.array([decimal.Decimal("1.5")], pa.decimal256(50, 2))}),
         expect="fail")
    case("names_differing_in_case", pa.table({"a": [1], "A": [2]}), expect="fail")
    case("nul_in_a_name", pa.table({"a\x00b": [1]}), expect="fail")
    case("fixed_size_binary", pa.table({"f": pa.array([b"abcd", None], pa.binary(4))}))
    case("brotli", pa.table({"s": ["brotli", None, "x" * 1000]}), compression="brotli")
    return made


def json_cases(out):
    cases = []
    d = os.path.join(CORPORA, "JSONTestSuite", "test_parsing")
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            doc = f.read()
        kind = name[0]
        expect = {"y": "load", "n": "fail", "i": "either"}[kind]
        if kind == "y":
            # Outside strings, valid JSON may hold line breaks anywhere; a
            # record of NDJSON is one line.
            doc = doc.strip().replace(b"\n", b" ").replace(b"\r", b" ")
        else:
            doc = doc.strip(b"\n")
        record = b'{"v": ' + doc + b"}\n"
        base = name[:-len(".json")]
        # A: the case is the whole file (read while sampling and after).
        path = os.path.join(out, "json", base + ".a.json")
        write(path, record)
        cases.append({"id": f"JSONTestSuite/{name}", "format": "json", "input": path,
                      "options": [], "expect": expect, "oracle_doc": doc.decode("latin-1")})
        # B: after more records than the schema sample (the fast path). The
        # filler is the case itself where it is valid, so its type is known.
        filler = record if kind == "y" else b'{"v": 0}\n'
        path = os.path.join(out, "json", base + ".b.json")
        write(path, filler * FILLER + record)
        cases.append({"id": f"JSONTestSuite/{name} (past the sample)", "format": "json",
                      "input": path, "options": [], "expect": expect,
                      "oracle_doc": doc.decode("latin-1"), "repeat": FILLER + 1})
    return cases


CSV_CONSTRUCTED = {
    "bom": ("\ufeffa,b\n1,2\n", "load"),
    "crlf": ("a,b\r\n1,2\r\n3,4\r\n", "load"),
    "quoted_newline_and_doubled_quotes": ('a,b\n"x\ny","he said ""hi"""\n', "load"),
    "blank_lines": ("a,b\n1,2\n\n3,4\n", "load"),
    "unterminated_quote_mid_file": ('a,b\n1,2\n3,"x\n4,5\n6,7\n', "fail"),
    "unterminated_quote_at_end": ('a,b\n1,2\n3,"x\n', "fail"),
    "text_after_closing_quote": ('a,b\n1,"x"y\n2,3\n', "fail"),
    "too_many_fields": ("a,b\n1,2,3\n", "fail"),
    "nul_in_header": ("a\x00x,b\n1,2\n", "fail"),
    "quote_inside_unquoted_field": ('a,b\nsay "hi",2\n', "load"),
}


def csv_cases(out):
    cases = []
    d = os.path.join(CORPORA, "csv-spectrum", "csvs")
    for name in sorted(os.listdir(d)):
        # The suite keeps empty fields as empty strings: no null marker.
        case = {"id": f"csv-spectrum/{name}", "format": "csv", "input": os.path.join(d, name),
                "options": ["inferColumnTypes=false", "nullValue=NULL"], "expect": "load"}
        if name not in SPECTRUM_ERRATA:
            case["spectrum"] = os.path.join(CORPORA, "csv-spectrum", "json", name[:-4] + ".json")
        cases.append(case)
    for name, (text, expect) in CSV_CONSTRUCTED.items():
        path = os.path.join(out, "csv", name + ".csv")
        write(path, text.encode("utf-8"))
        cases.append({"id": f"constructed/{name}.csv", "format": "csv", "input": path,
                      "options": ["inferColumnTypes=false"], "expect": expect})
    return cases


def prepare(out):
    cases = parquet_cases(out) + json_cases(out) + csv_cases(out)
    for i, c in enumerate(cases):
        c["table"] = os.path.join(out, "tables", str(i))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(cases, f, indent=1)
    print(len(cases))


# ---------------------------------------------------------------- judging


def norm(v):
    """A value as plain, comparable Python."""
    if hasattr(v, "item") and not isinstance(v, (list, dict, bytes, str)):
        v = v.item()
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        delta = v - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return ("ts", delta // datetime.timedelta(microseconds=1))
    if isinstance(v, datetime.date):
        return ("date", v.isoformat())
    if isinstance(v, bytes):
        return ("bytes", v.hex())
    if isinstance(v, decimal.Decimal):
        return decimal.Decimal(v)
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    return v


def same(a, b):
    """Whether Sluice's value `a` stands for the oracle's `b`."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) is type(b)
    num = (int, float, decimal.Decimal)
    if isinstance(a, num) and isinstance(b, num):
        try:
            return decimal.Decimal(str(a)) == decimal.Decimal(str(b)) or float(a) == float(b)
        except (decimal.InvalidOperation, OverflowError):
            return False
    if isinstance(a, str) and not isinstance(b, str):
        # A value coerced to text (a mixed-type JSON array): its JSON.
        try:
            return same(norm(strict_json(a)), b)
        except ValueError:
            return False
    if isinstance(a, dict) and isinstance(b, dict):
        return all(same(a.get(k), b.get(k)) for k in set(a) | set(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def canon(v):
    """`v` with every number a float, so that rows sort alike on both sides."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float, decimal.Decimal)):
        try:
            return float(v)
        except OverflowError:
            return str(v)
    if isinstance(v, dict):
        return {k: canon(x) for k, x in v.items()}
    if isinstance(v, list):
        return [canon(x) for x in v]
    return v


def key(row):
    return json.dumps(canon(row), sort_keys=True, default=str)


def plain(table):
    """`table` with timestamps as int64 microseconds and dates as integers,
    nested ones too: years Python's datetime cannot hold stay comparable."""
    import pyarrow as pa

    def walk(t, leaf):
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, walk(f.type, leaf), f.nullable) for f in t])
        if pa.types.is_large_list(t):
            return pa.large_list(walk(t.value_type, leaf))
        if pa.types.is_list(t):
            return pa.list_(walk(t.value_type, leaf))
        if pa.types.is_map(t):
            return pa.map_(walk(t.key_type, leaf), walk(t.item_type, leaf))
        return leaf(t)

    def micros(t):
        return pa.timestamp("us", t.tz) if pa.types.is_timestamp(t) else t

    def ints(t):
        if pa.types.is_timestamp(t) or pa.types.is_date64(t):
            return pa.int64()
        if pa.types.is_date32(t):
            return pa.int32()
        return t

    for leaf in (micros, ints):
        schema = pa.schema([pa.field(f.name, walk(f.type, leaf), f.nullable) for f in table.schema])
        if schema != table.schema:
            table = table.cast(schema, safe=False)
    return table


def sluice_rows(table):
    from deltalake import DeltaTable

    t = DeltaTable(table).to_pyarrow_table()
    if "_metadata" in t.column_names:
        t = t.drop(["_metadata"])
    return [norm(r) for r in plain(t).to_pylist()]


def oracle_rows(case):
    """The rows the oracle reads, or raises saying why it refuses."""
    fmt = case["format"]
    if case["id"] in DOCUMENTED:
        return DOCUMENTED[case["id"]]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        t = pq.read_table(case["input"], coerce_int96_timestamp_unit="us")
        return [norm(r) for r in plain(t).to_pylist()]
    if fmt == "json":
        value = strict_json(case["oracle_doc"].encode("latin-1").decode("utf-8"))
        return [{"v": norm(value)}] * case.get("repeat", 1)
    if "spectrum" in case:
        with open(case["spectrum"], encoding="utf-8") as f:
            rows = json.load(f)
        return rows if isinstance(rows, list) else [rows]
    with open(case["input"], encoding="utf-8-sig", newline="") as f:
        text = f.read()
    if "\x00" in text.split("\n", 1)[0]:
        raise ValueError("a NUL in the header")
    rows = list(csv.reader(io.StringIO(text), strict=True))
    header, body = rows[0], [r for r in rows[1:] if r]
    if any(len(r) != len(header) for r in body):
        raise ValueError("a row's width differs from the header's")
    return [dict(zip(header, r)) for r in body]


def judge(out):
    with open(os.path.join(out, "manifest.json")) as f:
        cases = json.load(f)
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    counts = {"cases": 0, "identical": 0, "refused": 0, "wrong": 0}
    wrong, refused_loads, outcome = [], [], {}
    for case, res in zip(cases, results):
        counts["cases"] += 1
        try:
            expected = oracle_rows(case)
            oracle_error = None
        except Exception as e:  # noqa: BLE001 - any refusal of the oracle counts
            expected, oracle_error = None, str(e)
        if not res["ok"]:
            counts["refused"] += 1
            outcome[case["id"]] = "refused"
            if case["expect"] == "load":
                refused_loads.append({"id": case["id"], "error": res["error"][-400:]})
            continue
        why = None
        if case["expect"] == "fail":
            why = "loaded a case that must fail"
        elif oracle_error is not None and case["expect"] == "load":
            why = f"loaded, but the oracle refuses it: {oracle_error}"
        elif expected is not None:
            try:
                got = sluice_rows(case["table"])
            except Exception as e:  # noqa: BLE001
                got, why = None, f"the table cannot be read back: {e}"
            if got is not None:
                g = sorted(got, key=key)
                x = sorted(expected, key=key)
                if len(g) != len(x):
                    why = f"{len(g)} rows loaded, the oracle reads {len(x)}"
                else:
                    for a, b in zip(g, x):
                        if not same(a, b):
                            why = f"row {key(a)[:300]} != oracle {key(b)[:300]}"
                            break
        if why:
            counts["wrong"] += 1
            outcome[case["id"]] = "wrong"
            wrong.append({"id": case["id"], "why": why})
        else:
            counts["identical"] += 1
            outcome[case["id"]] = "identical"
    print(json.dumps({"counts": counts, "wrong": wrong, "refused_loads": refused_loads,
                      "outcome": outcome}, indent=1))


if __name__ == "__main__":
    {"prepare": prepare, "judge": judge}[sys.argv[1]](sys.argv[2])
    sys.stdout.flush()
    # deltalake's runtime can abort during interpreter teardown; the work is
    # done, so leave without it (as tests/interop/read_table.py does).
    os._exit(0)
