"""Read a table Sluice wrote with an independent reader and print it as JSON.

Usage: read_table.py PATH [--format delta|parquet] [--reader deltalake|pyarrow|duckdb]

Prints {"reader", "version", "files", "schema": [[name, type], ...], "rows": [...]}
with rows sorted by their JSON text, so output is stable across file orders.
"""

import argparse
import json
import os
import sys


def rows_of(table):
    rows = table.to_pylist()
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("--format", default="delta", choices=["delta", "parquet"])
    p.add_argument("--reader", default=None, choices=["deltalake", "pyarrow", "duckdb"])
    p.add_argument("--storage-option", action="append", default=[], help="KEY=VALUE for deltalake")
    a = p.parse_args()
    storage = dict(kv.split("=", 1) for kv in a.storage_option)
    reader = a.reader or ("deltalake" if a.format == "delta" else "pyarrow")
    out = {"reader": reader, "version": None}
    if reader == "deltalake":
        from deltalake import DeltaTable

        dt = DeltaTable(a.path, storage_options=storage or None)
        table = dt.to_pyarrow_table()
        out["version"] = dt.version()
        out["files"] = len(dt.file_uris())
        out["history"] = [h.get("operation") for h in dt.history()]
    elif reader == "pyarrow":
        import pyarrow.dataset as ds

        if a.format == "delta":
            # Only files the log references count; read them with pyarrow alone.
            from deltalake import DeltaTable

            files = DeltaTable(a.path).file_uris()
            table = ds.dataset(files, format="parquet").to_table()
            out["files"] = len(files)
        else:
            d = ds.dataset(a.path, format="parquet", exclude_invalid_files=False)
            out["files"] = len(d.files)
            table = d.to_table()
    else:
        import duckdb

        if a.format == "delta":
            # DuckDB's delta extension is a download this machine may not
            # reach: DuckDB reads the files the log references (a compacted
            # or replaced table keeps its old files until vacuum).
            from deltalake import DeltaTable

            files = DeltaTable(a.path).file_uris()
            out["files"] = len(files)
            source = f"read_parquet({files!r}, union_by_name=true)"
        else:
            source = f"read_parquet('{a.path}/**/*.parquet', union_by_name=true)"
        table = duckdb.sql(f"select * from {source}").arrow()
        if hasattr(table, "read_all"):
            table = table.read_all()
    out["schema"] = [[f.name, str(f.type)] for f in table.schema]
    out["rows"] = rows_of(table)
    json.dump(out, sys.stdout, default=str, sort_keys=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
    # Skip interpreter teardown: native reader threads have crashed there
    # ("terminate called without an active exception") under load.
    os._exit(0)
