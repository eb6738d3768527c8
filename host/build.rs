//! Builds the components workspace for wasm32-wasip2 and hands the host the
//! built-in connectors to embed (as wasmtime's test-programs artifacts do),
//! each with its machine code compiled ahead of time for the engine
//! configuration the binary runs components under, so that no run, not even
//! the first on a new machine, waits for Cranelift.
//!
//! The components get their own target directory, so this nested cargo never
//! waits on the lock of the build that runs this script.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let root = manifest
        .parent()
        .expect("host/ sits in the repository root")
        .to_path_buf();
    let components = root.join("components");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    for dir in [
        "sdk",
        "formats",
        "files",
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
    println!("cargo:rerun-if-env-changed=SLUICE_COMPONENTS_PROFILE");

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
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
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
    precompile(&out.join("sluice_files.wasm"), "SLUICE_FILES");
    for (name, file) in [
        ("SLUICE_FILES_WASM", "sluice_files.wasm"),
        ("SLUICE_MISBEHAVE_WASM", "sluice_misbehave.wasm"),
    ] {
        let path = out.join(file);
        assert!(path.exists(), "{} was not built", path.display());
        println!("cargo:rustc-env={name}={}", path.display());
    }
}

/// Sets `<NAME>_SHA256` to the hex sha256 of the component at `wasm` and
/// `<NAME>_CWASM` to a file holding its code compiled for
/// [`sluice_wasm_engine::config`]: by the same wasmtime the binary links, for
/// this machine's CPU. The file is empty when the binary is built for another
/// machine than this one; the runtime then compiles the component on first
/// use, as it does when the CPU it runs on lacks a feature the code uses.
fn precompile(wasm: &Path, name: &str) {
    let bytes = std::fs::read(wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()));
    println!(
        "cargo:rustc-env={name}_SHA256={}",
        hex::encode(Sha256::digest(&bytes))
    );
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets this"));
    let compiled_path = out_dir.join(format!("{}.cwasm", name.to_lowercase()));
    let native = std::env::var("TARGET").ok() == std::env::var("HOST").ok();
    let compiled = if native {
        let engine = wasmtime::Engine::new(&sluice_wasm_engine::config())
            .expect("a wasmtime engine for precompiling");
        engine
            .precompile_component(&bytes)
            .unwrap_or_else(|e| panic!("precompiling {}: {e:?}", wasm.display()))
    } else {
        Vec::new()
    };
    std::fs::write(&compiled_path, compiled)
        .unwrap_or_else(|e| panic!("writing {}: {e}", compiled_path.display()));
    println!("cargo:rustc-env={name}_CWASM={}", compiled_path.display());
}
