//! End-to-end tests: drive the `sluice` binary, read the tables back with
//! independent readers (Python `deltalake`, pyarrow, DuckDB).

mod harness;

mod attack;
mod authors;
mod bad_input;
mod browser;
mod cli;
mod concurrency;
mod conformance;
mod crash;
mod evolution;
mod formats;
mod functions;
mod iceberg;
mod incremental;
mod kafka;
mod load;
mod malformed;
mod pipelines;
mod postgres;
mod s3;
mod sandbox;
mod serve;
mod splits;
mod sql;
mod table_api;
mod tables;
mod upkeep;
