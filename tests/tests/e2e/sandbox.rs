//! Purpose-built misbehaving components: the host stops them at their limits,
//! denies access outside their grants, and rejects garbage, without crashing.

use std::time::{Duration, Instant};

use crate::harness::{Case, component};

fn misbehave(c: &Case, what: &str, extra: &[&str]) -> (String, Duration) {
    let wasm = component("sluice_misbehave");
    let config = format!(
        "{{\"do\": \"{what}\", \"target\": \"{}\"}}",
        url_of(&c.path("secret/key.txt"))
    );
    let grant = url_of(&c.path("in")) + "/";
    let mut args = vec![
        "ingest",
        "--connector",
        wasm.to_str().unwrap(),
        "--config",
        &config,
        "--grant",
        &grant,
        "-t",
        "./t",
    ];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let err = c.fails(&args);
    (err, started.elapsed())
}

fn url_of(p: &std::path::Path) -> String {
    format!("file://{}", p.display())
}

fn setup() -> Case {
    let c = Case::new();
    c.write("in/ok.csv", "x\n1\n");
    c.write("secret/key.txt", "the secret");
    c
}

#[test]
fn a_looping_component_is_stopped_at_its_deadline() {
    let c = setup();
    let (err, took) = misbehave(&c, "loop", &["--component-timeout", "1"]);
    assert!(err.contains("ran past its time limit"), "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(!c.path("t/_delta_log").exists(), "nothing may be committed");
}

#[test]
fn a_hungry_component_traps_at_its_memory_cap() {
    let c = setup();
    let (err, _) = misbehave(&c, "hog", &["--component-memory", "64"]);
    assert!(err.contains("memory limit of 64 MiB"), "{err}");
}

#[test]
fn a_component_cannot_read_or_list_outside_its_grant() {
    let c = setup();
    let (err, _) = misbehave(&c, "escape", &[]);
    assert!(err.contains("access denied"), "{err}");
    assert!(err.contains("outside the granted prefixes"), "{err}");
    assert!(!err.contains("the secret"), "{err}");
    let (err, _) = misbehave(&c, "list", &[]);
    assert!(err.contains("access denied"), "{err}");
}

#[test]
fn garbage_instead_of_arrow_ipc_is_a_clean_error() {
    let c = setup();
    let (err, _) = misbehave(&c, "garbage", &[]);
    assert!(err.contains("not valid Arrow IPC"), "{err}");
}

#[test]
fn a_panicking_component_is_a_clean_error() {
    let c = setup();
    let (err, _) = misbehave(&c, "panic", &[]);
    assert!(err.contains("the connector crashed during next"), "{err}");
}

#[test]
fn a_core_module_or_junk_is_not_accepted_as_a_connector() {
    let c = setup();
    let junk = c.write("junk.wasm", b"\0asm\x01\0\0\0");
    let err = c.fails(&[
        "ingest",
        "--connector",
        junk.to_str().unwrap(),
        "--config",
        "{}",
        "-t",
        "./t",
    ]);
    assert!(
        err.contains("compiling the component") || err.contains("component"),
        "{err}"
    );
}
