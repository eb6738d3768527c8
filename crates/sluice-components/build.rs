//! Builds the components workspace for wasm32-wasip2 (as wasmtime's
//! test-programs artifacts do) and hands the paths of the built components to
//! this crate's code.
//!
//! This script depends on nothing, so cargo runs it at the start of a build,
//! beside the host's own dependencies, rather than after them. The components
//! get their own target directory, so this nested cargo never waits on the
//! lock of the build that runs this script.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let root = manifest
        .ancestors()
        .nth(2)
        .expect("this crate sits in crates/ under the repository root")
        .to_path_buf();
    let components = root.join("components");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    for dir in [
        "sdk",
        "formats",
        "files",
        "kafka",
        "postgres",
        "edge",
        "testing",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
    ] {
        println!("cargo:rerun-if-changed={}", components.join(dir).display());
    }
    // The files connector's contract, shared with the host.
    println!(
        "cargo:rerun-if-changed={}",
        root.join("crates/sluice-files-contract").display()
    );

    let target_dir = root.join("target").join("components");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&components)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--workspace",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags meant for the host build must not leak into the wasm build.
    // The workspace wrapper stays: `tests/build` builds components/ beside
    // this build with the same wrapper (clippy-driver under `tests/run`),
    // and a build without it would not find that one's output fresh and
    // would compile and link every component again.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo to build the components");
    assert!(
        status.success(),
        "building components/ for wasm32-wasip2 failed"
    );

    let out = target_dir.join("wasm32-wasip2").join("release");
    for (name, file) in [
        ("SLUICE_FILES_WASM", "sluice_files.wasm"),
        ("SLUICE_KAFKA_WASM", "sluice_kafka.wasm"),
        ("SLUICE_POSTGRES_WASM", "sluice_postgres.wasm"),
        ("SLUICE_MISBEHAVE_WASM", "sluice_misbehave.wasm"),
        ("SLUICE_EDGE_WASM", "sluice_edge.wasm"),
    ] {
        let path = out.join(file);
        assert!(path.exists(), "{} was not built", path.display());
        println!("cargo:rustc-env={name}={}", path.display());
    }
}
