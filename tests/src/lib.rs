//! End-to-end tests for the `sluice` binary.
