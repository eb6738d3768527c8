//! What the command line shows while a load runs: a progress bar over a
//! batch load's input (on a terminal), and a line per incremental batch.

use std::io::IsTerminal;
use std::time::Duration;

use sluice::engine::{BatchReport, Observer, Progress, RunReport};

use super::human_bytes;

/// The command line's [`Observer`].
pub struct Console {
    bar: indicatif::ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Console {
    /// A console that draws its bar on stderr when that is a terminal.
    pub fn new() -> Self {
        let bar = indicatif::ProgressBar::hidden();
        if std::io::stderr().is_terminal() {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
        }
        Console { bar, ticker: None }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}

impl Observer for Console {
    fn reading(&mut self, bytes: u64, progress: &Progress) {
        self.bar.set_length(bytes);
        let (bar, progress) = (self.bar.clone(), progress.clone());
        self.ticker = Some(tokio::spawn(async move {
            loop {
                bar.set_position(progress.bytes_read());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    fn batch(&mut self, r: &BatchReport) {
        self.bar.suspend(|| print_batch(r));
    }
}

/// A batch's line.
fn print_batch(r: &BatchReport) {
    if r.skipped {
        println!(
            "batch {}: recorded {} existing files as seen without reading them (includeExistingFiles=false)",
            r.batch, r.files
        );
        return;
    }
    if r.replayed {
        println!(
            "batch {}: already in the table (an earlier run committed it before it stopped)",
            r.batch
        );
        return;
    }
    let version = r
        .version
        .map(|v| format!(" -> version {v}"))
        .unwrap_or_default();
    let added = if r.added_columns.is_empty() {
        String::new()
    } else {
        format!(", added column(s) {}", r.added_columns.join(", "))
    };
    // A batch of positions (a topic's offsets) reads no files.
    let input = if r.files == 0 {
        format!("{} read", human_bytes(r.bytes))
    } else {
        format!("{} files ({})", r.files, human_bytes(r.bytes))
    };
    println!(
        "batch {}: {input}, {} rows{version} in {:.2} s{added}",
        r.batch,
        r.rows,
        r.elapsed.as_secs_f64()
    );
}

/// `, version N` where the run committed one.
pub fn version(r: &RunReport) -> String {
    r.version
        .map(|v| format!(", version {v}"))
        .unwrap_or_default()
}

/// A batch load's summary line: what it read and committed, and the
/// counters connectors reported (`rows-dropped`, ...; timings, `*-us`, go
/// to the log).
pub fn print_ingested(r: &RunReport) {
    let secs = r.seconds.max(1e-9);
    let extra: String = r
        .counters
        .iter()
        .filter(|(k, _)| !k.ends_with("-us"))
        .map(|(k, v)| format!(", {v} {k}"))
        .collect();
    println!(
        "ingested {} files, {} rows, {} bytes in {:.2} s ({:.0} rows/s) into {}{}{}",
        r.files,
        r.rows,
        r.bytes,
        secs,
        r.rows as f64 / secs,
        r.table,
        version(r),
        extra
    );
}
