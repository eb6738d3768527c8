//! The Sluice host: runs WebAssembly connectors under wasmtime and streams
//! their Arrow batches into tables through the native sink.
//!
//! - [`runtime`]: the engine, the compiled-component cache, bounded stores;
//! - [`capability`] and [`grants`]: what a connector may do, checked per call;
//! - [`session`]: one connector instance, driven call by call;
//! - [`read`]: reading a stream into data files in parallel lanes;
//! - [`ingest`]: the batch ingest job (plan, discover, read, commit);
//! - [`incremental`]: streams and COPY INTO, exactly once;
//! - [`pipeline`]: named pipelines run once, as `sluice run` and `sluice serve` do;
//! - [`serve`]: `sluice serve`, the HTTP service;
//! - [`connectors`]: uploaded connector components, validated and stored by hash;
//! - [`functions`]: hosted `wasi:http` components (edge functions);
//! - [`outbound`]: where hosted components may send requests, checked after DNS and pinned;
//! - [`redact`] and [`failure`]: what leaves a run (secrets hidden) and who must act on a failure;
//! - [`split`]: byte ranges of large files, and the check that they met;
//! - [`builtin`]: the connectors compiled into the binary.

pub mod bindings;
pub mod builtin;
pub mod capability;
pub mod connectors;
pub mod failure;
pub mod functions;
pub mod grants;
pub mod incremental;
pub mod ingest;
pub mod outbound;
pub mod pipeline;
pub mod read;
pub mod redact;
pub mod runtime;
pub mod serve;
pub mod session;
pub mod split;
