//! Ctrl-C and SIGTERM for long runs: the first asks the run to stop after
//! the batch in progress commits; the second abandons that batch at once
//! (its plan stays in the checkpoint and the next run redoes it, so nothing
//! is half-written either way).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Whether a stop was asked for.
#[derive(Clone, Default)]
pub struct Shutdown {
    asked: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl Shutdown {
    /// Listens for Ctrl-C and SIGTERM.
    pub fn listen() -> Self {
        let s = Shutdown::default();
        let this = s.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            loop {
                let terminated = async {
                    match term.as_mut() {
                        Some(t) => {
                            t.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminated => {}
                }
                if this.asked.swap(true, Ordering::SeqCst) {
                    eprintln!(
                        "abandoning the batch in progress: nothing of it is committed, and the next run redoes it"
                    );
                    std::process::exit(130);
                }
                eprintln!(
                    "stopping after the batch in progress commits (send the signal again to abandon it)"
                );
                this.wake.notify_waiters();
            }
        });
        s
    }

    /// Whether a stop was asked for.
    pub fn asked(&self) -> bool {
        self.asked.load(Ordering::SeqCst)
    }

    /// Sleeps for `d`, or less if a stop is asked for.
    pub async fn sleep(&self, d: Duration) {
        if self.asked() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.wake.notified() => {}
        }
    }
}
