//! The WebAssembly embedding: everything that knows wasmtime.
//!
//! - [`runtime`]: the engine, the compiled-component cache, bounded stores
//!   (memory cap and budget, epoch deadline, pool slots);
//! - [`bindings`]: the one `bindgen!` of the `sluice:connector` world;
//! - [`capability`] and [`grants`]: what a connector may do, checked per call;
//! - [`network`]: the connections a connector may open, checked, secured and
//!   metered by the host;
//! - [`session`]: one connector instance, driven call by call;
//! - [`records`]: JSON records into Arrow, for connectors that hand over
//!   records;
//! - [`connectors`]: uploaded connector components, validated and stored by hash;
//! - [`builtin`]: the connectors compiled into the binary;
//! - [`functions`]: hosted `wasi:http` components (edge functions);
//! - [`outbound`]: where hosted components may send requests, checked after
//!   DNS and pinned.

pub mod bindings;
pub mod builtin;
pub mod capability;
pub mod connectors;
pub mod functions;
pub mod grants;
pub mod network;
pub mod outbound;
pub mod records;
pub mod runtime;
pub mod session;
