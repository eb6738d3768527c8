//! What a connector author does: build a connector in Python, JavaScript or
//! Rust (the examples and the template under `components/examples/`, with
//! the toolchains from PyPI, npm and crates.io), check it with `sluice
//! connector test`, load a table with it, and upload it to `sluice serve`.
//! Each example is built once per test binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::harness::{Case, component, python, read_delta, root};
use crate::serve::{ADMIN, Server};

/// `components/examples/<name>`.
fn example(name: &str) -> PathBuf {
    root().join("components/examples").join(name)
}

/// Runs an example's `build.sh` (which installs what it lacks) and returns
/// the component it wrote.
fn build(name: &str) -> PathBuf {
    let dir = example(name);
    let out = Command::new("bash")
        .arg(dir.join("build.sh"))
        .env("SLUICE_PYTHON", python())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building {name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = dir.join("connector.wasm");
    assert!(wasm.exists(), "{name}'s build wrote no connector.wasm");
    wasm
}

fn python_hello() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build("python-hello"))
}

fn js_hello() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build("js-hello"))
}

/// The Rust template, built as its README says, outside every workspace
/// (its output lands in the components' target directory, which the
/// repository's cargo configuration names, so shared dependencies are
/// compiled once).
fn rust_hello() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let out = Command::new("cargo")
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                "wasm32-wasip2",
            ])
            .current_dir(example("rust-hello"))
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "building the Rust template failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        component("rust_hello")
    })
}

/// `sluice connector test` on `wasm` with the example's config, as JSON.
fn conformance(c: &Case, wasm: &Path, config: &Path) -> (bool, Value, String) {
    let out = c.run(&[
        "connector",
        "test",
        wasm.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The checks of a report that did not pass, for messages.
fn not_passed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["outcome"] != "pass")
                .map(|c| format!("{}: {} ({})", c["outcome"], c["name"], c["detail"]))
                .collect()
        })
        .unwrap_or_default()
}

/// Every example passes every check (resuming from a checkpoint among
/// them), and what each language costs is printed side by side.
#[test]
fn the_python_javascript_and_rust_examples_pass_the_conformance_test() {
    let c = Case::new();
    let mut costs = Vec::new();
    for (name, wasm, hands_over) in [
        ("python-hello", python_hello(), "records"),
        ("js-hello", js_hello(), "records"),
        ("rust-hello", rust_hello(), "arrow"),
    ] {
        let (ok, report, stderr) = conformance(&c, wasm, &example(name).join("config.json"));
        assert!(
            ok,
            "{name} failed the conformance test: {:?}\n{stderr}",
            not_passed(&report)
        );
        assert!(
            not_passed(&report).is_empty(),
            "{name}: {:?}",
            not_passed(&report)
        );
        assert_eq!(report["hands_over"], hands_over);
        assert_eq!(report["rows"], 2500, "{report}");
        let checks: Vec<&str> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        for wanted in [
            "spec",
            "check accepts the config",
            "check refuses the config without its required key with error.config",
            "read greetings",
            "resume greetings from a mid-stream checkpoint",
        ] {
            assert!(checks.contains(&wanted), "{name}: {checks:?}");
        }
        costs.push(format!(
            "{name:>13}: {:>5.1} MB, instantiate {:>7.2} ms, {:>9.0} rows/s",
            std::fs::metadata(wasm).unwrap().len() as f64 / 1e6,
            report["instantiate_ms"].as_f64().unwrap(),
            report["rows_per_second"].as_f64().unwrap()
        ));
    }
    eprintln!("what each language costs (sluice connector test):");
    for line in costs {
        eprintln!("  {line}");
    }
}

/// A component that traps fails the run, naming the check; so does one
/// that sends bytes that are not Arrow.
#[test]
fn a_broken_connector_fails_the_conformance_test_naming_the_check() {
    let c = Case::new();
    for (what, failing) in [("panic", "crashed"), ("garbage", "not valid Arrow IPC")] {
        let config = c.write(&format!("{what}.json"), format!("{{\"do\": \"{what}\"}}"));
        let (ok, report, stderr) = conformance(&c, &component("sluice_misbehave"), &config);
        assert!(!ok, "{what}: the conformance test passed: {report}");
        let failed = not_passed(&report);
        assert!(
            failed.iter().any(|f| f.starts_with("\"fail\": \"read ")),
            "{what}: {failed:?}"
        );
        assert!(
            failed.iter().any(|f| f.contains(failing)),
            "{what}: {failed:?}"
        );
        assert!(stderr.contains("failed"), "{stderr}");
        // The readable report says the same.
        let out = c.run(&[
            "connector",
            "test",
            component("sluice_misbehave").to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("FAIL read bad"), "{text}");
    }
}

/// The Python and JavaScript connectors load tables from the command line
/// and, uploaded, from `sluice serve`'s pipelines; Python `deltalake` reads
/// the rows back with their declared types.
#[test]
fn python_and_javascript_connectors_load_tables_locally_and_uploaded() {
    let c = Case::new();
    let s = Server::start(&c, "");
    for (name, wasm) in [("python-hello", python_hello()), ("js-hello", js_hello())] {
        let table = c.path(&format!("local_{}", name.replace('-', "_")));
        c.ok(&[
            "ingest",
            "--connector",
            wasm.to_str().unwrap(),
            "--config",
            r#"{"rows": 3000, "batch_rows": 700, "greeting": "hi"}"#,
            "--table",
            table.to_str().unwrap(),
        ]);
        let t = read_delta(&table);
        assert_eq!(t.ids(), (0..3000).collect::<Vec<_>>(), "{name}");
        assert_eq!(t.type_of("id"), "int64", "{:?}", t.schema);
        assert!(t.type_of("at").starts_with("timestamp"), "{:?}", t.schema);
        assert!(t.type_of("tags").starts_with("list"), "{:?}", t.schema);
        let rows = t.data_by("id");
        assert_eq!(rows[7]["message"], "hi #7");
        assert_eq!(rows[7]["score"], 3.5);
        assert_eq!(rows[7]["tags"], serde_json::json!(["odd"]));
        assert_eq!(rows[7]["at"], "2026-01-01 00:00:07+00:00");

        let wasm_bytes = std::fs::read(wasm).unwrap();
        let info = s.upload_bytes(wasm_bytes);
        assert_eq!(info["name"], name, "{info}");
        let id = info["id"].as_str().unwrap();
        let pipeline = name.replace('-', "_");
        s.define(
            &pipeline,
            &format!(
                "mode = \"replace\"\ntable = \"{pipeline}\"\n[connector]\nid = \"{id}\"\nconfig = {{ rows = 1200, batch_rows = 500 }}\n"
            ),
        );
        let r = s.run_and_wait(&pipeline, ADMIN);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["report"]["rows"], 1200, "{}", r.body);
        let t = read_delta(&c.path(&format!("warehouse/{pipeline}")));
        assert_eq!(t.ids(), (0..1200).collect::<Vec<_>>());
        assert_eq!(t.data_by("id")[0]["message"], "hello #0");
    }
}
