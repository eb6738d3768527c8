//! End-to-end tests: drive the `sluice` binary, read the tables back with
//! independent readers (Python `deltalake`, pyarrow, DuckDB).

mod harness;

mod bad_input;
mod cli;
mod formats;
mod s3;
mod sandbox;
mod splits;
