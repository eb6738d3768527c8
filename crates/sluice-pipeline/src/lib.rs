//! What a pipeline is, and what its source resolves to.
//!
//! [`Ingest`] is the validated description of one batch ingest (source,
//! format, reader options, table); [`plan_files`] turns a source (a file, a
//! directory or a glob, local or in object storage) into the sorted list of
//! files to read. Nothing here runs connectors: the host does.
//!
//! ```no_run
//! # async fn demo() -> sluice_pipeline::Result<()> {
//! use sluice_pipeline::{plan_files, Source};
//! let source = Source::parse("data/*.csv", Default::default())?;
//! for file in plan_files(&source).await? {
//!     println!("{} ({} bytes)", file.location, file.size);
//! }
//! # Ok(()) }
//! ```

mod error;
pub mod incremental;
pub mod load;
pub mod notify;
pub mod pipeline;
mod plan;
pub mod projection;
pub mod schema;
mod spec;
pub mod table;
pub mod trigger;

pub use error::{Error, Result};
pub use incremental::{CleanSource, StreamOptions};
pub use load::Load;
pub use pipeline::{ApplyChanges, LoadMode, Pipeline};
pub use plan::{FileRef, Source, list_files, notified_files, plan_files};
pub use projection::Projection;
pub use schema::Evolution;
pub use sluice_files_contract::UnknownFormat;
pub use spec::{Format, Ingest};
pub use table::TableRef;
pub use trigger::Trigger;
