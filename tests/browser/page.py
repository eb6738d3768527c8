"""Drive the page `sluice serve` serves at GET / in headless Chromium.

Usage:
    page.py URL TOKEN OUTDIR --pipeline NAME --pipeline-rows N
            --table NAME --csv FILE --columns NAME:TYPE[,NAME:TYPE...]

As a user would, it opens the page, enters the token, finds pipeline NAME
listed with a succeeded last run of N rows, uploads FILE to table NAME
through the upload form, checks that the preview shows the inferred
COLUMNS (in order, with their Arrow types) and the file's first rows,
loads it, and checks that the page reports the rows loaded. It fails too
on any uncaught script error or console error on the page.

It uses Debian's Chromium (/usr/bin/chromium, installed by tests/setup),
never a browser of Playwright's own, with a fresh profile. On failure it
exits 1 with what went wrong and leaves a screenshot and the page's HTML
in OUTDIR; on success it prints one line.
"""

import argparse
import contextlib
import csv
import os
import sys
import tempfile
import time

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# How long the page may take to show what a step waits for, in ms.
TIMEOUT_MS = 20_000


class Failure(Exception):
    """A check the page did not pass."""


@contextlib.contextmanager
def step(name):
    """Names the step an error happened in."""
    try:
        yield
    except Failure as e:
        raise Failure(f"{name}: {e}") from None
    except Exception as e:  # Playwright's timeouts and assertion errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Failure(f"{name}: {first}") from None


def parse_columns(text):
    cols = []
    for part in text.split(","):
        name, sep, typ = part.partition(":")
        if not sep or not name or not typ:
            raise SystemExit(f"page.py: --columns wants NAME:TYPE[,NAME:TYPE...], not {text!r}")
        cols.append((name, typ))
    return cols


def table_cells(locator):
    """The text of a rendered <table>: its header cells and its body rows."""
    return locator.evaluate(
        """t => {
            const rows = [...t.querySelectorAll("tr")].map(
                tr => [...tr.children].map(c => c.textContent));
            return rows;
        }"""
    )


def same_value(shown, raw, typ):
    """Whether a preview cell shows the CSV field `raw` of Arrow type `typ`."""
    if typ.startswith(("Int", "UInt", "Float", "Decimal")):
        try:
            return float(shown) == float(raw)
        except ValueError:
            return False
    return shown == raw


def check_pipelines(page, name, rows):
    """Finds pipeline `name` in the pipelines table; returns its last run."""
    table = page.locator("#pipelines")
    row = table.locator("tbody tr").filter(
        has=page.locator("td:first-child", has_text=name)
    )
    row.first.wait_for(timeout=TIMEOUT_MS)
    head = [h.strip() for h in table.locator("thead th").all_text_contents()]
    for col in ("name", "table", "last run", "status", "rows"):
        if col not in head:
            raise Failure(f"the pipelines table has no '{col}' column: {head}")
    matches = [
        r for r in table_cells(table.locator("tbody"))
        if r and r[head.index("name")] == name
    ]
    if len(matches) != 1:
        raise Failure(f"pipeline {name!r} is listed {len(matches)} times")
    cells = dict(zip(head, matches[0]))
    last = cells["last run"]
    if last in ("", "never"):
        raise Failure(f"pipeline {name!r} shows no last run: {cells}")
    if not last[:4].isdigit() or "T" not in last:
        raise Failure(f"the last run of {name!r} is not a timestamp: {last!r}")
    if cells["status"] != "succeeded":
        raise Failure(f"the last run of {name!r} is {cells['status']!r}, not succeeded")
    if cells["rows"] != str(rows):
        raise Failure(f"the last run of {name!r} shows {cells['rows']!r} rows, not {rows}")
    return last


