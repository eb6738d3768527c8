"""A Sluice records connector in Python: generated greetings, no I/O.

It exports `sluice:connector/records@0.3.0` (world `records-connector`) and
shows the whole contract: `spec`, `check`, `discover`, `read` with resumable
state, a `reader` resource whose `next` returns newline-delimited JSON, an
error returned as the WIT `error` variant, and a call to the host's `log`.

componentize-py generates the `wit_world` package (build.sh writes it to
`bindings/` for editors; the build itself regenerates it): an exported
interface is a class named after it (`Records`) subclassing
`wit_world.exports.Records`, and an exported resource subclasses its base
(`wit_world.exports.records.Reader`). A WIT `result`'s error is raised as
`componentize_py_types.Err(<variant case>)`; any other exception escaping an
export traps the component, so every expected failure is an `Err`.
"""

import json
from datetime import datetime, timedelta, timezone
from typing import Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import records
from wit_world.imports import host, types

STREAM = "greetings"

CONFIG_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "rows": {"type": "integer", "minimum": 0, "description": "Records to generate."},
        "batch_rows": {
            "type": "integer",
            "minimum": 1,
            "default": 1000,
            "description": "Records per batch.",
        },
        "greeting": {"type": "string", "default": "hello", "description": "Message prefix."},
    },
    "required": ["rows"],
    "additionalProperties": False,
}

# One record: the host makes these properties the stream's columns, in order.
RECORD_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "message": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["id", "message", "at", "score", "tags"],
}

# Record `id` happens `id` seconds after this instant.
BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)


def config_error(message: str) -> Err:
    """The WIT `error.config` case, ready to raise."""
    return Err(types.Error_Config(message))


def is_int(value) -> bool:
    # JSON true/false arrive as Python bools, which are ints too.
    return isinstance(value, int) and not isinstance(value, bool)


def parse_config(text: str) -> dict:
    """The config as a dict with defaults filled in, or `error.config`."""
    try:
        config = json.loads(text)
    except ValueError as e:
        raise config_error(f"config is not JSON: {e}")
    if not isinstance(config, dict):
        raise config_error("config must be a JSON object")
    rows = config.get("rows")
    if not is_int(rows) or rows < 0:
        raise config_error('give "rows", the number of records: an integer >= 0')
    batch_rows = config.get("batch_rows", 1000)
    if not is_int(batch_rows) or batch_rows < 1:
        raise config_error('"batch_rows" must be an integer >= 1')
    greeting = config.get("greeting", "hello")
    if not isinstance(greeting, str):
        raise config_error('"greeting" must be a string')
    return {"rows": rows, "batch_rows": batch_rows, "greeting": greeting}


def parse_state(state: Optional[str]) -> int:
    """The first id to read: 0, or the `next` of a checkpoint."""
    if state is None:
        return 0
    try:
        start = json.loads(state)["next"]
    except (ValueError, TypeError, KeyError):
        start = None
    if not is_int(start) or start < 0:
        raise config_error(f'state must be a checkpoint like {{"next": 42}}, not {state!r}')
    return start


def record(greeting: str, id: int) -> dict:
    """Record `id`: every field derives from it, so reads are repeatable."""
    at = BASE_TIME + timedelta(seconds=id)
    return {
        "id": id,
        "message": f"{greeting} #{id}",
        "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "score": id * 0.5,
        "tags": ["even" if id % 2 == 0 else "odd"],
    }


class Reader(records.Reader):
    """An open read of `greetings`: ids `next_id` up to `rows`, in batches."""

    def __init__(self, config: dict, start: int):
        self.greeting = config["greeting"]
        self.rows = config["rows"]
        self.batch_rows = config["batch_rows"]
        self.next_id = start

    def next(self) -> Optional[records.RecordsBatch]:
        if self.next_id >= self.rows:
            return None  # exhausted
        end = min(self.next_id + self.batch_rows, self.rows)
        lines = [
            json.dumps(record(self.greeting, id), separators=(",", ":"))
            for id in range(self.next_id, end)
        ]
        self.next_id = end
        return records.RecordsBatch(
            records="\n".join(lines),
            # Handing this back to `read` resumes with the following record.
            checkpoint=json.dumps({"next": end}),
        )


class Records(exports.Records):
    def spec(self) -> types.ConnectorSpec:
        return types.ConnectorSpec(
            name="python-hello",
            version="0.1.0",
            description="Generates numbered greetings: an example connector in Python",
            config_schema=json.dumps(CONFIG_SCHEMA),
            modes=[types.SyncMode.FULL_REFRESH, types.SyncMode.INCREMENTAL],
        )

    def check(self, config: str) -> None:
        parse_config(config)

    def discover(self, config: str) -> list[records.Stream]:
        parse_config(config)
        return [
            records.Stream(
                name=STREAM,
                json_schema=json.dumps(RECORD_SCHEMA),
                cursor_fields=["id"],
                primary_key=["id"],
            )
        ]

    def read(self, config: str, stream_name: str, state: Optional[str]) -> records.Reader:
        parsed = parse_config(config)
        if stream_name != STREAM:
            raise config_error(f'no stream "{stream_name}": this connector has only "{STREAM}"')
        start = parse_state(state)
        host.log(host.Level.INFO, f"{STREAM}: reading ids {start} to {parsed['rows']} (exclusive)")
        return Reader(parsed, start)
