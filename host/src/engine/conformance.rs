//! `sluice connector test`: a connector's conformance run, as Airbyte's
//! acceptance tests and Vector's component validation check theirs. Each
//! check drives a fresh instance of the component through the calls a load
//! makes, under the same grants and limits, and says what it saw; a check
//! that fails names what the contract asks.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use arrow_select::concat::concat_batches;
use serde_json::Value;

use crate::engine::failure::ConnectorFailed;
use crate::engine::read::Reading;
use crate::wasm::bindings::SyncMode;
use crate::wasm::session::{Session, Stream};

/// Batches read per stream at most: enough to see a stream's shape and a
/// mid-stream checkpoint, bounded for a connector without end.
pub const MAX_BATCHES: usize = 100;

/// What one check found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// `pass`, `fail` or `skip`.
    pub outcome: Outcome,
    /// What was seen, or what is wrong.
    pub detail: String,
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// As the contract asks.
    Pass,
    /// Not as the contract asks.
    Fail,
    /// Could not be checked (what it needs is missing), not a failure.
    Skip,
}

/// A conformance run's findings, and what the component cost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Conformance {
    /// The connector's name and version, as its spec says.
    pub connector: String,
    /// How it hands over rows: `arrow` (IPC batches) or `records` (JSON).
    pub hands_over: &'static str,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// Milliseconds to make a new instance, the median over the reads'.
    pub instantiate_ms: f64,
    /// Rows of the longest read, and their rate.
    pub rows: u64,
    /// Rows per second of that read (the connector's calls and the host's
    /// decoding).
    pub rows_per_second: f64,
}

impl Conformance {
    /// Whether every check passed or was skipped.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }
}

/// Runs the conformance checks on `reading`'s connector with its config.
pub async fn run(reading: &Reading) -> Result<Conformance> {
    let mut run = Run {
        reading,
        checks: Vec::new(),
        instantiations: Vec::new(),
        rows: 0,
        rate: 0.0,
    };
    let (connector, schema) = run.spec().await?;
    run.config(schema.as_ref()).await?;
    for stream in run.discover().await? {
        run.read_and_resume(&stream).await?;
    }
    run.unknown_stream().await?;
    let mut times = run.instantiations.clone();
    times.sort();
    Ok(Conformance {
        connector,
        hands_over: if reading.connector.hands_records() {
            "records"
        } else {
            "arrow"
        },
        checks: run.checks,
        instantiate_ms: times
            .get(times.len() / 2)
            .map_or(0.0, |t| t.as_secs_f64() * 1e3),
        rows: run.rows,
        rows_per_second: run.rate,
    })
}

/// A conformance run under way: what it found so far.
struct Run<'a> {
    reading: &'a Reading,
    checks: Vec<Check>,
    instantiations: Vec<Duration>,
    /// Rows of the longest read, and their rate.
    rows: u64,
    rate: f64,
}

