//! One description of a load, whichever face asked for it: the command
//! line's flags, a SQL statement, a pipeline file, an HTTP trigger or an
//! upload all become a [`Load`], and one engine runs it.
//!
//! The conventions every face shares are decided here, once: what a table
//! name means ([`crate::table`]) and where a load keeps its checkpoint when
//! it is not told ([`default_checkpoint`]).
//!
//! ```
//! use sluice_pipeline::{Load, LoadMode, Pipeline};
//! let pipeline = Pipeline::parse("mode = \"stream\"\nsource = \"in/\"\nformat = \"csv\"\ntable = \"events\"").unwrap();
//! let load = Load::named("events", pipeline);
//! assert_eq!(load.pipeline.mode, LoadMode::Stream);
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use sluice_location::Location;

use crate::error::{Error, Result};
use crate::pipeline::{LoadMode, Pipeline};
use crate::projection::Projection;
use crate::spec::Format;

/// A load: a pipeline, with what some faces add to one.
#[derive(Debug, Clone)]
pub struct Load {
    /// The pipeline's name, where it has one (a stored or `sluice run`
    /// pipeline): its stream's default checkpoint is named after it.
    pub name: Option<String>,
    /// What to load, from where, into which table, and how.
    pub pipeline: Pipeline,
    /// The select list (SQL's `AS SELECT ...`); `None` keeps every column.
    pub projection: Option<Projection>,
    /// A connector component on this machine (the command line's
    /// `--connector FILE.wasm`), in place of the pipeline's uploaded one.
    pub component_file: Option<PathBuf>,
}

impl Load {
    /// A load of `pipeline`, unnamed.
    pub fn new(pipeline: Pipeline) -> Self {
        Load {
            name: None,
            pipeline,
            projection: None,
            component_file: None,
        }
    }

    /// A load of the pipeline called `name`.
    pub fn named(name: &str, pipeline: Pipeline) -> Self {
        Load {
            name: Some(name.to_string()),
            ..Load::new(pipeline)
        }
    }

    /// Where this load keeps its checkpoint for `table`: as its pipeline
    /// says, or by [`default_checkpoint`]; `None` for a load that keeps
    /// none (replace, append).
    pub fn checkpoint(&self, table: &Location) -> Result<Option<Location>> {
        match &self.pipeline.checkpoint {
            Some(c) => Ok(Some(Location::parse(c, table.options().clone())?)),
            None => default_checkpoint(table, self.pipeline.mode, self.name.as_deref()),
        }
    }
}

/// COPY INTO as SQL and `sluice copy-into` state it.
#[derive(Debug, Clone)]
pub struct CopyInto {
    /// The table.
    pub table: String,
    /// `FROM`: where the files are.
    pub from: String,
    /// `FILEFORMAT`.
    pub format: Format,
    /// `PATTERN`: only files matching this glob, relative to `from`.
    pub pattern: Option<String>,
    /// `FILES`: only these files, relative to `from`.
    pub files: Vec<String>,
    /// `FORMAT_OPTIONS`: reader options.
    pub format_options: BTreeMap<String, String>,
    /// `COPY_OPTIONS`: `force`, `mergeSchema`.
    pub copy_options: BTreeMap<String, String>,
}

/// COPY INTO's options that are not reader options.
pub const COPY_OPTIONS: &[&str] = &["force", "mergeSchema"];

impl CopyInto {
    /// The load: a `copy_into` pipeline whose source is `FROM` (joined with
    /// `PATTERN`) and whose options hold both kinds of option.
    pub fn load(self) -> Result<Load> {
        if self.pattern.is_some() && !self.files.is_empty() {
            return Err(Error::Invalid("give PATTERN or FILES, not both".into()));
        }
        if let Some(k) = self
            .copy_options
            .keys()
            .find(|k| !COPY_OPTIONS.contains(&k.as_str()))
        {
            return Err(Error::Invalid(format!(
                "unknown COPY_OPTIONS '{k}'; use mergeSchema or force"
            )));
        }
        if let Some(k) = self
            .format_options
            .keys()
            .find(|k| COPY_OPTIONS.contains(&k.as_str()))
        {
            return Err(Error::Invalid(format!(
                "'{k}' is a COPY_OPTIONS option, not a FORMAT_OPTIONS one"
            )));
        }
        let source = match &self.pattern {
            Some(p) => format!(
                "{}/{}",
                self.from.trim_end_matches('/'),
                p.trim_start_matches('/')
            ),
            None => self.from,
        };
        let mut options = self.format_options;
        options.extend(self.copy_options);
        Ok(Load::new(Pipeline {
            mode: LoadMode::CopyInto,
            source: Some(source),
            format: Some(self.format),
            options,
            files: self.files,
            ..Pipeline::new(&self.table)
        }))
    }
}

/// Where a load of `mode` keeps its checkpoint when it is not told: with the
/// table, under `_sluice/`:
///
/// ```text
/// <table>/_sluice/copy_into          COPY INTO (sluice copy-into, SQL, pipelines)
/// <table>/_sluice/pipelines/<name>   a named pipeline's stream (sluice run, serve)
/// <table>/_sluice/streaming          an unnamed stream (SQL streaming tables, sluice stream)
/// ```
pub fn default_checkpoint(
    table: &Location,
    mode: LoadMode,
    pipeline: Option<&str>,
) -> Result<Option<Location>> {
    let child = |name: &str| -> Result<Option<Location>> { Ok(Some(table.child(name)?)) };
    match (mode, pipeline) {
        (LoadMode::CopyInto, _) => child("_sluice/copy_into"),
        (LoadMode::Stream, Some(name)) => child(&format!("_sluice/pipelines/{name}")),
        (LoadMode::Stream, None) => child("_sluice/streaming"),
        (LoadMode::Replace | LoadMode::Append | LoadMode::Cdc, _) => Ok(None),
    }
}

/// Every checkpoint a table may keep by default, the pipelines' folder last
/// (one checkpoint per pipeline under it): where `sluice files` looks.
pub fn default_checkpoints(table: &Location) -> Result<Vec<Location>> {
    Ok(vec![
        table.child("_sluice/copy_into")?,
        table.child("_sluice/streaming")?,
        table.child("_sluice/pipelines")?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_has_one_default_checkpoint() {
        let t = Location::parse("s3://lake/t", Default::default()).unwrap();
        let at = |mode, name| {
            default_checkpoint(&t, mode, name)
                .unwrap()
                .map(|l| l.url().to_string())
        };
        assert_eq!(
            at(LoadMode::CopyInto, None).as_deref(),
            Some("s3://lake/t/_sluice/copy_into")
        );
        assert_eq!(
            at(LoadMode::Stream, Some("events")).as_deref(),
            Some("s3://lake/t/_sluice/pipelines/events")
        );
        assert_eq!(
            at(LoadMode::Stream, None).as_deref(),
            Some("s3://lake/t/_sluice/streaming")
        );
        assert_eq!(at(LoadMode::Replace, None), None);
    }
}
