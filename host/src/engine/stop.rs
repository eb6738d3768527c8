//! Asking a run to stop: a long run (a continuous stream, an every-N
//! trigger, an available-now backlog) checks between batches, so a stop
//! takes effect once the batch in progress commits and nothing is left
//! half-written. The command line asks on Ctrl-C and SIGTERM; a test or an
//! embedding asks with [`Stop::ask`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Whether a stop was asked for; clones share it.
#[derive(Clone, Default)]
pub struct Stop {
    asked: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl Stop {
    /// A stop nobody has asked for yet.
    pub fn new() -> Self {
        Stop::default()
    }

    /// Asks the run to stop after the batch in progress; wakes a sleeping
    /// trigger. Returns whether a stop had been asked for already.
    pub fn ask(&self) -> bool {
        let before = self.asked.swap(true, Ordering::SeqCst);
        self.wake.notify_waiters();
        before
    }

    /// Whether a stop was asked for.
    pub fn asked(&self) -> bool {
        self.asked.load(Ordering::SeqCst)
    }

    /// Sleeps for `d`, or less if a stop is asked for.
    pub async fn sleep(&self, d: Duration) {
        let woken = self.wake.notified();
        if self.asked() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = woken => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn asking_wakes_a_sleeper() {
        let stop = Stop::new();
        let sleeper = {
            let stop = stop.clone();
            tokio::spawn(async move { stop.sleep(Duration::from_secs(600)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!stop.ask());
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .expect("the sleeper woke")
            .unwrap();
        assert!(stop.ask(), "a second ask says it was asked before");
    }
}