impl Run<'_> {
    fn record(&mut self, name: &str, outcome: Outcome, detail: String) {
        self.checks.push(Check {
            name: name.to_string(),
            outcome,
            detail,
        });
    }

    fn pass(&mut self, name: &str, detail: String) {
        self.record(name, Outcome::Pass, detail);
    }

    fn fail(&mut self, name: &str, detail: String) {
        self.record(name, Outcome::Fail, detail);
    }

    fn skip(&mut self, name: &str, detail: String) {
        self.record(name, Outcome::Skip, detail);
    }

    /// `call` on a new instance.
    async fn call<T: Send + 'static>(
        &self,
        what: &str,
        call: impl FnOnce(&mut Session) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.reading.call(what, call).await
    }

    /// The spec: its fields, and its config schema as JSON Schema. The
    /// connector's name and version, and the schema when it is one.
    async fn spec(&mut self) -> Result<(String, Option<Value>)> {
        let spec = self
            .call("spec", |s| s.spec())
            .await
            .map_err(|e| anyhow!("the connector's spec could not be read: {e:#}"))?;
        let connector = format!("{} {}", spec.name, spec.version);
        let modes: Vec<&str> = spec
            .modes
            .iter()
            .map(|m| match m {
                SyncMode::FullRefresh => "full-refresh",
                SyncMode::Incremental => "incremental",
                SyncMode::Streaming => "streaming",
            })
            .collect();
        let schema = match serde_json::from_str::<Value>(&spec.config_schema) {
            Ok(v) => match schema_problem(&v) {
                None => {
                    let properties = v
                        .get("properties")
                        .and_then(Value::as_object)
                        .map_or(0, |p| p.len());
                    self.pass(
                        "spec",
                        format!(
                            "{connector}, modes {}, a config schema of {properties} properties",
                            modes.join(", ")
                        ),
                    );
                    Some(v)
                }
                Some(p) => {
                    self.fail(
                        "spec",
                        format!("its config-schema is not a JSON Schema: {p}"),
                    );
                    None
                }
            },
            Err(e) => {
                self.fail("spec", format!("its config-schema is not JSON: {e}"));
                None
            }
        };
        if spec.name.trim().is_empty() || spec.version.trim().is_empty() || modes.is_empty() {
            self.fail(
                "spec fields",
                "name, version and at least one sync mode must be given".into(),
            );
        }
        Ok((connector, schema))
    }

    /// The config against the spec's `schema`; `check` accepts it, and
    /// refuses broken ones with `error.config`.
    async fn config(&mut self, schema: Option<&Value>) -> Result<()> {
        let config = self.reading.config_text()?;
        let given: Value = serde_json::from_str(&config)?;
        if let Some(schema) = schema {
            match config_problem(schema, &given) {
                None => self.pass(
                    "config fits the config schema",
                    "required keys and types".into(),
                ),
                Some(p) => self.fail("config fits the config schema", p),
            }
        }
        match self.call("check", move |s| s.check(&config)).await {
            Ok(()) => self.pass("check accepts the config", String::new()),
            Err(e) => self.fail("check accepts the config", format!("{e:#}")),
        }
        let mut broken = vec![("text that is not JSON", "{\"unfinished\": ".to_string())];
        if let Some(first) = schema
            .and_then(|s| s.get("required"))
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(Value::as_str)
        {
            let mut without = given.clone();
            if let Some(o) = without.as_object_mut() {
                o.remove(first);
            }
            broken.push(("the config without its required key", without.to_string()));
        }
        for (what, text) in broken {
            let name = format!("check refuses {what} with error.config");
            match self.call("check", move |s| s.check(&text)).await {
                Ok(()) => self.fail(&name, "check accepted it".into()),
                Err(e) => match variant(&e) {
                    Some("config") => self.pass(&name, first_line(&e)),
                    Some(v) => {
                        self.fail(&name, format!("it returned error.{v}: {}", first_line(&e)))
                    }
                    None => self.fail(&name, format!("it did not return an error variant: {e:#}")),
                },
            }
        }
        Ok(())
    }

    /// The streams `discover` lists (none when it fails).
    async fn discover(&mut self) -> Result<Vec<Stream>> {
        let text = self.reading.config_text()?;
        Ok(
            match self.call("discover", move |s| s.discover(&text)).await {
                Ok(streams) if streams.is_empty() => {
                    self.fail("discover", "it lists no streams".into());
                    vec![]
                }
                Ok(streams) => {
                    let names: Vec<String> = streams
                        .iter()
                        .map(|s| format!("{} ({} columns)", s.info.name, s.schema.fields().len()))
                        .collect();
                    match streams_problem(&streams) {
                        None => self.pass("discover", names.join(", ")),
                        Some(p) => self.fail("discover", p),
                    }
                    streams
                }
                Err(e) => {
                    self.fail("discover", format!("{e:#}"));
                    vec![]
                }
            },
        )
    }

    /// Reads `stream` whole (in its discovered schema), then again from the
    /// checkpoint after its middle batch: exactly the rest must come.
    async fn read_and_resume(&mut self, stream: &Stream) -> Result<()> {
        let name = stream.info.name.clone();
        let whole = match self.read(stream, None).await {
            Ok(r) => r,
            Err(e) => {
                self.fail(&format!("read {name}"), format!("{e:#}"));
                return Ok(());
            }
        };
        if let Some(p) = whole.wrong_schema(&stream.schema) {
            self.fail(&format!("read {name}"), p);
            return Ok(());
        }
        let total = whole
            .batches
            .iter()
            .map(|(b, _)| b.num_rows())
            .sum::<usize>() as u64;
        let limits = self.reading.runtime.limits();
        let detail = format!(
            "{} batches{}, {total} rows, each in the discovered schema; {:.1} s, {} MiB of memory (limits {:?} a call, {} MiB)",
            whole.batches.len(),
            if whole.ended { "" } else { " (stopped there)" },
            whole.took.as_secs_f64(),
            whole.memory >> 20,
            limits.call_timeout,
            limits.memory_bytes >> 20,
        );
        self.pass(&format!("read {name}"), detail);
        if total >= self.rows {
            self.rows = total;
            self.rate = total as f64 / whole.took.as_secs_f64().max(1e-9);
        }

        let resume = format!("resume {name} from a mid-stream checkpoint");
        let middle = whole.batches.len() / 2;
        let Some(state) = (middle > 0)
            .then(|| whole.batches[middle - 1].1.clone())
            .flatten()
        else {
            self.skip(
                &resume,
                "it needs two batches or more, the first with a checkpoint".into(),
            );
            return Ok(());
        };
        let rest: Vec<RecordBatch> = whole.batches[middle..]
            .iter()
            .map(|(b, _)| b.clone())
            .collect();
        match self.read(stream, Some(state)).await {
            Ok(again) => {
                let got: Vec<RecordBatch> = again.batches.into_iter().map(|(b, _)| b).collect();
                match same_rows(&rest, &got, whole.ended, again.ended) {
                    None => self.pass(
                        &resume,
                        format!(
                            "after batch {middle}: the remaining {} rows, equal",
                            count(&rest)
                        ),
                    ),
                    Some(p) => self.fail(&resume, p),
                }
            }
            Err(e) => self.fail(&resume, format!("{e:#}")),
        }
        Ok(())
    }

    /// Reading a stream the connector does not have fails with an error
    /// variant, not a trap.
    async fn unknown_stream(&mut self) -> Result<()> {
        let text = self.reading.config_text()?;
        let name = "an unknown stream fails with an error variant, not a trap";
        let read = self
            .call("read", move |s| {
                let r = s.read(&text, "no such stream (sluice connector test)", None)?;
                let next = s.next(r);
                let closed = s.close(r);
                next?;
                closed
            })
            .await;
        match read {
            Ok(()) => self.fail(name, "reading it succeeded".into()),
            Err(e) => match variant(&e) {
                Some(v) => self.pass(name, format!("error.{v}: {}", first_line(&e))),
                None => self.fail(name, format!("{e:#}")),
            },
        }
        Ok(())
    }

    /// Reads `stream` from `state` on a new instance (at most
    /// [`MAX_BATCHES`] batches), timing its instantiation.
    async fn read(&mut self, stream: &Stream, state: Option<String>) -> Result<Read> {
        let reading = self.reading;
        let text = reading.config.text(&[], Some(&stream.schema))?;
        let name = stream.info.name.clone();
        let (runtime, loaded) = (reading.runtime.clone(), reading.connector.clone());
        let host = reading.host("conformance read");
        let (read, instantiate) =
            tokio::task::spawn_blocking(move || -> Result<(Read, Duration)> {
                let t = Instant::now();
                let mut session = Session::new(&runtime, &loaded, host)?;
                let instantiate = t.elapsed();
                let t = Instant::now();
                let reader = session.read(&text, &name, state.as_deref())?;
                let mut batches = Vec::new();
                let mut ended = true;
                while let Some((payload, checkpoint)) = session.next(reader)? {
                    for batch in payload.batches()? {
                        batches.push((batch, checkpoint.clone()));
                    }
                    if batches.len() >= MAX_BATCHES {
                        ended = false;
                        break;
                    }
                }
                session.close(reader)?;
                Ok((
                    Read {
                        batches,
                        ended,
                        took: t.elapsed(),
                        memory: session.memory_bytes(),
                    },
                    instantiate,
                ))
            })
            .await??;
        self.instantiations.push(instantiate);
        Ok(read)
    }
}

