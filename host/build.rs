//! Hands the host the built-in connectors to embed, each with its machine code
//! compiled ahead of time for the engine configuration the binary runs
//! components under, so that no run, not even the first on a new machine,
//! waits for Cranelift; and the edge function's machine code (not the
//! component, which users configure as a file), for the same reason. The
//! components themselves are built by `sluice-components`, whose build
//! script starts with the build rather than after wasmtime.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn main() {
    precompile(Path::new(sluice_components::FILES_WASM), "SLUICE_FILES");
    precompile(Path::new(sluice_components::KAFKA_WASM), "SLUICE_KAFKA");
    precompile(
        Path::new(sluice_components::POSTGRES_WASM),
        "SLUICE_POSTGRES",
    );
    precompile(Path::new(sluice_components::EDGE_WASM), "SLUICE_EDGE");
    for (name, path) in [
        ("SLUICE_FILES_WASM", sluice_components::FILES_WASM),
        ("SLUICE_KAFKA_WASM", sluice_components::KAFKA_WASM),
        ("SLUICE_POSTGRES_WASM", sluice_components::POSTGRES_WASM),
        ("SLUICE_MISBEHAVE_WASM", sluice_components::MISBEHAVE_WASM),
        ("SLUICE_EDGE_WASM", sluice_components::EDGE_WASM),
    ] {
        println!("cargo:rerun-if-changed={path}");
        println!("cargo:rustc-env={name}={path}");
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
