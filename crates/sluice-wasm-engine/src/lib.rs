//! The wasmtime configuration every Sluice component is compiled for, in one
//! place. The host's runtime builds its engines from it, and the host's build
//! script compiles the built-in connectors with it ahead of time, so the
//! binary carries machine code its own engine accepts; the runtime still
//! checks that it does (same wasmtime, same settings, a CPU with the features
//! the code was compiled for) before using it, and compiles when not.

use wasmtime::Config;

/// The settings compiled code depends on. What only shapes running (the
/// pooling allocator, memory and time limits) is added by the runtime on
/// top, and does not change what is compiled.
pub fn config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Deadlines: a guest that loops is stopped at the next epoch tick.
    config.epoch_interruption(true);
    config.max_wasm_stack(1 << 20);
    config
}
