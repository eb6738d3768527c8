//! Secrets pipelines reference as `${secret:NAME}`: resolved at run time,
//! never stored or logged (what leaves a run passes through its
//! [`crate::engine::redact::Redactor`]).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

/// Secrets, by name: from `SLUICE_SECRET_<NAME>` variables, or a file of
/// `NAME=value` lines. Never logged, never written anywhere.
#[derive(Clone, Default)]
pub struct Secrets {
    file: Arc<HashMap<String, String>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} from a file)", self.file.len())
    }
}

impl Secrets {
    /// Reads a secrets file of `NAME=value` lines (`#` comments).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the secrets file {}", path.display()))?;
        let mut file = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                bail!(
                    "secrets file {} line {}: expected NAME=value",
                    path.display(),
                    i + 1
                );
            };
            file.insert(k.trim().to_string(), v.to_string());
        }
        Ok(Secrets {
            file: Arc::new(file),
        })
    }

    /// The value of secret `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        std::env::var(format!(
            "SLUICE_SECRET_{}",
            sluice_pipeline::pipeline::env_name(name)
        ))
        .ok()
        .or_else(|| self.file.get(name).cloned())
    }
}
