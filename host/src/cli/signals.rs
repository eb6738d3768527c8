//! Ctrl-C and SIGTERM for long runs: the first asks the run to stop after
//! the batch in progress commits; the second abandons that batch at once
//! (its plan stays in the checkpoint and the next run redoes it, so nothing
//! is half-written either way).

use sluice::engine::Stop;

/// A [`Stop`] asked for by Ctrl-C or SIGTERM.
pub fn listen() -> Stop {
    let stop = Stop::new();
    let this = stop.clone();
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
            if this.ask() {
                eprintln!(
                    "abandoning the batch in progress: nothing of it is committed, and the next run redoes it"
                );
                std::process::exit(130);
            }
            eprintln!(
                "stopping after the batch in progress commits (send the signal again to abandon it)"
            );
        }
    });
    stop
}
