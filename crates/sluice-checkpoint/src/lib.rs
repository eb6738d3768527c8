//! The durable state of an incremental pipeline, kept on object storage next
//! to (or inside) its table: the batch log that makes ingestion exactly once,
//! the state of every file it discovered (Auto Loader's `cloud_files_state`)
//! and the history of the schemas it read with (`schemaLocation`).
//!
//! The protocol, per batch N (see the host's incremental runner):
//! 1. [`Checkpoint::plan`] writes `offsets/N` with the batch's files, before
//!    any data is written;
//! 2. the host reads the files and writes data files;
//! 3. it commits them to the table together with `txn(appId, N)`;
//! 4. [`Checkpoint::commit`] writes `commits/N`.
//!
//! After a crash, [`State::pending`] names the batch to settle: if the table's
//! txn version for the pipeline is N it only needs step 4, otherwise it is
//! redone from its plan.
//!
//! ```no_run
//! # async fn demo() -> sluice_checkpoint::Result<()> {
//! use sluice_checkpoint::{BatchKind, Checkpoint, SourceFile};
//! let location = sluice_location::Location::parse("/tmp/cp", Default::default())?;
//! let cp = Checkpoint::open(&location, 0).await?;
//! let mut state = cp.load().await?;
//! let file = SourceFile { location: "file:///in/a.csv".into(), size: 3, last_modified_ms: 0, etag: None };
//! let plan = cp.plan(&mut state, BatchKind::Load, vec![file], None, 0).await?;
//! println!("batch {} planned; appId sluice-{}", plan.batch, cp.id());
//! # Ok(()) }
//! ```

mod error;
mod log;
mod schemas;
mod state;
mod store;

pub use error::{Error, Result};
pub use log::Checkpoint;
pub use schemas::{SchemaLog, SchemaVersion};
pub use state::{BatchKind, Commit, FileState, Plan, SourceFile, State};
