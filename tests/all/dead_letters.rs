//! Every bad input of TESTING.md ends in the dead-letter sink with its
//! reason, raw bytes and line; the stream continues and the counters say so.

use edge_tests::{file_source, guests, read_jsonl, run_pipeline};
use std::collections::BTreeMap;

const GOOD: &str = r#"{"transaction_id":"ID","customer_id":"c1","merchant_id":"m1","transaction_type":"PURCHASE","status":"COMPLETED","amount":"10.00","currency":"USD","location":{"country":"US","city":"Boston"},"created_at":"2026-01-05T00:00:00Z"}"#;

fn good(id: &str) -> Vec<u8> {
    GOOD.replace("ID", id).into_bytes()
}

fn swap(id: &str, from: &str, to: &str) -> Vec<u8> {
    let line = GOOD.replace("ID", id);
    assert!(line.contains(from), "{from}");
    line.replacen(from, to, 1).into_bytes()
}

#[test]
fn every_bad_input_lands_in_dead_letter_with_its_reason() {
    let mut truncated = good("t-trunc");
    truncated.truncate(60);
    let mut invalid_utf8 = good("t-utf8");
    invalid_utf8.splice(30..30, [0xff, 0xfe, 0xfd]);
    let oversized = format!(
        r#"{{"transaction_id":"big","padding":"{}"}}"#,
        "x".repeat(100_000)
    )
    .into_bytes();
    // An hour ahead of the clock: within a day, but past the five minutes
    // a live event may run ahead.
    let in_an_hour = edge::model::iso_time(chrono_now() + 3_600_000);
    let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
        (good("ok-1"), None),
        (b"{this is not json".to_vec(), Some("malformed_json")),
        (truncated, Some("malformed_json")),
        (b"42".to_vec(), Some("malformed_json")),
        (
            swap("t-type", r#""customer_id":"c1""#, r#""customer_id":["c1"]"#),
            Some("wrong_type"),
        ),
        (
            swap("t-nocust", r#""customer_id":"c1","#, ""),
            Some("missing_field"),
        ),
        (swap("", "", ""), Some("missing_field")),
        (
            swap("t-noamount", r#""amount":"10.00","#, ""),
            Some("missing_field"),
        ),
        (
            swap("t-nan", r#""amount":"10.00""#, r#""amount":"ten""#),
            Some("invalid_amount"),
        ),
        (
            swap("t-neg", r#""amount":"10.00""#, r#""amount":-10.00"#),
            Some("negative_amount"),
        ),
        (
            swap(
                "t-absurd",
                r#""amount":"10.00""#,
                r#""amount":"99999999999999""#,
            ),
            Some("absurd_amount"),
        ),
        (swap("t-kind", "PURCHASE", "TELEPORT"), Some("unknown_kind")),
        (
            swap("t-status", "COMPLETED", "EVAPORATED"),
            Some("unknown_status"),
        ),
        (invalid_utf8, Some("invalid_utf8")),
        (oversized, Some("oversized")),
        (good("ok-1"), Some("duplicate")),
        (
            swap("t-past", "2026-01-05T00:00:00Z", "1969-07-20T20:17:00Z"),
            Some("time_out_of_range"),
        ),
        (
            swap("t-future", "2026-01-05T00:00:00Z", "2999-01-01T00:00:00Z"),
            Some("time_out_of_range"),
        ),
        (
            swap("t-hour-ahead", "2026-01-05T00:00:00Z", &in_an_hour),
            Some("time_out_of_range"),
        ),
        (
            swap("t-time", "2026-01-05T00:00:00Z", "last tuesday"),
            Some("invalid_time"),
        ),
        (
            swap(
                "t-reference-risk",
                r#""currency":"USD""#,
                r#""currency":"USD","risk_score":73.5,"risk_level":"HIGH""#,
            ),
            None,
        ),
        (
            swap(
                "t-risk-scale",
                r#""currency":"USD""#,
                r#""currency":"USD","risk_score":150"#,
            ),
            Some("invalid_risk_score"),
        ),
        (
            swap(
                "t-risk-level",
                r#""currency":"USD""#,
                r#""currency":"USD","risk_score":20,"risk_level":"SEVERE""#,
            ),
            Some("invalid_risk_level"),
        ),
        (
            swap(
                "t-long-id",
                r#""customer_id":"c1""#,
                &format!(r#""customer_id":"{}""#, "c".repeat(300)),
            ),
            Some("field_too_long"),
        ),
        (
            swap(
                "t-risk",
                r#""currency":"USD""#,
                r#""currency":"USD","risk_score":"high""#,
            ),
            Some("invalid_risk_score"),
        ),
        (swap("t-nul", "c1", "c\u{0}1"), Some("malformed_json")),
        (good("ok-2"), None),
    ];
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    let mut bytes = Vec::new();
    for (line, _) in &cases {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    std::fs::write(&input, &bytes).unwrap();

    let (out, summary) =
        run_pipeline(&guests::RULE_SETS, |c| c.source = file_source(&input)).unwrap();
    let expected: BTreeMap<u64, &str> = cases
        .iter()
        .enumerate()
        .filter_map(|(i, (_, reason))| reason.map(|r| (i as u64 + 1, r)))
        .collect();
    let dead = read_jsonl(&out.path().join("dead_letter.jsonl"));
    let got: BTreeMap<u64, &str> = dead
        .iter()
        .map(|d| {
            (
                d["position"].as_u64().unwrap(),
                d["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    for d in &dead {
        assert!(!d["detail"].as_str().unwrap().is_empty());
        assert_eq!(d["source"], format!("file:{}", input.display()));
        assert!(
            d["raw"].is_string() || d["raw_base64"].is_string(),
            "raw bytes kept: {d}"
        );
    }
    let utf8 = dead.iter().find(|d| d["reason"] == "invalid_utf8").unwrap();
    assert!(
        utf8["raw_base64"].is_string(),
        "invalid UTF-8 is kept exactly, as base64"
    );
    // A record larger than a dead letter keeps: its first 64 KiB, its
    // size and its SHA-256.
    let big = dead.iter().find(|d| d["reason"] == "oversized").unwrap();
    let raw =
        std::str::from_utf8(&cases.iter().find(|(l, _)| l.len() > 100_000).unwrap().0).unwrap();
    assert_eq!(big["raw"].as_str().unwrap(), &raw[..65_536]);
    assert_eq!(big["raw_bytes"], raw.len());
    assert_eq!(
        big["raw_sha256"].as_str().unwrap(),
        sha256_hex(raw.as_bytes())
    );
    let long = dead
        .iter()
        .find(|d| d["reason"] == "field_too_long")
        .unwrap();
    assert!(
        long["detail"]
            .as_str()
            .unwrap()
            .contains("customer_id is 300 bytes; decode.max-field-bytes is 256"),
        "{long}"
    );
    assert_eq!(summary.records, cases.len() as u64);
    assert_eq!(
        summary.events, 3,
        "the stream went on past every bad record"
    );
    assert_eq!(summary.dead_letters, expected.len() as u64);
    assert_eq!(summary.duplicates, 1);
    let merchant = read_jsonl(&out.path().join("merchant_metrics.jsonl"));
    assert_eq!(merchant.len(), 1);
    assert_eq!(merchant[0]["transaction_count"], 3);

    // The same dead letters, and every record as received, land in
    // PostgreSQL and ClickHouse (NUL bytes and invalid UTF-8 included).
    let (Some(ch), Some(pg)) = (
        edge_tests::service("EDGE_CLICKHOUSE_URL"),
        edge_tests::service("EDGE_POSTGRES_URL"),
    ) else {
        return;
    };
    use edge::config::SinkKind;
    use edge_tests::db;
    let name = db::unique("edge_dl");
    run_pipeline(&guests::RULE_SETS, |c| {
        c.source = file_source(&input);
        c.clickhouse.url = ch.clone();
        c.clickhouse.database = name.clone();
        c.postgres.url = pg.clone();
        c.postgres.schema = name.clone();
        for stream in ["dead_letter", "raw"] {
            c.output.routes.insert(
                stream.into(),
                vec![SinkKind::Clickhouse, SinkKind::Postgres],
            );
        }
    })
    .unwrap();
    let want: Vec<String> = expected
        .iter()
        .map(|(position, reason)| format!("{position} {reason}"))
        .collect();
    let got = |rows: Vec<Vec<String>>| -> Vec<String> {
        rows.iter().map(|r| format!("{} {}", r[0], r[1])).collect()
    };
    assert_eq!(
        got(db::postgres(
            &pg,
            &format!("select position, reason from \"{name}\".dead_letter order by position")
        )),
        want
    );
    assert_eq!(
        got(db::clickhouse(
            &ch,
            &format!("SELECT position, reason FROM `{name}`.dead_letter FINAL ORDER BY position")
        )),
        want
    );
    let raw = format!("select count(*), count(raw_base64) from \"{name}\".raw");
    assert_eq!(
        db::postgres(&pg, &raw)[0],
        [cases.len().to_string(), "1".into()]
    );
    let raw = format!("SELECT count(), countIf(isNotNull(raw_base64)) FROM `{name}`.raw FINAL");
    assert_eq!(
        db::clickhouse(&ch, &raw)[0],
        [cases.len().to_string(), "1".into()]
    );
    db::postgres(&pg, &format!("drop schema \"{name}\" cascade"));
    db::clickhouse(&ch, &format!("DROP DATABASE `{name}`"));
}

/// The wall clock, ms since the epoch.
fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// SHA-256 of `bytes` as lowercase hex, computed apart from edge with the
/// system's `sha256sum`.
fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[test]
fn events_beyond_allowed_lateness_go_to_the_late_side_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("late.jsonl");
    let line = |id: &str, time: &str| GOOD.replace("ID", id).replace("2026-01-05T00:00:00Z", time);
    let lines = [
        line("a", "2026-01-05T00:00:00Z"),
        line("b", "2026-01-05T00:20:00Z"),
        // 00:05 belongs to [00:00, 00:10), purged once the watermark passed 00:10.
        line("late", "2026-01-05T00:05:00Z"),
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let (out, summary) = run_pipeline(&[guests::MERCHANT], |c| {
        c.source = file_source(&input);
        c.engine.batch_size = 1;
    })
    .unwrap();
    assert_eq!(summary.late, 1);
    let late = read_jsonl(&out.path().join("late.jsonl"));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0]["event"]["transaction_id"], "late");
    assert_eq!(late[0]["rule"], "merchant");
    assert_eq!(late[0]["window"], "merchant-10m");
    let rows = read_jsonl(&out.path().join("merchant_metrics.jsonl"));
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["transaction_count"] == 1));
}

#[test]
fn csv_input_decodes_and_rejects_like_json() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.csv");
    std::fs::write(
        &input,
        "transaction_id,customer_id,merchant_id,transaction_type,amount,country,city,compliance_flags,created_at\n\
         c-1,k1,m1,purchase,12.50,US,Boston,,2026-01-05T00:00:00Z\n\
         c-2,k2,m1,purchase,7.50,US,Boston,HIGH_RISK|HIGH_VALUE,1767571260000\n\
         c-3,k2,m1,purchase,-1,US,Boston,,2026-01-05T00:02:00Z\n\
         c-4,k2,m1\n",
    )
    .unwrap();
    let (out, summary) =
        run_pipeline(&[guests::MERCHANT], |c| c.source = file_source(&input)).unwrap();
    assert_eq!(summary.events, 2);
    let reasons: Vec<String> = read_jsonl(&out.path().join("dead_letter.jsonl"))
        .iter()
        .map(|d| format!("{}@{}", d["reason"].as_str().unwrap(), d["position"]))
        .collect();
    assert_eq!(reasons, vec!["negative_amount@4", "malformed_csv@5"]);
    let rows = read_jsonl(&out.path().join("merchant_metrics.jsonl"));
    assert_eq!(rows[0]["revenue"], "20.00");
}

/// The `seen` rows' attributes, by transaction id.
fn seen_attributes(out: &std::path::Path) -> BTreeMap<String, serde_json::Value> {
    read_jsonl(&out.join("seen.jsonl"))
        .into_iter()
        .map(|r| {
            let id = r["transaction_id"].as_str().unwrap().to_string();
            (id, r["attributes"].clone())
        })
        .collect()
}

#[test]
fn attributes_reach_rule_sets_from_json_csv_and_debezium() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let attributes: BTreeMap<String, String> = [
        ("order_id", "order_id"),
        ("product", "item.product_id"),
        ("quantity", "item.quantity"),
        ("gift", "gift"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let attributed = |id: &str, item: &str, rest: &str| {
        GOOD.replace("ID", id).replacen(
            "{",
            &format!("{{\"order_id\":\"O-1\",\"item\":{item},{rest}"),
            1,
        )
    };
    let long = "x".repeat(300);
    let json_input = dir.path().join("events.jsonl");
    let lines = [
        attributed(
            "j-1",
            r#"{"product_id":"P1","quantity":3}"#,
            r#""gift":true,"#,
        ),
        attributed("j-2", r#"{"product_id":"P2"}"#, r#""gift":null,"#),
        GOOD.replace("ID", "j-3"),
        attributed("j-4", r#"{"product_id":{"sku":"P3"}}"#, ""),
        attributed("j-5", &format!(r#"{{"product_id":"{long}"}}"#), ""),
    ];
    std::fs::write(&json_input, lines.join("\n") + "\n").unwrap();
    let (out, summary) = run_pipeline(&[guests::TALLY], |c| {
        c.source = file_source(&json_input);
        c.decode.attributes = attributes.clone();
    })
    .unwrap();
    assert_eq!(summary.events, 3);
    let seen = seen_attributes(out.path());
    assert_eq!(
        seen["j-1"],
        json!({"gift": "true", "order_id": "O-1", "product": "P1", "quantity": "3"})
    );
    assert_eq!(seen["j-2"], json!({"order_id": "O-1", "product": "P2"}));
    assert_eq!(seen["j-3"], json!({}));
    let letters = read_jsonl(&out.path().join("dead_letter.jsonl"));
    let reasons: Vec<(String, String)> = letters
        .iter()
        .map(|d| {
            let detail = d["detail"].as_str().unwrap_or_default();
            (
                d["reason"].as_str().unwrap().to_string(),
                detail.to_string(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, "wrong_type");
    assert!(
        reasons[0].1.contains("attribute product (item.product_id)"),
        "{reasons:?}"
    );
    assert_eq!(reasons[1].0, "field_too_long");
    assert!(
        reasons[1].1.starts_with("product is 300 bytes"),
        "{reasons:?}"
    );

    // CSV: an attribute is a column.
    let csv_input = dir.path().join("events.csv");
    std::fs::write(
        &csv_input,
        "transaction_id,customer_id,transaction_type,amount,created_at,order_id,sku\n\
         c-1,k1,purchase,12.50,2026-01-05T00:00:00Z,O-9,A7\n\
         c-2,k1,purchase,2.50,2026-01-05T00:00:01Z,O-9,\n",
    )
    .unwrap();
    let (out, _) = run_pipeline(&[guests::TALLY], |c| {
        c.source = file_source(&csv_input);
        c.decode.attributes = [("order_id", "order_id"), ("product", "sku")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    })
    .unwrap();
    let seen = seen_attributes(out.path());
    assert_eq!(seen["c-1"], json!({"order_id": "O-9", "product": "A7"}));
    assert_eq!(seen["c-2"], json!({"order_id": "O-9"}));

    // Debezium: attributes are read from the row, a NUMERIC column as its
    // exact decimal text.
    let change = json!({
        "schema": {"type": "struct", "fields": [{"field": "after", "type": "struct", "fields": [
            {"field": "unit_price", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}}
        ]}]},
        "payload": {
            "op": "c",
            "before": null,
            "after": {
                "transaction_id": "d-1", "customer_id": "k1", "transaction_type": "PURCHASE",
                "amount": "12.00", "created_at": "2026-01-05T00:00:00Z",
                "order_id": 41, "unit_price": "BLA="
            },
            "source": {"table": "order_items"},
            "ts_ms": 1767571200000i64
        }
    });
    let debezium_input = dir.path().join("changes.jsonl");
    std::fs::write(&debezium_input, format!("{change}\n")).unwrap();
    let (out, summary) = run_pipeline(&[guests::TALLY], |c| {
        c.source = file_source(&debezium_input);
        c.source.format = Some(edge::model::Format::Debezium);
        c.decode.attributes = [("order_id", "order_id"), ("unit_price", "unit_price")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    })
    .unwrap();
    assert_eq!(
        summary.events,
        1,
        "{:?}",
        read_jsonl(&out.path().join("dead_letter.jsonl"))
    );
    let seen = seen_attributes(out.path());
    // 0x04b0 = 1200, at scale 2.
    assert_eq!(
        seen["d-1"],
        json!({"order_id": "41", "unit_price": "12.00"})
    );
}

#[test]
fn windows_and_keyed_state_key_group_and_sum_by_attributes() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("items.jsonl");
    let item = |id: &str, order: &str, minute: u32, product: &str, quantity: &str, amount: &str| {
        format!(
            r#"{{"transaction_id":"{id}","customer_id":"c-{id}","transaction_type":"PURCHASE","amount":"{amount}","created_at":"2026-01-05T00:0{minute}:10Z","order_id":"{order}","item":{{"sku":"{product}","qty":{quantity}}}}}"#
        )
    };
    let lines = [
        item("i-1", "O-1", 0, "P1", "2", "20.00"),
        item("i-2", "O-2", 0, "P1", "1.5", "15.00"),
        item("i-3", "O-1", 0, "P2", "1", "9.99"),
        item("i-4", "O-3", 0, "P2", "\"several\"", "5.00"),
        item("i-5", "O-1", 1, "P2", "4", "40.00"),
        item("i-6", "O-2", 1, "P3", "1", "1.00"),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let mapped: BTreeMap<String, String> = [
        ("order", "order_id"),
        ("product", "item.sku"),
        ("quantity", "item.qty"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for workers in [1, 2, 4] {
        let (out, summary) = run_pipeline(&[guests::BASKET], |c| {
            c.source = file_source(&input);
            c.decode.attributes = mapped.clone();
            c.engine.workers = workers;
        })
        .unwrap();
        assert_eq!(summary.events, 6);
        let mut rows = read_jsonl(&out.path().join("baskets.jsonl"));
        rows.sort_by_key(|r| r["window_start"].as_str().unwrap().to_string());
        assert_eq!(rows.len(), 2, "{rows:#?}");
        // "several" is not a quantity: that item counts, and adds revenue,
        // but no quantity.
        assert_eq!(rows[0]["quantity"], json!({"P1": "3.5", "P2": "1"}));
        assert_eq!(rows[0]["revenue"], json!({"P1": "35.00", "P2": "14.99"}));
        assert_eq!(rows[0]["items"], json!({"P1": 2, "P2": 2}));
        assert_eq!(rows[1]["quantity"], json!({"P2": "4", "P3": "1"}));
        assert_eq!(rows[1]["items"], json!({"P2": 1, "P3": 1}));
        // Keyed state by the order: its lines numbered in arrival order,
        // whichever worker owns the order.
        let lines: BTreeMap<String, (String, i64)> =
            read_jsonl(&out.path().join("order_lines.jsonl"))
                .iter()
                .map(|r| {
                    let id = r["transaction_id"].as_str().unwrap().to_string();
                    let order = r["order_id"].as_str().unwrap().to_string();
                    (id, (order, r["line"].as_i64().unwrap()))
                })
                .collect();
        let want: BTreeMap<String, (String, i64)> = [
            ("i-1", "O-1", 1),
            ("i-2", "O-2", 1),
            ("i-3", "O-1", 2),
            ("i-4", "O-3", 1),
            ("i-5", "O-1", 3),
            ("i-6", "O-2", 2),
        ]
        .into_iter()
        .map(|(id, order, line)| (id.to_string(), (order.to_string(), line)))
        .collect();
        assert_eq!(lines, want, "{workers} workers");
        // Windows keyed by the order.
        let totals: BTreeMap<(String, String), (i64, String)> =
            read_jsonl(&out.path().join("order_totals.jsonl"))
                .iter()
                .map(|r| {
                    let key = (
                        r["order_id"].as_str().unwrap().to_string(),
                        r["window_start"].as_str().unwrap()[11..16].to_string(),
                    );
                    let amount = r["amount"].as_str().unwrap().to_string();
                    (key, (r["items"].as_i64().unwrap(), amount))
                })
                .collect();
        let key = |o: &str, t: &str| (o.to_string(), t.to_string());
        assert_eq!(totals.len(), 5, "{totals:?}");
        assert_eq!(totals[&key("O-1", "00:00")], (2, "29.99".into()));
        assert_eq!(totals[&key("O-1", "00:01")], (1, "40.00".into()));
        assert_eq!(totals[&key("O-2", "00:00")], (1, "15.00".into()));
        assert_eq!(totals[&key("O-2", "00:01")], (1, "1.00".into()));
        assert_eq!(totals[&key("O-3", "00:00")], (1, "5.00".into()));
    }
    // Without the attributes mapped, the rule set is refused at start,
    // naming what is missing and the fix.
    let error = run_pipeline(&[guests::BASKET], |c| {
        c.source = file_source(&input);
        c.decode.attributes = [("product".to_string(), "item.sku".to_string())].into();
    })
    .expect_err("refused")
    .to_string();
    assert!(
        error.contains(
            "rule set basket reads the attributes order, quantity which the source does not map"
        ) && error.contains("[decode.attributes]")
            && error.contains("mapped: product"),
        "{error}"
    );
}

#[test]
fn a_huge_line_is_not_read_into_memory_and_its_dead_letter_holds_its_first_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    // 50 MB on one line, between two good records.
    let huge = format!("{{\"transaction_id\":\"{}\"}}", "x".repeat(50_000_000));
    let text = [
        String::from_utf8(good("before")).unwrap(),
        huge.clone(),
        String::from_utf8(good("after")).unwrap(),
    ]
    .join("\n");
    std::fs::write(&input, text + "\n").unwrap();
    let (out, summary) =
        run_pipeline(&[guests::TALLY], |c| c.source = file_source(&input)).unwrap();
    assert_eq!(summary.events, 2);
    let letters_file = out.path().join("dead_letter.jsonl");
    let letters = read_jsonl(&letters_file);
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter["reason"], "oversized");
    assert_eq!(letter["position"], 2);
    let detail = letter["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "record is {} bytes; decode.max-record-bytes is 65536; it was not read into memory",
            huge.len()
        )),
        "{detail}"
    );
    assert!(letter["raw"].as_str().unwrap() == &huge[..65_536]);
    assert_eq!(letter["raw_bytes"], huge.len());
    assert_eq!(
        letter["raw_sha256"].as_str().unwrap(),
        sha256_hex(huge.as_bytes())
    );
    // The dead letter holds the first bytes, not the line.
    assert!(std::fs::metadata(&letters_file).unwrap().len() < 100_000);
}
