//! The tables `sluice serve` shows (the console's endpoints, which
//! scripts use too): `GET /tables`, `/tables/{t}` (schema, files, bytes),
//! `/tables/{t}/history` (newest first), `/tables/{t}/sample` and
//! `/tables/{t}/files`, authorised as uploads are; `GET /whoami`, the
//! volumes' listings, and uploads that rename columns. What they say is
//! checked against independent readers.

use serde_json::{Value, json};

use crate::harness::{Case, read_delta, read_iceberg};
use crate::serve::{ADMIN, Reply, Server, WRITER};

fn upload(s: &Server, token: &str, table: &str, query: &str, body: &str) -> Reply {
    s.call(
        "POST",
        &format!("/tables/{table}/upload?{query}"),
        Some(token),
        None,
        Some(body.as_bytes().to_vec()),
    )
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tables_show_their_schema_history_sample_and_file_state_to_whom_may_see_them() {
    let c = Case::new();
    let s = Server::start(&c, "backstop_interval = \"0s\"");

    // A stream pipeline (its table keeps a checkpoint), two runs.
    let def = "mode = \"stream\"\nsource = \"land/in/\"\nformat = \"csv\"\ntable = \"events\"\n";
    s.define("events", def);
    c.write("land/in/a.csv", "id\n1\n2\n");
    assert_eq!(s.run_and_wait("events", ADMIN).status, 200);
    c.write("land/in/b.csv", "id\n3\n");
    assert_eq!(s.run_and_wait("events", ADMIN).status, 200);

    // Uploads: the writer's table, created then appended to; an Iceberg
    // table and a nested one, the admin's.
    let r = upload(
        &s,
        WRITER,
        "uploaded",
        "filename=a.csv",
        "id,city\n1,Oslo\n2,Lima\n",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = upload(
        &s,
        WRITER,
        "uploaded",
        "filename=b.csv",
        "id,city\n3,Kyiv\n",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = upload(
        &s,
        ADMIN,
        "shop.orders",
        "filename=o.csv&table_format=iceberg",
        "id,total\n1,9.5\n2,3.25\n",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let nested = "{\"id\":1,\"who\":{\"name\":\"a\",\"tags\":[\"x\",\"y\"]}}\n";
    let r = upload(&s, ADMIN, "nested", "filename=n.json", nested);
    assert_eq!(r.status, 200, "{}", r.body);

    // The list: every table to the admin, with its format and writers;
    // only its granted table to the writer.
    let all = s.get("/tables", ADMIN);
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(
        names(&all.body),
        ["events", "nested", "shop.orders", "uploaded"]
    );
    let by_name = |n: &str| {
        all.body
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("events")["pipelines"], json!(["events"]));
    assert_eq!(by_name("shop.orders")["format"], "iceberg");
    assert_eq!(by_name("uploaded")["format"], "delta");
    let mine = s.get("/tables", WRITER);
    assert_eq!(names(&mine.body), ["uploaded"]);
    for path in [
        "/tables/events",
        "/tables/events/history",
        "/tables/events/sample",
    ] {
        let r = s.get(path, WRITER);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(
            r.body["error"]
                .as_str()
                .unwrap()
                .contains("not granted table 'events'")
        );
    }
    assert_eq!(s.get("/tables/missing", ADMIN).status, 404);
    assert_eq!(s.get("/tables/..%2Fstate", ADMIN).status, 400);
    assert_eq!(s.get("/tables", "not-a-token-at-all-here").status, 401);

    // One table, as the Delta reader sees it.
    let d = s.get("/tables/uploaded", WRITER);
    assert_eq!(d.status, 200, "{}", d.body);
    let dump = read_delta(&c.path("warehouse/uploaded"));
    assert_eq!(d.body["format"], "delta");
    assert_eq!(d.body["version"], json!(dump.version));
    assert_eq!(d.body["files"], json!(dump.files));
    assert_eq!(d.body["rows"], json!(dump.rows.len()));
    assert!(d.body["bytes"].as_u64().unwrap() > 0);
    assert_eq!(d.body["location"], "<warehouse>/uploaded", "no server path");
    let cols: Vec<&str> = d.body["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    let read: Vec<&str> = dump.schema.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(cols, read);
    assert_eq!(d.body["file_sizes"][0]["files"], json!(dump.files));

    // Its history, newest first.
    let h = s.get("/tables/uploaded/history", WRITER);
    assert_eq!(h.status, 200, "{}", h.body);
    let versions: Vec<i64> = h
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 0]);
    assert_eq!(h.body[0]["rows_added"], 1);
    assert_eq!(h.body[1]["rows_added"], 2);
    assert_eq!(h.body[0]["files_added"], 1);
    assert!(h.body[0]["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(
        !h.body
            .to_string()
            .contains(&c.path("").display().to_string())
    );
    assert_eq!(
        s.get("/tables/uploaded/history?limit=1", WRITER)
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get("/tables/uploaded/history?limit=0", WRITER).status,
        400
    );

    // Its first rows.
    let sample = s.get("/tables/uploaded/sample?limit=2", WRITER);
    assert_eq!(sample.status, 200, "{}", sample.body);
    assert_eq!(sample.body["rows"].as_array().unwrap().len(), 2);
    let all_rows = s.get("/tables/uploaded/sample", WRITER);
    let mut cities: Vec<&str> = all_rows.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["city"].as_str().unwrap())
        .collect();
    cities.sort();
    assert_eq!(cities, ["Kyiv", "Lima", "Oslo"]);

    // An Iceberg table: snapshots as versions, its rows as pyiceberg reads.
    let ice = s.get("/tables/shop.orders", ADMIN);
    assert_eq!(ice.status, 200, "{}", ice.body);
    assert_eq!(ice.body["format"], "iceberg");
    assert_eq!(ice.body["rows"], 2);
    let ih = s.get("/tables/shop.orders/history", ADMIN);
    assert_eq!(ih.body[0]["operation"], "append");
    assert_eq!(ih.body[0]["rows_added"], 2);
    assert!(ih.body[0]["snapshot_id"].is_i64());
    let is = s.get("/tables/shop.orders/sample", ADMIN);
    let mut totals: Vec<f64> = is.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["total"].as_f64().unwrap())
        .collect();
    totals.sort_by(f64::total_cmp);
    let mut read: Vec<f64> = read_iceberg(&c.path("warehouse"), "shop.orders", "pyiceberg")
        .rows
        .iter()
        .map(|r| r["total"].as_f64().unwrap())
        .collect();
    read.sort_by(f64::total_cmp);
    assert_eq!(totals, read);

    // Nested types as trees.
    let n = s.get("/tables/nested", ADMIN);
    let who = n.body["schema"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "who")
        .unwrap()
        .clone();
    assert_eq!(who["type"], "Struct");
    let tags = who["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "tags")
        .unwrap();
    assert_eq!(tags["type"], "List");
    assert_eq!(tags["element"]["type"], "Utf8");

    // The stream's file state (cloud_files_state); none for an upload.
    let f = s.get("/tables/events/files", ADMIN);
    assert_eq!(f.status, 200, "{}", f.body);
    let files = f.body[0]["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert!(
        files.iter().all(|x| x["status"] == "committed"),
        "{}",
        f.body
    );
    assert!(
        files
            .iter()
            .all(|x| x["path"].as_str().unwrap().ends_with(".csv"))
    );
    assert_eq!(s.get("/tables/uploaded/files", WRITER).body, json!([]));

    // Who the token is, and the volumes it may use.
    let me = s.get("/whoami", WRITER);
    assert_eq!(me.body["name"], "loader");
    assert_eq!(me.body["role"], "writer");
    assert_eq!(me.body["tables"], json!(["uploaded"]));
    let put = s.call(
        "PUT",
        "/volumes/landing/raw/r.csv",
        Some(WRITER),
        None,
        Some(b"x\n1\n".to_vec()),
    );
    assert_eq!(put.status, 201, "{}", put.body);
    assert_eq!(s.get("/volumes", WRITER).body, json!([{"name": "landing"}]));
    let listed = s.get("/volumes/landing", WRITER);
    assert_eq!(listed.status, 200, "{}", listed.body);
    let paths: Vec<&str> = listed.body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"raw/r.csv"), "{paths:?}");
    assert_eq!(s.get("/volumes/nope", ADMIN).status, 404);
    assert_eq!(s.get("/functions", WRITER).body, json!([]));

    // The API's description, for anyone; every path it names is routed.
    let api = s.call("GET", "/openapi.json", None, None, None);
    assert_eq!(api.status, 200);
    let paths = api.body["paths"].as_object().unwrap();
    for p in [
        "/tables",
        "/tables/{table}/history",
        "/tables/{table}/sample",
        "/whoami",
    ] {
        assert!(paths.contains_key(p), "{p} is not described");
    }
    for p in paths.keys() {
        let concrete = p
            .replace("{table}", "uploaded")
            .replace("{name}", "events")
            .replace("{volume}", "landing")
            .replace("{id}", "x")
            .replace("{path}", "x")
            .replace("{rest}", "x");
        let r = s.call("OPTIONS", &concrete, Some(ADMIN), None, None);
        assert!(
            r.body.get("error") != Some(&json!("no such endpoint")),
            "{p} is described but not routed"
        );
    }
}

#[test]
fn an_upload_renames_and_retypes_columns_as_the_preview_showed() {
    let c = Case::new();
    let s = Server::start(&c, "");
    let csv = "zip,city,pop\n02134,Boston,5\n10001,New York,8\n";
    // Inferred, a zip code loses its leading zero; a hint keeps it, and a
    // select list renames a column.
    let query = "filename=z.csv&option.schemaHints=zip%20STRING\
                 &select=zip,%20%60city%60%20AS%20town,%20pop";
    let p = upload(
        &s,
        WRITER,
        "uploaded",
        &format!("{query}&preview=true"),
        csv,
    );
    assert_eq!(p.status, 200, "{}", p.body);
    let shown: Vec<(String, String)> = p.body["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("zip".to_string(), "Utf8".to_string()),
            ("town".to_string(), "Utf8".to_string()),
            ("pop".to_string(), "Int64".to_string())
        ]
    );
    assert_eq!(p.body["rows"][0]["zip"], "02134");
    let r = upload(&s, WRITER, "uploaded", query, csv);
    assert_eq!(r.status, 200, "{}", r.body);
    let t = read_delta(&c.path("warehouse/uploaded"));
    let cols: Vec<&str> = t.schema.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(cols, ["zip", "town", "pop"]);
    let mut zips: Vec<&str> = t.rows.iter().map(|r| r["zip"].as_str().unwrap()).collect();
    zips.sort();
    assert_eq!(zips, ["02134", "10001"]);

    // A select list that is not one says so, and nothing is written.
    let bad = upload(
        &s,
        WRITER,
        "uploaded",
        "filename=z.csv&select=zip%20FROM%20x",
        csv,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body["error"].as_str().unwrap().starts_with("select:"),
        "{}",
        bad.body
    );
    let missing = upload(&s, WRITER, "uploaded", "filename=z.csv&select=nope", csv);
    assert_eq!(missing.status, 400, "{}", missing.body);
    assert!(
        missing.body["error"].as_str().unwrap().contains("nope"),
        "{}",
        missing.body
    );
    assert_eq!(read_delta(&c.path("warehouse/uploaded")).rows.len(), 2);
}
