//! The service's Prometheus metrics: rows, files and bytes per pipeline and
//! table, runs by outcome, time since the last success, HTTP requests by
//! status class, hosted functions' requests and latency, and components
//! compiled. `GET /metrics` shows a caller only the labels it is granted.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::RunReport;

/// The service's Prometheus metrics.
pub struct Metrics {
    registry: Registry,
    rows: Family<Vec<(String, String)>, Counter>,
    files: Family<Vec<(String, String)>, Counter>,
    bytes: Family<Vec<(String, String)>, Counter>,
    runs: Family<Vec<(String, String)>, Counter>,
    last_success: Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>,
    source_lag: Family<Vec<(String, String)>, Gauge>,
    /// HTTP requests by status class.
    pub requests: Family<Vec<(String, String)>, Counter>,
    /// Uploaded bytes.
    pub uploaded_bytes: Counter,
    function_requests: Family<Vec<(String, String)>, Counter>,
    function_seconds: Histograms,
    components_compiled: Gauge,
}

/// Histograms by label set, each made by [`latency_histogram`].
type Histograms = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let rows = Family::<Vec<(String, String)>, Counter>::default();
        let files = Family::<Vec<(String, String)>, Counter>::default();
        let bytes = Family::<Vec<(String, String)>, Counter>::default();
        let runs = Family::<Vec<(String, String)>, Counter>::default();
        let last_success = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
        let source_lag = Family::<Vec<(String, String)>, Gauge>::default();
        let requests = Family::<Vec<(String, String)>, Counter>::default();
        let uploaded_bytes = Counter::default();
        let function_requests = Family::<Vec<(String, String)>, Counter>::default();
        let function_seconds = Histograms::new_with_constructor(latency_histogram);
        let components_compiled = Gauge::default();
        let mut registry = Registry::with_prefix("sluice");
        registry.register("rows", "Rows committed", rows.clone());
        registry.register("files", "Input files loaded", files.clone());
        registry.register("input_bytes", "Input bytes loaded", bytes.clone());
        registry.register("runs", "Pipeline runs by outcome", runs.clone());
        registry.register(
            "last_success_timestamp_seconds",
            "When each pipeline last ran successfully (lag = now - this)",
            last_success.clone(),
        );
        registry.register(
            "source_lag_bytes",
            "How far each stream's source was ahead of it when it last looked for input (a replication slot's WAL bytes)",
            source_lag.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by status class",
            requests.clone(),
        );
        registry.register(
            "uploaded_bytes",
            "Bytes received by uploads",
            uploaded_bytes.clone(),
        );
        registry.register(
            "function_requests",
            "Requests to hosted functions by function and status",
            function_requests.clone(),
        );
        registry.register(
            "function_seconds",
            "Time to answer a request to a hosted function (instantiation included)",
            function_seconds.clone(),
        );
        registry.register(
            "components_compiled",
            "Components this process compiled (seconds of CPU each; code from the cache, the service's state or the binary is not counted)",
            components_compiled.clone(),
        );
        Metrics {
            registry,
            rows,
            files,
            bytes,
            runs,
            last_success,
            source_lag,
            requests,
            uploaded_bytes,
            function_requests,
            function_seconds,
            components_compiled,
        }
    }
}

impl Metrics {
    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        self.components_compiled
            .set(crate::wasm::runtime::components_compiled() as i64);
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts a request to function `name` that ended with `status`.
    pub fn function_call(&self, name: &str, status: &str, took: std::time::Duration) {
        let function = ("function".to_string(), name.to_string());
        self.function_requests
            .get_or_create(&vec![function.clone(), ("status".into(), status.into())])
            .inc();
        self.function_seconds
            .get_or_create(&vec![function])
            .observe(took.as_secs_f64());
    }

    /// The metrics whose every label passes `shown(label, value)`.
    pub fn render_for(&self, shown: impl Fn(&str, &str) -> bool) -> String {
        self.render()
            .lines()
            .filter(|line| labels(line).all(|(k, v)| shown(k, v)))
            .fold(String::new(), |mut out, line| {
                out.push_str(line);
                out.push('\n');
                out
            })
    }

    /// Counts a run or an upload (`subject`: `("pipeline", name)` or
    /// `("table", name)`): its report, or a failure.
    pub fn record(&self, subject: (&str, &str), r: Option<&RunReport>) {
        let label = vec![(subject.0.to_string(), subject.1.to_string())];
        let mut status = label.clone();
        status.push((
            "status".into(),
            if r.is_some() { "succeeded" } else { "failed" }.into(),
        ));
        self.runs.get_or_create(&status).inc();
        if let Some(r) = r {
            self.rows.get_or_create(&label).inc_by(r.rows);
            self.files.get_or_create(&label).inc_by(r.files as u64);
            self.bytes.get_or_create(&label).inc_by(r.bytes);
            self.last_success
                .get_or_create(&label)
                .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        }
    }

    /// Sets the source lag of `stream` of pipeline `name`, as the stream
    /// last planned.
    pub fn source_lag(&self, name: &str, stream: &str, bytes: u64) {
        let label = vec![
            ("pipeline".to_string(), name.to_string()),
            ("stream".to_string(), stream.to_string()),
        ];
        self.source_lag
            .get_or_create(&label)
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

/// The labels of one line of Prometheus' text format, as (name, value).
fn labels(line: &str) -> impl Iterator<Item = (&str, &str)> {
    let inner = match (line.starts_with('#'), line.find('{'), line.rfind('}')) {
        (false, Some(a), Some(b)) if a < b => &line[a + 1..b],
        _ => "",
    };
    // Label values here are names Sluice checked (no quotes or commas).
    inner.split(',').filter_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        Some((k.trim(), v.trim().trim_matches('"')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_show_only_what_is_granted() {
        let m = Metrics::default();
        m.record(("pipeline", "events"), Some(&RunReport::default()));
        m.record(("pipeline", "secret-ops"), None);
        m.record(("table", "uploaded"), Some(&RunReport::default()));
        let text = m.render_for(|k, v| match k {
            "pipeline" => v == "events",
            "table" => false,
            _ => true,
        });
        assert!(text.contains("pipeline=\"events\""), "{text}");
        assert!(!text.contains("secret-ops"), "{text}");
        assert!(!text.contains("table=\"uploaded\""), "{text}");
        assert!(text.contains("# HELP"), "{text}");
    }
}
