//! Connectors compiled into the binary (built from `components/` by the
//! build script).

/// The built-in `files` connector. A `static`, not a `const`: a `const` is
/// copied into every place that names it (seven copies, 83 MB of the
/// binary, and a different address for each, which the runtime's per-address
/// cache of built-ins then missed).
pub static FILES: &[u8] = include_bytes!(env!("SLUICE_FILES_WASM"));

/// Built-in connectors by name.
pub fn all() -> [(&'static str, &'static [u8]); 1] {
    [("files", FILES)]
}
