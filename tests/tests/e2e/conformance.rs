//! The formats' own test suites, and constructed edge cases: every case is
//! loaded with `sluice ingest` and judged against an independent reader
//! (`tests/conformance/cases.py`). No case may load as wrong data; the
//! root causes of the silent wrong values found before each load right or
//! are refused, by name.

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Case, python, root};

/// Cases that must load, value for value, each the proof of one fixed cause.
const MUST_BE_IDENTICAL: &[&str] = &[
    // 1: a footer that says 0 rows while its row group holds 6.
    "parquet-testing/data/repeated_no_annotation.parquet",
    // 2: unsigned integers, widened as Spark does.
    "constructed/unsigned_maxima.parquet",
    "parquet-testing/data/concatenated_gzip_members.parquet",
    // 3: surrogate pairs above U+1FFFF, past the schema sample too.
    "JSONTestSuite/y_string_last_surrogates_1_and_2.json (past the sample)",
    "JSONTestSuite/y_string_accepted_surrogate_pairs.json (past the sample)",
    "JSONTestSuite/y_string_surrogates_U+1D11E_MUSICAL_SYMBOL_G_CLEF.json (past the sample)",
    // 6: INT96 outside 1677-2262.
    "parquet-testing/data/int96_from_spark.parquet",
    "constructed/int96_outside_ns_range.parquet",
    // Also: brotli, float16, zones, fixed-size binary.
    "constructed/brotli.parquet",
    "parquet-testing/data/float16_nonzeros_and_nans.parquet",
    "constructed/float16.parquet",
    "constructed/timestamp_zones.parquet",
    "constructed/fixed_size_binary.parquet",
    "csv-spectrum/escaped_quotes.csv",
    "csv-spectrum/newlines_crlf.csv",
    "constructed/bom.csv",
];

/// Cases that must be refused (none may load).
const MUST_BE_REFUSED: &[&str] = &[
    // 4: malformed JSON past the schema sample.
    "JSONTestSuite/n_array_double_comma.json (past the sample)",
    "JSONTestSuite/n_number_with_leading_zero.json (past the sample)",
    "JSONTestSuite/n_array_extra_comma.json (past the sample)",
    "JSONTestSuite/n_structure_double_array.json (past the sample)",
    // 5: broken CSV quoting.
    "constructed/unterminated_quote_mid_file.csv",
    "constructed/text_after_closing_quote.csv",
    // 7: names no reader accepts.
    "constructed/nul_in_a_name.parquet",
    "constructed/nul_in_header.csv",
    "constructed/names_differing_in_case.parquet",
    // Types Delta cannot store, refused before any file is written.
    "constructed/time_of_day.parquet",
];

fn run_python(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(root().join("tests/conformance/cases.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cases.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_formats_test_suites_load_right_or_are_refused_never_wrong() {
    let c = Case::new();
    let dir = c.path("conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let dir_str = dir.to_str().unwrap();
    run_python(&["prepare", dir_str]);
    let manifest: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();

    // Two at a time: the machine has two cores.
    let results: Vec<Value> = std::thread::scope(|s| {
        let chunks: Vec<&[Value]> = manifest.chunks(manifest.len().div_ceil(2)).collect();
        let workers: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let c = &c;
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|case| {
                            let mut args = vec![
                                "ingest".to_string(),
                                case["input"].as_str().unwrap().to_string(),
                                "-f".into(),
                                case["format"].as_str().unwrap().to_string(),
                                "-t".into(),
                                case["table"].as_str().unwrap().to_string(),
                            ];
                            for o in case["options"].as_array().unwrap() {
                                args.push("-o".into());
                                args.push(o.as_str().unwrap().to_string());
                            }
                            let args: Vec<&str> = args.iter().map(String::as_str).collect();
                            let out = c.run(&args);
                            json!({
                                "ok": out.status.success(),
                                "error": String::from_utf8_lossy(&out.stderr),
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec(&results).unwrap(),
    )
    .unwrap();
    let judged = run_python(&["judge", dir_str]);
    // Kept for reading after the run (the case directory is removed).
    let _ = std::fs::write(root().join("target/conformance-summary.json"), &judged);
    let summary: Value = serde_json::from_str(&judged).unwrap();
    println!("conformance: {}", summary["counts"]);
    println!(
        "must-load cases refused: {}",
        serde_json::to_string_pretty(&summary["refused_loads"]).unwrap()
    );
    assert_eq!(
        summary["counts"]["wrong"],
        0,
        "cases that loaded wrong data:\n{}",
        serde_json::to_string_pretty(&summary["wrong"]).unwrap()
    );
    let outcome = &summary["outcome"];
    for id in MUST_BE_IDENTICAL {
        assert_eq!(
            outcome[id], "identical",
            "{id}: {}",
            summary["refused_loads"]
        );
    }
    for id in MUST_BE_REFUSED {
        assert_eq!(outcome[id], "refused", "{id}");
    }
    // Refusals say what is wrong, naming the place.
    let error_of = |id: &str| {
        let i = manifest.iter().position(|m| m["id"] == id).unwrap();
        results[i]["error"].as_str().unwrap().to_string()
    };
    let e = error_of("constructed/unterminated_quote_mid_file.csv");
    assert!(e.contains("line 3") && e.contains("never closed"), "{e}");
    let e = error_of("constructed/text_after_closing_quote.csv");
    assert!(e.contains("line 2") && e.contains("closing quote"), "{e}");
    let e = error_of("constructed/time_of_day.parquet");
    assert!(e.contains("column 't'") && e.contains("schemaHints"), "{e}");
    assert_eq!(e.matches("Delta cannot store").count(), 1, "{e}");
    let e = error_of("JSONTestSuite/n_array_double_comma.json (past the sample)");
    assert!(e.contains("line 10002"), "{e}");
}