/// A stream read from the start or a state.
struct Read {
    batches: Vec<(RecordBatch, Option<String>)>,
    ended: bool,
    took: Duration,
    /// The instance's linear memory at the end.
    memory: usize,
}

impl Read {
    fn wrong_schema(&self, discovered: &SchemaRef) -> Option<String> {
        self.batches.iter().enumerate().find_map(|(i, (b, _))| {
            (b.schema_ref().fields() != discovered.fields()).then(|| {
                format!(
                    "batch {} is not in the discovered schema:\n  discovered: {discovered:?}\n  sent: {:?}",
                    i + 1,
                    b.schema()
                )
            })
        })
    }
}

/// The WIT variant a connector's error was, if it returned one (a trap or
/// a host failure is none).
fn variant(e: &anyhow::Error) -> Option<&'static str> {
    e.chain()
        .find_map(|c| c.downcast_ref::<ConnectorFailed>())
        .map(|f| f.variant)
}

fn first_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_string()
}

fn count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// What differs between `want`, the first read's rows after a checkpoint,
/// and `got`, a read resumed from it: the same rows in the same order, as
/// far as both reads went (each may have stopped at [`MAX_BATCHES`]).
fn same_rows(
    want: &[RecordBatch],
    got: &[RecordBatch],
    want_ended: bool,
    got_ended: bool,
) -> Option<String> {
    let (w, g) = (count(want), count(got));
    if (want_ended && got_ended && w != g) || (got_ended && g < w) || (want_ended && w < g) {
        return Some(format!(
            "the first read had {w} rows after the checkpoint, the resumed read gave {g}"
        ));
    }
    let n = w.min(g);
    if n == 0 {
        return None;
    }
    let all = |b: &[RecordBatch]| concat_batches(&b[0].schema(), b).ok();
    match (all(want), all(got)) {
        (Some(w), Some(g)) if w.slice(0, n) == g.slice(0, n) => None,
        (Some(_), Some(_)) => {
            Some("the resumed read's rows differ from the first read's after the checkpoint".into())
        }
        _ => Some("the two reads' batches could not be put side by side".into()),
    }
}

