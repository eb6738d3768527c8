"""Compares a PostgreSQL table (read with psycopg) with the Delta table
Sluice applied its changes to (read with deltalake), value by value.

    compare_postgres.py URL PASSWORD SOURCE_TABLE DELTA_PATH KEY --scd 1|2
        [--versions JSON]

SCD 1: the Delta table's rows equal the source's (every source column;
the change columns Sluice keeps are ignored). SCD 2: its open rows
(__END_AT null) equal the source's, and with --versions, the number of
versions per key is as given. Prints "ok" or fails naming the difference.
"""

import argparse
import datetime
import decimal
import json
import os
import sys
import uuid

import psycopg
from deltalake import DeltaTable


def norm(v, column, json_columns):
    if v is None:
        return None
    if column in json_columns:
        return json.dumps(v if not isinstance(v, str) else json.loads(v), sort_keys=True)
    if isinstance(v, memoryview):
        v = bytes(v)
    if isinstance(v, bytes):
        return "\\x" + v.hex()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc)
        return v.isoformat()
    if isinstance(v, (datetime.date, decimal.Decimal)):
        return str(v)
    if isinstance(v, list):
        return [norm(x, None, ()) for x in v]
    return v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("password")
    p.add_argument("source")
    p.add_argument("delta")
    p.add_argument("key")
    p.add_argument("--scd", type=int, default=1)
    p.add_argument("--versions")
    p.add_argument("--skip", action="append", default=[])
    a = p.parse_args()

    with psycopg.connect(a.url, password=a.password) as pg:
        cur = pg.execute(f"SELECT * FROM {a.source} ORDER BY {a.key}")
        names = [d.name for d in cur.description]
        types = {d.name: d.type_code for d in cur.description}
        source = cur.fetchall()
    # json (114) and jsonb (3802) come back as objects from psycopg.
    json_columns = {c for c, t in types.items() if t in (114, 3802)}
    columns = [c for c in names if c not in a.skip]

    table = DeltaTable(a.delta).to_pyarrow_table().to_pylist()
    if a.scd == 2:
        versions = {}
        for r in table:
            versions[r[a.key]] = versions.get(r[a.key], 0) + 1
        if a.versions:
            want = {int(k): v for k, v in json.loads(a.versions).items()}
            if versions != want:
                sys.exit(f"versions per key: {versions} != {want}")
        table = [r for r in table if r["__END_AT"] is None]
    table.sort(key=lambda r: r[a.key])

    def src(row):
        d = dict(zip(names, row))
        return {c: norm(d[c], c, json_columns) for c in columns}

    got = [{c: norm(r.get(c), c, json_columns) for c in columns} for r in table]
    want = [src(r) for r in source]
    if got != want:
        for g, w in zip(got, want):
            if g != w:
                diff = {c: (g[c], w[c]) for c in columns if g[c] != w[c]}
                sys.exit(f"first differing row (sluice, postgres): {diff}")
        sys.exit(f"{len(got)} rows in the table, {len(want)} in the source")
    print("ok")


if __name__ == "__main__":
    main()
    # Without interpreter teardown, where the native readers' threads have
    # crashed ("terminate called without an active exception").
    sys.stdout.flush()
    os._exit(0)
