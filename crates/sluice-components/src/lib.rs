//! The components of `components/`, built for wasm32-wasip2 by this crate's
//! build script: where each `.wasm` file is. The host's build script reads
//! them to embed the built-in connectors, compiled ahead of time.

/// The files connector (`components/files`), built in to the host.
pub const FILES_WASM: &str = env!("SLUICE_FILES_WASM");

/// The Kafka connector (`components/kafka`), built in to the host.
pub const KAFKA_WASM: &str = env!("SLUICE_KAFKA_WASM");

/// The PostgreSQL connector (`components/postgres`), built in to the host.
pub const POSTGRES_WASM: &str = env!("SLUICE_POSTGRES_WASM");

/// The edge function (`components/edge`), a `wasi:http` component that
/// `sluice serve` hosts when configured; the host carries its compiled code.
pub const EDGE_WASM: &str = env!("SLUICE_EDGE_WASM");

/// A component that misbehaves on request (`components/testing`), for the
/// host's tests of what a guest cannot do to it.
pub const MISBEHAVE_WASM: &str = env!("SLUICE_MISBEHAVE_WASM");
