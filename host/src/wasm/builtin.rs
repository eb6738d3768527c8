//! Connectors compiled into the binary (built from `components/` by the
//! build script).

/// The built-in `files` connector.
pub const FILES: &[u8] = include_bytes!(env!("SLUICE_FILES_WASM"));

/// Built-in connectors by name.
pub fn all() -> [(&'static str, &'static [u8]); 1] {
    [("files", FILES)]
}
