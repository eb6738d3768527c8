//! `sluice-edge`: an HTTP-triggered ingestion function, built with
//! `spin-sdk` for `wasi:http`, so the same component runs under Spin or
//! under `sluice serve`.
//!
//! It takes a pushed batch of records (`POST`, a JSON object or array,
//! newline-delimited JSON, or CSV with a header), validates it, converts it
//! to one Arrow record batch and hands it on:
//!
//! - to a table, through Sluice's ingest endpoint
//!   (`POST {SLUICE_URL}/tables/{SLUICE_TABLE}/upload`, Arrow IPC), which
//!   commits it as one append; or
//! - to a landing prefix (`PUT {SLUICE_URL}/volumes/{SLUICE_VOLUME}/...`,
//!   newline-delimited JSON named by the batch's sha256, so a retried push
//!   lands on the same object) that a stream pipeline picks up.
//!
//! Configuration is the component's environment (Spin: `environment` in
//! `spin.toml`; Sluice: `env` under `[functions.NAME]`):
//!
//! | variable          | meaning                                        |
//! |-------------------|------------------------------------------------|
//! | `SLUICE_URL`      | Sluice's base URL (required)                   |
//! | `SLUICE_TOKEN`    | bearer token for Sluice (required)             |
//! | `SLUICE_TABLE`    | table to append to, or                         |
//! | `SLUICE_VOLUME`   | volume to land files in (`SLUICE_PREFIX` under it, default `edge`) |
//! | `REQUIRED_FIELDS` | comma-separated fields every record must have  |
//! | `MAX_BODY_BYTES`  | largest body (default 16 MiB)                  |
//! | `MAX_RECORDS`     | most records per push (default 100000)         |

pub mod convert;

#[cfg(target_arch = "wasm32")]
mod handler;