/// What is wrong with a spec's config schema, checked as JSON Schema's
/// keywords that decide a config's shape: an object; `type` a JSON Schema
/// type (or a list of them); `properties` an object of schemas; `required`
/// a list of property names.
pub fn schema_problem(v: &Value) -> Option<String> {
    const TYPES: [&str; 7] = [
        "object", "array", "string", "number", "integer", "boolean", "null",
    ];
    let Some(o) = v.as_object() else {
        return Some("a schema must be a JSON object".into());
    };
    match o.get("type") {
        None => {}
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {}
        Some(Value::Array(ts))
            if ts
                .iter()
                .all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t))) => {}
        Some(t) => return Some(format!("\"type\": {t} is not a JSON Schema type")),
    }
    if let Some(p) = o.get("properties") {
        let Some(p) = p.as_object() else {
            return Some("\"properties\" must be an object".into());
        };
        for (k, s) in p {
            if let Some(problem) = schema_problem(s) {
                return Some(format!("property '{k}': {problem}"));
            }
        }
    }
    if let Some(r) = o.get("required") {
        let Some(r) = r.as_array().filter(|r| r.iter().all(Value::is_string)) else {
            return Some("\"required\" must be a list of property names".into());
        };
        let declared = o.get("properties").and_then(Value::as_object);
        if let Some(missing) = r
            .iter()
            .filter_map(Value::as_str)
            .find(|k| declared.is_some_and(|d| !d.contains_key(*k)))
        {
            return Some(format!(
                "\"required\" names '{missing}', which \"properties\" lacks"
            ));
        }
    }
    if let Some(items) = o.get("items")
        && let Some(problem) = schema_problem(items)
    {
        return Some(format!("items: {problem}"));
    }
    None
}

