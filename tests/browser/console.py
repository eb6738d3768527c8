"""Drive the console `sluice serve` serves at GET / through its flows.

Usage:
    console.py URL ADMIN_TOKEN WRITER_TOKEN OUTDIR --shots DIR
               --csv FILE --more FILE --table NAME
               --pipeline NAME --runs N --hidden NAME[,NAME...] --live NAME

As people would, in headless Chromium (Debian's, as page.py):

1. add data: the admin previews FILE for new table NAME, changes the type
   of its `zip code` column to STRING (the preview then shows the leading
   zero the inferred integer lost) and renames it `zip`, renames `city` to
   `town`, creates the table, and lands on it;
2. appends MORE the same way, and sees the table's history (two versions,
   newest first) and its rows;
3. opens pipeline NAME, which has run N times: its run history and the
   rows-per-run chart show N runs;
4. edits the pipeline's definition with a mistake and sees the error where
   it is, then puts it back; opens pipeline LIVE, a stream the service
   keeps running, and sees its rows live;
5. uploads a file to a volume and sees it listed; uploads a connector
   that is not a component and sees why it is refused; reads the activity
   log and filters it;
6. signs in as the writer, who sees none of the HIDDEN tables, and is told
   why a table's page is refused.

Screenshots of the main pages go to DIR (README shows them). It fails on
any uncaught script error or console error; on failure it leaves a
screenshot and the page's HTML in OUTDIR.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from page import TIMEOUT_MS, Failure, in_chromium, step, table_cells  # noqa: E402


def shot(page, a, name):
    os.makedirs(a.shots, exist_ok=True)
    page.screenshot(path=os.path.join(a.shots, f"{name}.png"), full_page=True)


def sign_in(page, url, token):
    from playwright.sync_api import expect

    page.goto(url, wait_until="load", timeout=TIMEOUT_MS)
    page.evaluate("sessionStorage.clear()")
    page.fill("#token", token)
    page.click("#connect")
    expect(page.locator("#status")).to_have_text("connected", timeout=TIMEOUT_MS)


def preview_with_edits(page, table, path, mode, rows):
    """Previews `path` for `table`; retypes `zip code` (a name with a
    space) and renames it `zip`, and renames `city` `town`."""
    from playwright.sync_api import expect

    page.goto(page.url.split("#")[0] + "#/")
    page.fill("#table", table)
    page.set_input_files("#file", path)
    page.select_option("#mode", mode)
    page.click("#preview")
    result = page.locator("#result")
    expect(result).to_have_text(f"{rows} rows shown", timeout=TIMEOUT_MS)
    inferred = dict((r[0], r[1]) for r in table_cells(page.locator("#schema table"))[1:])
    page.select_option('select.retype[data-column="zip code"]', "STRING")
    expect(page.locator("#schema table")).to_contain_text("Utf8", timeout=TIMEOUT_MS)
    for column, name in [("zip code", "zip"), ("city", "town")]:
        page.fill(f'input.rename[data-column="{column}"]', name)
        page.dispatch_event(f'input.rename[data-column="{column}"]', "change")
        expect(page.locator("#schema table")).to_contain_text(name, timeout=TIMEOUT_MS)
    expect(result).not_to_have_text("reading...", timeout=TIMEOUT_MS)
    return inferred


def run(page, a):
    from playwright.sync_api import expect

    with step("signing in with the keyboard alone"):
        page.goto(a.url, wait_until="load", timeout=TIMEOUT_MS)
        for _ in range(20):
            if page.evaluate("document.activeElement && document.activeElement.id") == "token":
                break
            page.keyboard.press("Tab")
        else:
            raise Failure("Tab never reaches the token box")
        page.keyboard.type(a.admin)
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_have_text("connected", timeout=TIMEOUT_MS)
        expect(page.locator("#whoami")).to_contain_text("admin")
        expect(page.locator("#pipelines tbody")).to_contain_text(a.pipeline, timeout=TIMEOUT_MS)
        # The page has painted by now: when it first did.
        paint = page.evaluate(
            "performance.getEntriesByType('paint').map(p => [p.name, p.startTime])"
        )
        shot(page, a, "home")

    with step("on a phone's screen"):
        page.set_viewport_size({"width": 390, "height": 844})
        wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if wide > 0:
            raise Failure(f"the page is {wide}px wider than a phone's screen")
        shot(page, a, "phone")
        page.set_viewport_size({"width": 1280, "height": 800})

    with step("add data: the preview follows the reader's options"):
        page.fill("#table", a.table)
        page.set_input_files("#file", a.csv)
        page.click("#preview")
        result = page.locator("#result")
        expect(result).to_have_text("2 rows shown", timeout=TIMEOUT_MS)
        page.uncheck("#opt-header")
        # Without a header its first line is a row too.
        expect(result).to_have_text("3 rows shown", timeout=TIMEOUT_MS)
        page.check("#opt-header")
        expect(result).to_have_text("2 rows shown", timeout=TIMEOUT_MS)

    with step("add data: preview, retype, rename"):
        inferred = preview_with_edits(page, a.table, a.csv, "create", 2)
        if inferred.get("zip code") == "Utf8":
            raise Failure(f"zip code was inferred as text already ({inferred}); the test needs a number")
        schema = table_cells(page.locator("#schema table"))
        shown = {r[0]: r[1] for r in schema[1:]}
        if shown.get("zip") != "Utf8" or "town" not in shown or {"city", "zip code"} & set(shown):
            raise Failure(f"after the edits the schema shows {shown}")
        rows = table_cells(page.locator("#rows table"))
        zips = [r[rows[0].index("zip")] for r in rows[1:]]
        if "02134" not in zips:
            raise Failure(f"the retyped zip column shows {zips}, not the file's 02134")
        shot(page, a, "add-data")

    with step("add data: create the table and land on it"):
        page.click("#load")
        result = page.locator("#result")
        expect(result).to_have_class("ok", timeout=TIMEOUT_MS)
        expect(result).to_have_text(f"loaded 2 rows into {a.table}, version 0")
        page.click("#open-table")
        expect(page.locator("#table-name")).to_have_text(a.table, timeout=TIMEOUT_MS)
        expect(page.locator("#schema-tree")).to_contain_text("town")

    with step("create refuses a table that exists"):
        page.goto(a.url + "#/")
        page.fill("#table", a.table)
        page.set_input_files("#file", a.more)
        page.select_option("#mode", "create")
        page.click("#load")
        expect(page.locator("#result")).to_contain_text("already exists", timeout=TIMEOUT_MS)

    with step("append, then the table's history"):
        preview_with_edits(page, a.table, a.more, "append", 1)
        page.click("#load")
        expect(page.locator("#result")).to_have_text(f"loaded 1 rows into {a.table}, version 1", timeout=TIMEOUT_MS)
        page.click("#open-table")
        history = page.locator("#history tbody tr")
        expect(history).to_have_count(2, timeout=TIMEOUT_MS)
        cells = table_cells(page.locator("#history"))
        head = cells[0]
        versions = [r[head.index("version")] for r in cells[1:]]
        if versions != ["1", "0"]:
            raise Failure(f"the history shows versions {versions}, not 1 then 0")
        added = [r[head.index("rows added")] for r in cells[1:]]
        if added != ["1", "2"]:
            raise Failure(f"the history shows {added} rows added")
        expect(page.locator("#sample table tr")).to_have_count(4, timeout=TIMEOUT_MS)
        shot(page, a, "table")

    with step(f"pipeline {a.pipeline}: run history and chart"):
        page.goto(f"{a.url}#/pipelines/{a.pipeline}")
        runs = page.locator("#runs tbody tr")
        expect(runs).to_have_count(a.runs, timeout=TIMEOUT_MS)
        statuses = [r[3] for r in table_cells(page.locator("#runs tbody"))]
        if statuses != ["succeeded"] * a.runs:
            raise Failure(f"the runs show {statuses}")
        expect(page.locator("#chart-rows svg rect.bar")).to_have_count(a.runs)
        expect(page.locator("#chart-duration svg rect.bar")).to_have_count(a.runs)
        shot(page, a, "pipeline")

    with step("an admin's mistake in the definition is shown, nothing saved"):
        original = page.input_value("#definition")
        if 'mode = "stream"' not in original:
            raise Failure(f"the definition is not shown as TOML: {original!r}")
        page.fill("#definition", original.replace('mode = "stream"', 'mode = "sideways"'))
        page.click("#save-definition")
        error = page.locator("#definition-error")
        expect(error).to_be_visible(timeout=TIMEOUT_MS)
        expect(error).to_contain_text("sideways")
        page.fill("#definition", original)
        page.click("#save-definition")
        expect(page.locator("#definition-saved")).to_have_text("saved", timeout=TIMEOUT_MS)
        expect(error).to_be_hidden()

    with step(f"a running stream ({a.live}) shows its rows live"):
        page.goto(f"{a.url}#/pipelines/{a.live}")
        expect(page.locator("#live")).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.locator("#live-text")).to_contain_text("rows in", timeout=TIMEOUT_MS)
        expect(page.locator("#chart-live svg path")).to_have_count(2, timeout=TIMEOUT_MS)

    with step("a volume: upload raw files and list them"):
        page.goto(f"{a.url}#/volumes")
        expect(page.locator("#volume option")).to_have_count(1, timeout=TIMEOUT_MS)
        page.set_input_files("#volume-file", a.more)
        page.click("#volume-upload")
        expect(page.locator("#volume-result")).to_have_text("uploaded 1 file(s)", timeout=TIMEOUT_MS)
        expect(page.locator("#volume-files tbody")).to_contain_text("more.csv", timeout=TIMEOUT_MS)

    with step("a connector upload that is no component is refused, with why"):
        page.goto(f"{a.url}#/connectors")
        expect(page.locator("#connectors tbody tr").first).to_be_visible(timeout=TIMEOUT_MS)
        page.set_input_files("#connector-file", a.more)
        page.click("#connector-upload")
        out = page.locator("#connector-result")
        expect(out).to_have_class("err", timeout=TIMEOUT_MS)
        if not (out.text_content() or "").strip() or out.text_content() == "checking...":
            raise Failure("the refused upload shows no reason")
        shot(page, a, "connectors")

    with step("the tables"):
        page.goto(f"{a.url}#/tables")
        expect(page.locator("#tables tbody")).to_contain_text(a.table, timeout=TIMEOUT_MS)
        shot(page, a, "tables")

    with step("the activity log, filtered"):
        page.goto(f"{a.url}#/activity")
        rows = page.locator("#activity tbody tr")
        expect(rows.first).to_be_visible(timeout=TIMEOUT_MS)
        before = rows.count()
        page.fill("#activity-filter", "pipeline.put")
        after = rows.count()
        if not 0 < after < before:
            raise Failure(f"filtering for pipeline.put left {after} of {before} entries")
        shot(page, a, "activity")

    with step("the writer sees only its tables"):
        sign_in(page, a.url, a.writer)
        expect(page.locator("#nav-activity")).to_be_hidden()
        page.goto(f"{a.url}#/tables")
        body = page.locator("#tables tbody")
        expect(body.locator("tr").first).to_be_visible(timeout=TIMEOUT_MS)
        listed = body.text_content()
        for hidden in a.hidden.split(",") + [a.table]:
            if hidden in listed:
                raise Failure(f"the writer sees table {hidden!r}: {listed!r}")
        page.goto(f"{a.url}#/tables/{a.table}")
        notice = page.locator("#notice")
        expect(notice).to_be_visible(timeout=TIMEOUT_MS)
        expect(notice).to_contain_text("may not")

    first_paint = dict(paint).get("first-contentful-paint")
    painted = f"{first_paint:.0f} ms" if first_paint is not None else "not reported"
    return (
        f"first contentful paint {painted}; "
        f"created {a.table} with a retyped and a renamed column, appended, saw 2 versions; "
        f"{a.pipeline} showed {a.runs} runs; a bad definition was refused; "
        f"the writer saw none of {a.hidden}"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("admin")
    p.add_argument("writer")
    p.add_argument("outdir")
    p.add_argument("--shots", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--more", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--pipeline", required=True)
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--hidden", required=True)
    p.add_argument("--live", required=True)
    a = p.parse_args()
    return in_chromium(a.outdir, "console", lambda page: run(page, a))


if __name__ == "__main__":
    sys.exit(main())
