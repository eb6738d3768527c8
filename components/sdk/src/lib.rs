//! Write Sluice connectors.
//!
//! This crate holds the one `wit_bindgen::generate!` of the
//! `sluice:connector` world (from the repository's `wit/`), re-exports what a
//! connector implements, and adds the Arrow IPC helpers every connector needs.
//!
//! A connector implements [`Guest`] and [`GuestReader`] and exports itself:
//!
//! ```ignore
//! use sluice_connector_sdk::{export_connector, Guest, GuestReader};
//!
//! struct Echo;
//! impl Guest for Echo { /* spec, check, discover, read */ }
//! export_connector!(Echo);
//! ```
//!
//! The complete example, which the tests build for `wasm32-wasip2` and
//! check with `sluice connector test`, is the template
//! `components/examples/rust-hello` (a crate outside the workspaces, as
//! yours will be); `docs/connectors.md` is the guide to the contract.
//!
//! A connector that plans its own batches (a message bus, a change log)
//! exports `planner` too: it generates the exports of the
//! `planned-connector` world itself, taking its imports and types from
//! [`bindings`] (see the Kafka connector).

pub mod ipc;
#[cfg(feature = "native")]
pub mod native;
pub mod net;
pub mod storage;

/// Bindings generated from `wit/` (`sluice:connector@0.2.0`, which adds
/// `network` to 0.1.0; a connector that opens no connection imports only
/// what 0.1.0 offers).
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "sluice:connector/connector@0.2.0",
        pub_export_macro: true,
        export_macro_name: "export_connector",
        default_bindings_module: "sluice_connector_sdk::bindings",
        // The network interface's wasi:io streams.
        generate_all,
    });
}

pub use bindings::export_connector;
pub use bindings::exports::sluice::connector0_1_0::source::{Guest, GuestReader, Reader};
#[cfg(not(feature = "native"))]
pub use bindings::sluice::connector0_1_0::host::{self, Level};
pub use bindings::sluice::connector0_1_0::types::{
    Batch, ConnectorSpec, Error, ObjectMeta, StreamInfo, SyncMode,
};
/// Built natively (feature `native`), the host's functions are
/// [`native`]'s: local files, counters in the process.
#[cfg(feature = "native")]
pub use native::{self as host, Level};

/// Logs `message` through the host at `level`.
pub fn log(level: Level, message: &str) {
    host::log(level, message);
}

impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::Other(format!("arrow: {e}"))
    }
}