def run(page, a, columns, header, records):
    from playwright.sync_api import expect

    with step("opening the page"):
        response = page.goto(a.url, wait_until="load", timeout=TIMEOUT_MS)
        if response is None or response.status != 200:
            raise Failure(f"GET {a.url} answered {response and response.status}")
        expect(page).to_have_title("Sluice")

    with step("a wrong token"):
        page.fill("#token", "not-a-token-of-this-server")
        page.click("#connect")
        expect(page.locator("#status")).to_have_class("error", timeout=TIMEOUT_MS)
        expect(page.locator("#status")).to_contain_text("token")
        if page.locator("#pipelines tbody tr").count() != 0:
            raise Failure("pipelines are listed without a valid token")

    with step("entering the token"):
        page.fill("#token", a.token)
        page.click("#connect")
        expect(page.locator("#status")).to_have_text("connected", timeout=TIMEOUT_MS)

    with step(f"pipeline {a.pipeline!r} in the list"):
        last = check_pipelines(page, a.pipeline, a.pipeline_rows)

    with step("the table name's check in the form"):
        page.fill("#table", "not a table!")
        if not page.eval_on_selector("#table", "e => e.validity.patternMismatch"):
            raise Failure("the form takes 'not a table!' as a table name")

    with step("previewing the upload"):
        page.fill("#table", a.table)
        page.set_input_files("#file", a.csv)
        page.select_option("#mode", "append")
        page.click("#preview")
        result = page.locator("#result")
        expect(result).not_to_have_text("reading...", timeout=TIMEOUT_MS)
        if "error" in (result.get_attribute("class") or ""):
            raise Failure(f"the page says: {result.text_content()}")
        expect(result).to_have_text(f"{len(records)} rows shown")

    with step("the previewed schema"):
        schema = table_cells(page.locator("#schema table"))
        if schema[0] != ["name", "type", "nullable"]:
            raise Failure(f"the schema table's header is {schema[0]}")
        shown = [(r[0], r[1]) for r in schema[1:]]
        if shown[: len(columns)] != columns:
            raise Failure(f"the inferred columns are {shown}, not {columns} first")

    with step("the previewed rows"):
        rows = table_cells(page.locator("#rows table"))
        names = [n for n, _ in columns]
        if rows[0][: len(names)] != names:
            raise Failure(f"the rows table's header is {rows[0]}, not {names} first")
        body = rows[1:]
        if len(body) != len(records):
            raise Failure(f"{len(body)} rows shown, the file has {len(records)}")
        types = dict(columns)
        for i, (got, want) in enumerate(zip(body, records), start=1):
            for col, raw in zip(header, want):
                cell = got[rows[0].index(col)]
                if not same_value(cell, raw, types.get(col, "Utf8")):
                    raise Failure(f"row {i}, column {col!r} shows {cell!r}, the file has {raw!r}")

    with step("loading the file"):
        page.click("#load")
        result = page.locator("#result")
        expect(result).not_to_have_text("loading...", timeout=TIMEOUT_MS)
        if "error" in (result.get_attribute("class") or ""):
            raise Failure(f"the page says: {result.text_content()}")
        expect(result).to_have_class("ok")
        text = result.text_content()
        prefix = f"loaded {len(records)} rows into {a.table}, version "
        if not text.startswith(prefix) or not text[len(prefix):].isdigit():
            raise Failure(f"the page says {text!r}, not {prefix!r}<version>")
        version = text[len(prefix):]

    with step("the list after the load"):
        expect(page.locator("#status")).to_have_text("connected", timeout=TIMEOUT_MS)
        check_pipelines(page, a.pipeline, a.pipeline_rows)

    return (
        f"pipeline {a.pipeline} listed (last run {last}, {a.pipeline_rows} rows); "
        f"preview of {os.path.basename(a.csv)} showed {len(columns)} columns and "
        f"{len(records)} rows; loaded {len(records)} rows into {a.table} at version {version}"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="the server's base URL, http://127.0.0.1:PORT")
    p.add_argument("token", help="a bearer token the server accepts")
    p.add_argument("outdir", help="where a failure leaves a screenshot and the page's HTML")
    p.add_argument("--pipeline", required=True, help="a pipeline that has run once")
    p.add_argument("--pipeline-rows", type=int, required=True, help="rows its last run loaded")
    p.add_argument("--table", required=True, help="the table to upload to")
    p.add_argument("--csv", required=True, help="the CSV file to upload")
    p.add_argument("--columns", required=True, help="NAME:TYPE,... the preview must infer")
    a = p.parse_args()
    columns = parse_columns(a.columns)
    with open(a.csv, newline="") as f:
        header, *records = list(csv.reader(f))
    return in_chromium(a.outdir, "page", lambda page: run(page, a, columns, header, records))


def in_chromium(outdir, label, body):
    """Runs `body(page)` in a fresh headless Chromium; returns the exit code.

    It fails on any uncaught script error or console error on the page too.
    On failure it prints what went wrong and leaves `<label>.png` and
    `<label>.html` in `outdir`; on success it prints `body`'s summary.
    """
    if not os.access(CHROMIUM, os.X_OK):
        sys.exit(f"{label}: {CHROMIUM} is missing: run tests/setup")
    from playwright.sync_api import sync_playwright

    os.makedirs(outdir, exist_ok=True)
    started = time.monotonic()
    errors = []
    with tempfile.TemporaryDirectory(prefix="sluice-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))

        def console(m):
            # Failed requests (the wrong token's 401, a missing favicon) are
            # logged as console errors too; they are not the page's faults.
            if m.type == "error" and not m.text.startswith("Failed to load resource"):
                errors.append(f"console: {m.text}")

        page.on("console", console)
        try:
            summary = body(page)
            if errors:
                raise Failure("the page logged errors: " + "; ".join(errors))
        except Failure as e:
            shot = os.path.join(outdir, f"{label}.png")
            html = os.path.join(outdir, f"{label}.html")
            with contextlib.suppress(Exception):
                page.screenshot(path=shot, full_page=True)
                with open(html, "w") as f:
                    f.write(page.content())
            extra = f" (errors on the page: {'; '.join(errors)})" if errors else ""
            print(f"{label}: FAILED: {e}{extra}; see {shot} and {html}", file=sys.stderr)
            context.close()
            return 1
        context.close()
    print(f"{label} ok in {time.monotonic() - started:.1f}s: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
