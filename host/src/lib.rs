//! The Sluice host: runs WebAssembly connectors under wasmtime and streams
//! their Arrow batches into tables through the native sink.
//!
//! Three parts, dependencies pointing one way (`serve` → `engine` → `wasm`):
//!
//! - [`wasm`]: the WebAssembly embedding — the wasmtime runtime and its
//!   compiled-component cache, one connector instance driven call by call,
//!   the capabilities a connector is granted, uploaded connectors, hosted
//!   `wasi:http` functions and their outbound policy;
//! - [`engine`]: one load path — a [`engine::Load`] (what every face
//!   describes) run under a [`engine::Trigger`], reporting through an
//!   [`engine::Observer`]: batch jobs, incremental loads exactly once,
//!   reading in parallel lanes, typed failures with secrets redacted;
//! - [`serve`]: `sluice serve`, the HTTP face.
//!
//! The command line (`src/main.rs`, `src/cli/`) is the other face; it and
//! `serve` reach the rest only through the engine.

pub mod engine;
pub mod serve;
pub mod wasm;
