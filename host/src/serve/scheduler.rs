//! The scheduler: cron schedules, the periodic listing that backs up event
//! notifications for stream pipelines, streams kept running, and the sweep
//! of stale upload staging.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Result;

use super::App;
use super::runs::{Entry, keep_running, start};

/// Parses a cron schedule (five fields, or six with seconds; no year).
pub fn parse_cron(schedule: &str) -> Result<croner::Cron> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|e| {
            anyhow::Error::new(sluice_pipeline::Error::Invalid(format!(
                "schedule '{schedule}': {e}"
            )))
        })
}

/// Runs scheduled pipelines when their cron schedule says, and stream
/// pipelines every backstop interval (so an event that was lost never
/// loses a file). A pipeline already running is not started again. A
/// stream whose trigger runs until stopped is kept running instead, from
/// the first tick after it is stored.
pub async fn scheduler(app: Arc<App>) {
    let mut last = chrono::Utc::now();
    let mut backstop_due: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    let mut next_sweep = Instant::now() + super::STAGED_MAX_AGE;
    loop {
        tick.tick().await;
        if Instant::now() >= next_sweep {
            next_sweep = Instant::now() + super::STAGED_MAX_AGE;
            app.sweep_staged(super::STAGED_MAX_AGE).await;
        }
        let now = chrono::Utc::now();
        let entries: Vec<(String, Arc<Entry>)> = match app.runs.pipelines.lock() {
            Ok(p) => p.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return,
        };
        for (name, entry) in entries {
            if entry.pipeline.runs_until_stopped() {
                if !entry.kept.swap(true, Ordering::SeqCst) {
                    tokio::spawn(keep_running(app.clone(), name, entry));
                }
                continue;
            }
            let busy = entry.lock.try_lock().is_err();
            let due = entry.cron.as_ref().is_some_and(|c| {
                c.find_next_occurrence(&last, false)
                    .is_ok_and(|next| next <= now)
            });
            if due && !busy {
                // The run goes on by itself; nothing here waits for it.
                let _run = start(&app, &name, entry.clone(), "schedule", "scheduler", vec![]);
                continue;
            }
            if let Some(every) = app.backstop
                && entry.pipeline.streams()
            {
                let at = backstop_due
                    .entry(name.clone())
                    .or_insert_with(|| Instant::now() + every);
                if Instant::now() >= *at {
                    *at = Instant::now() + every;
                    if !busy {
                        let _run = start(&app, &name, entry, "backstop", "scheduler", vec![]);
                    }
                }
            }
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_takes_five_or_six_fields_never_a_year() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("0 */5 * * * *").is_ok());
        let e = parse_cron("0 0 12 * * * 2030").unwrap_err();
        assert!(e.to_string().contains("schedule"), "{e}");
    }
}