/// What is wrong with `config` under `schema` (its required keys and the
/// JSON types of the properties it declares), if anything.
pub fn config_problem(schema: &Value, config: &Value) -> Option<String> {
    let fits = |t: &str, v: &Value| match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    };
    let types = |s: &Value| -> Vec<String> {
        match s.get("type") {
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    let ts = types(schema);
    if !ts.is_empty() && !ts.iter().any(|t| fits(t, config)) {
        return Some(format!("{config} is not of type {}", ts.join(" or ")));
    }
    let object = config.as_object()?;
    if let Some(required) = schema.get("required").and_then(Value::as_array)
        && let Some(k) = required
            .iter()
            .filter_map(Value::as_str)
            .find(|k| !object.contains_key(*k))
    {
        return Some(format!("the config lacks the required key '{k}'"));
    }
    let properties = schema.get("properties").and_then(Value::as_object)?;
    object.iter().find_map(|(k, v)| {
        properties
            .get(k)
            .and_then(|s| config_problem(s, v))
            .map(|p| format!("'{k}': {p}"))
    })
}

/// What is wrong with the streams `discover` listed, if anything: names
/// empty or repeated, keys naming no column.
fn streams_problem(streams: &[Stream]) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    for s in streams {
        let name = &s.info.name;
        if name.is_empty() {
            return Some("a stream has no name".into());
        }
        if !seen.insert(name) {
            return Some(format!("two streams are named '{name}'"));
        }
        let columns: Vec<&str> = s
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        if let Some(k) = s
            .info
            .primary_key
            .iter()
            .chain(&s.info.cursor_fields)
            .find(|k| !columns.contains(&k.as_str()))
        {
            return Some(format!(
                "stream '{name}' names '{k}' as a key or cursor field, but has no such column"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_config_schema_is_checked_as_json_schema() {
        let good = json!({"type": "object", "properties": {"rows": {"type": "integer"}}, "required": ["rows"]});
        assert_eq!(schema_problem(&good), None);
        assert!(
            schema_problem(&json!({"type": "int"}))
                .unwrap()
                .contains("type")
        );
        assert!(
            schema_problem(&json!({"properties": {"a": {"type": "str"}}}))
                .unwrap()
                .contains("'a'")
        );
        assert!(
            schema_problem(&json!({"properties": {}, "required": ["b"]}))
                .unwrap()
                .contains("'b'")
        );
        assert!(schema_problem(&json!([1])).is_some());
    }

    #[test]
    fn a_config_is_checked_against_its_schema() {
        let schema = json!({"type": "object", "properties": {"rows": {"type": "integer"}, "name": {"type": ["string", "null"]}}, "required": ["rows"]});
        assert_eq!(config_problem(&schema, &json!({"rows": 3})), None);
        assert_eq!(
            config_problem(&schema, &json!({"rows": 3, "name": null})),
            None
        );
        assert!(
            config_problem(&schema, &json!({}))
                .unwrap()
                .contains("'rows'")
        );
        assert!(
            config_problem(&schema, &json!({"rows": "3"}))
                .unwrap()
                .contains("integer")
        );
        assert!(
            config_problem(&schema, &json!([1]))
                .unwrap()
                .contains("object")
        );
    }
}
