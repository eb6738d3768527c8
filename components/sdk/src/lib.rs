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

pub mod ipc;
pub mod storage;

/// Bindings generated from `wit/connector.wit`.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "sluice:connector/connector",
        pub_export_macro: true,
        export_macro_name: "export_connector",
        default_bindings_module: "sluice_connector_sdk::bindings",
    });
}

pub use bindings::export_connector;
pub use bindings::exports::sluice::connector::source::{Guest, GuestReader, Reader};
pub use bindings::sluice::connector::host::{self, Level};
pub use bindings::sluice::connector::types::{
    Batch, ConnectorSpec, Error, ObjectMeta, StreamInfo, SyncMode,
};

/// Logs `message` through the host at `level`.
pub fn log(level: Level, message: &str) {
    host::log(level, message);
}

impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::Other(format!("arrow: {e}"))
    }
}
