//! Auto compaction (Databricks' `autoCompact`): after a stream commits a
//! batch, its table is compacted in the background when it holds enough
//! small files, while the stream goes on. At most one compaction runs per
//! stream; a run waits for it before it ends. A compaction that fails (it
//! lost to another writer) is logged and tried again after a later commit:
//! it never fails the stream.

use anyhow::{Result, bail};
use sluice_sink::Target;
use tokio::task::JoinHandle;

/// A stream's auto compaction.
pub(crate) struct AutoCompact {
    target: Target,
    min_files: usize,
    running: Option<JoinHandle<()>>,
}

impl AutoCompact {
    /// The auto compaction `options` ask for on `target` (compacted with
    /// its write options), if any.
    pub(crate) fn new(
        options: &std::collections::BTreeMap<String, String>,
        target: &Target,
    ) -> Result<Option<Self>> {
        let Some(min_files) = sluice_pipeline::incremental::auto_compact(options)? else {
            return Ok(None);
        };
        if target.is_keyed() {
            bail!(
                "option autoCompact is not supported for tables changes are applied to by key yet: their commits rewrite the files a compaction would; compact them with `sluice optimize` between runs"
            );
        }
        if target.format() == sluice_sink::TableFormat::Parquet {
            bail!("option autoCompact needs a Delta or Iceberg table");
        }
        Ok(Some(AutoCompact {
            target: target.clone(),
            min_files,
            running: None,
        }))
    }

    /// A batch committed: starts a compaction unless one is running.
    pub(crate) fn committed(&mut self) {
        if self.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let (target, min_files) = (self.target.clone(), self.min_files);
        self.running = Some(tokio::spawn(async move {
            let table = target.location();
            match target.optimize_when(min_files).await {
                Ok(Some(done)) => tracing::info!(
                    "auto compaction of {}: {} files into {} (version {:?})",
                    table.display(),
                    done.files_removed,
                    done.files_added,
                    done.version
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    "auto compaction of {} failed; the stream goes on and tries again after a later commit: {e}",
                    table.display()
                ),
            }
        }));
    }

    /// Waits for the running compaction, if any.
    pub(crate) async fn finish(self) {
        if let Some(h) = self.running {
            let _ = h.await;
        }
    }
}
