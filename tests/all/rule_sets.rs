//! Each rule set over a fixed input file gives exactly the expected rows and alerts.

use edge_tests::{file_source, fixture, guests, read_jsonl, run_pipeline};
use serde_json::{json, Value};

fn alerts_of(dir: &std::path::Path) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = read_jsonl(&dir.join("alerts.jsonl"))
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_string(),
                a["customer_id"].as_str().unwrap().to_string(),
                a["transaction_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn owned(v: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = v
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    v.sort();
    v
}

/// The rule set `name` over the realtime fixture, with `config`.
fn realtime(rule: &str, name: &str, config: &[(&str, &str)]) -> (tempfile::TempDir, u64) {
    let (dir, summary) = run_pipeline(&[rule], |c| {
        c.source = file_source(&fixture("realtime.jsonl"));
        let settings = &mut c.rules.rule.entry(name.to_string()).or_default().config;
        for (key, value) in config {
            settings.insert(key.to_string(), value.to_string());
        }
    })
    .unwrap();
    (dir, summary.events)
}

#[test]
fn fraud_raises_exactly_the_planted_alerts() {
    let (dir, events) = realtime(guests::FRAUD, "fraud", &[]);
    assert_eq!(events, 30);
    // f1-5 is four times F1's largest amount: not over the default factor.
    assert_eq!(
        alerts_of(dir.path()),
        owned(&[
            ("LOCATION_ANOMALY", "F1", "f1-6"),
            ("RAPID_ORDERS", "F2", "f2-5"),
            ("CARD_TESTING", "F3", "f3-2"),
            ("HIGH_AMOUNT", "A1", "a1-12"),
        ])
    );
    let alerts = read_jsonl(&dir.path().join("alerts.jsonl"));
    let rapid = alerts.iter().find(|a| a["kind"] == "RAPID_ORDERS").unwrap();
    assert!(rapid["_rule"].as_str().unwrap().starts_with("fraud@0.1.0+"));
    assert_eq!(rapid["severity"], "high");
    assert_eq!(rapid["event_time"], "2026-01-05T12:00:50.000Z");
    assert!(rapid["score"].as_f64().unwrap() > 0.5);

    // The reference's thresholds: three times the largest amount once five
    // transactions are known, a new country once three are.
    let reference = [
        ("high-amount-factor", "3"),
        ("high-amount-min-history", "5"),
        ("location-min-history", "3"),
    ];
    let (dir, _) = realtime(guests::FRAUD, "fraud", &reference);
    assert_eq!(
        alerts_of(dir.path()),
        owned(&[
            ("HIGH_AMOUNT", "F1", "f1-5"),
            ("LOCATION_ANOMALY", "F1", "f1-6"),
            ("RAPID_ORDERS", "F2", "f2-5"),
            ("CARD_TESTING", "F3", "f3-2"),
            ("HIGH_AMOUNT", "A1", "a1-12"),
        ])
    );
}

#[test]
fn anomaly_raises_exactly_the_planted_alerts() {
    // By default: a new device after ten transactions; A1's 100.00 after
    // twelve amounts is not yet judged (twenty are needed), and F2's six
    // quick 20.00 are RAPID_ORDERS', not twenty times what F2 spends in ten
    // minutes.
    let (dir, _) = realtime(guests::ANOMALY, "anomaly", &[]);
    assert_eq!(
        alerts_of(dir.path()),
        owned(&[("PATTERN_DEVIATION", "A1", "a1-13")])
    );
    // The reference's thresholds.
    let reference = [
        ("outlier-z", "3"),
        ("outlier-both-sides", "1"),
        ("outlier-min-history", "10"),
        ("velocity-factor", "5"),
        ("velocity-min-count", "3"),
        ("velocity-pace", "0"),
    ];
    let (dir, _) = realtime(guests::ANOMALY, "anomaly", &reference);
    assert_eq!(
        alerts_of(dir.path()),
        owned(&[
            ("VELOCITY_ANOMALY", "F2", "f2-5"),
            ("STATISTICAL_OUTLIER", "A1", "a1-12"),
            ("PATTERN_DEVIATION", "A1", "a1-13"),
        ])
    );
}

fn by_key(rows: &[Value], key: &str, start: &str) -> Value {
    rows.iter()
        .find(|r| {
            (r["customer_id"] == key || r["merchant_id"] == key) && r["window_start"] == start
        })
        .unwrap_or_else(|| panic!("no row for {key} at {start} in {rows:#?}"))
        .clone()
}

#[test]
fn compliance_rows_per_customer_and_30_minute_window() {
    let (dir, _) = run_pipeline(&[guests::COMPLIANCE], |c| {
        c.source = file_source(&fixture("compliance.jsonl"))
    })
    .unwrap();
    let rows = read_jsonl(&dir.path().join("compliance_metrics.jsonl"));
    assert_eq!(rows.len(), 3);
    let c1 = by_key(&rows, "C1", "2026-01-05T00:00:00.000Z");
    assert_eq!(c1["window_end"], "2026-01-05T00:30:00.000Z");
    assert_eq!(c1["transaction_count"], 4);
    assert_eq!(c1["total_amount"], "21570.00");
    assert_eq!(c1["high_value_count"], 1);
    assert_eq!(c1["structuring_count"], 1);
    assert_eq!(c1["high_risk_count"], 0);
    assert_eq!(c1["sanctions_count"], 0);
    assert_eq!(c1["flagged_count"], 2);
    assert_eq!(c1["flagged_transaction_ids"], json!(["c1-0", "c1-1"]));
    assert_eq!(c1["violation_amount"], "21500.00");
    // Scores on the reference's 0 to 100 scale, graded as it grades them
    // (50 MEDIUM, 20 LOW, 90 CRITICAL; no score UNKNOWN).
    assert_eq!(
        c1["risk_distribution"],
        json!({"CRITICAL": 1, "LOW": 1, "MEDIUM": 1, "UNKNOWN": 1})
    );
    assert_eq!(c1["compliance_score"], 0.5);
    assert_eq!(c1["requires_review"], true);
    let c2 = by_key(&rows, "C2", "2026-01-05T00:00:00.000Z");
    // The record's own risk_level is read before its score.
    assert_eq!(c2["risk_distribution"], json!({"HIGH": 1}));
    assert_eq!(c2["compliance_score"], 1.0);
    assert_eq!(c2["requires_review"], false);
    let later = by_key(&rows, "C1", "2026-01-05T00:30:00.000Z");
    assert_eq!(later["sanctions_count"], 1);
    assert_eq!(later["requires_review"], true);
}

#[test]
fn merchant_rows_with_exact_revenue_and_half_up_average() {
    let (dir, _) = run_pipeline(&[guests::MERCHANT], |c| {
        c.source = file_source(&fixture("merchant.jsonl"));
        c.dimensions.merchants = Some(fixture("merchants.jsonl"));
    })
    .unwrap();
    let rows = read_jsonl(&dir.path().join("merchant_metrics.jsonl"));
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let m1 = by_key(&rows, "M1", "2026-01-05T00:00:00.000Z");
    assert_eq!(m1["revenue"], "1150.11");
    assert_eq!(m1["transaction_count"], 4);
    assert_eq!(m1["average_value"], "287.53");
    assert_eq!(m1["min_amount"], "0.01");
    assert_eq!(m1["max_amount"], "1000.00");
    assert_eq!(m1["unique_customers"], 3);
    assert_eq!(m1["repeat_customers"], 1);
    assert_eq!(m1["retention"], 0.3333);
    assert_eq!(m1["merchant_name"], "Corner Grocer");
    assert_eq!(m1["category"], "grocery");
    let counts = json!({"<10": 1, "10-50": 0, "50-100": 1, "100-500": 1, "500-1000": 0, "1000-5000": 1, ">=5000": 0});
    assert_eq!(m1["amount_ranges"], counts);
    assert_eq!(m1["amount_range_counts"], counts);
    // The amounts 100.00, 50.10, 0.01 and 1000.00, each added to its band.
    let totals = json!({"<10": "0.01", "10-50": "0", "50-100": "50.10", "100-500": "100.00", "500-1000": "0", "1000-5000": "1000.00", ">=5000": "0"});
    assert_eq!(m1["amount_range_totals"], totals);
    assert_eq!(m1["locations"], json!({"New York": 3, "Chicago": 1}));
    let m2 = by_key(&rows, "M2", "2026-01-05T00:00:00.000Z");
    assert_eq!(m2["revenue"], "0.05");
    assert_eq!(
        m2["average_value"], "0.03",
        "0.025 rounds half-up, not to even"
    );
    let next = by_key(&rows, "M1", "2026-01-05T00:10:00.000Z");
    assert_eq!(next["revenue"], "20.00");
    assert_eq!(next["window_end"], "2026-01-05T00:20:00.000Z");
    // Ids are deterministic: the same input gives the same ids.
    let (again, _) = run_pipeline(&[guests::MERCHANT], |c| {
        c.source = file_source(&fixture("merchant.jsonl"))
    })
    .unwrap();
    let ids = |rows: &[Value]| rows.iter().map(|r| r["_id"].clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&rows),
        ids(&read_jsonl(&again.path().join("merchant_metrics.jsonl")))
    );
    // The reference's amount ranges: the sums.
    let (sums, _) = run_pipeline(&[guests::MERCHANT], |c| {
        c.source = file_source(&fixture("merchant.jsonl"));
        let merchant = c.rules.rule.entry("merchant".into()).or_default();
        merchant
            .config
            .insert("amount-ranges-as-sums".into(), "1".into());
    })
    .unwrap();
    let rows = read_jsonl(&sums.path().join("merchant_metrics.jsonl"));
    let m1 = by_key(&rows, "M1", "2026-01-05T00:00:00.000Z");
    assert_eq!(m1["amount_ranges"], totals);
    assert_eq!(m1["amount_range_counts"], counts);
}

#[test]
fn lifecycle_enriches_with_customer_and_merchant_dimensions() {
    let (dir, _) = run_pipeline(&[guests::LIFECYCLE], |c| {
        c.source = file_source(&fixture("lifecycle.jsonl"));
        c.dimensions.customers = Some(fixture("customers.jsonl"));
        c.dimensions.merchants = Some(fixture("merchants.jsonl"));
    })
    .unwrap();
    let rows = read_jsonl(&dir.path().join("customer_lifecycle.jsonl"));
    assert_eq!(rows.len(), 3);
    let l1 = by_key(&rows, "L1", "2026-01-05T00:00:00.000Z");
    assert_eq!(l1["window_end"], "2026-01-05T00:15:00.000Z");
    assert_eq!(l1["tier"], "VIP");
    assert_eq!(l1["segment"], "families");
    assert_eq!(l1["transaction_count"], 6);
    assert_eq!(l1["total_spend"], "210.00");
    assert_eq!(l1["channel_usage"], json!({"web": 5, "mobile": 1}));
    assert_eq!(
        l1["spending_by_category"],
        json!({"electronics": "130.00", "grocery": "80.00"})
    );
    assert_eq!(l1["location_consistency"], 0.8333);
    assert_eq!(l1["device_consistency"], 1.0);
    assert_eq!(l1["lifecycle_stage"], "ACTIVE");
    assert_eq!(l1["lifetime_transactions"], 6);
    let l2 = by_key(&rows, "L2", "2026-01-05T00:00:00.000Z");
    assert_eq!(l2["tier"], "BASIC");
    assert_eq!(l2["lifecycle_stage"], "NEW");
    let l3 = by_key(&rows, "L3", "2026-01-05T00:00:00.000Z");
    assert_eq!(l3["tier"], "UNKNOWN", "a lookup miss returns none");
    assert_eq!(l3["spending_by_category"], json!({"unknown": "5.00"}));
}

#[test]
fn lifecycle_carries_lifetime_totals_from_window_to_window() {
    // L1 buys in three successive windows, L2 in the first and the third.
    // The file fits one batch, so all windows fire together at its end and
    // one call holds several windows of a key: each must see the totals the
    // one before left. The same with the state read through host calls.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let mut lines = Vec::new();
    for (n, (customer, minute, amount)) in [
        ("L1", 0, "10.00"),
        ("L1", 5, "20.00"),
        ("L2", 6, "7.50"),
        ("L1", 16, "30.00"),
        ("L1", 31, "40.00"),
        ("L1", 32, "1.25"),
        ("L2", 40, "2.50"),
    ]
    .into_iter()
    .enumerate()
    {
        lines.push(format!(
            r#"{{"transaction_id":"t-{n}","customer_id":"{customer}","merchant_id":"M1","transaction_type":"PURCHASE","status":"COMPLETED","amount":"{amount}","currency":"USD","created_at":"2026-01-05T00:{minute:02}:00Z"}}"#
        ));
    }
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    for guest in [guests::LIFECYCLE, guests::LIFECYCLE_HOST_STATE] {
        let (out, _) = run_pipeline(&[guest], |c| c.source = file_source(&input)).unwrap();
        let rows = read_jsonl(&out.path().join("customer_lifecycle.jsonl"));
        let totals = |customer: &str| {
            let mut t: Vec<(String, i64, String)> = rows
                .iter()
                .filter(|r| r["customer_id"] == customer)
                .map(|r| {
                    (
                        r["window_start"].as_str().unwrap()[11..16].to_string(),
                        r["lifetime_transactions"].as_i64().unwrap(),
                        r["lifetime_spend"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            t.sort();
            t
        };
        let row = |start: &str, n: i64, spend: &str| (start.to_string(), n, spend.to_string());
        assert_eq!(
            totals("L1"),
            [
                row("00:00", 2, "30.00"),
                row("00:15", 3, "60.00"),
                row("00:30", 5, "101.25")
            ],
            "{guest}"
        );
        assert_eq!(
            totals("L2"),
            [row("00:00", 1, "7.50"), row("00:30", 2, "10.00")],
            "{guest}"
        );
    }
}

#[test]
fn rule_sets_running_together_see_the_same_events_as_alone() {
    let input = fixture("realtime.jsonl");
    let (together, _) =
        run_pipeline(&guests::RULE_SETS, |c| c.source = file_source(&input)).unwrap();
    let mut alone = Vec::new();
    for guest in [guests::FRAUD, guests::ANOMALY] {
        let (dir, _) = run_pipeline(&[guest], |c| c.source = file_source(&input)).unwrap();
        alone.extend(alerts_of(dir.path()));
    }
    alone.sort();
    assert_eq!(alerts_of(together.path()), alone);
    let rows = read_jsonl(&together.path().join("compliance_metrics.jsonl"));
    let flagged: Vec<&Value> = rows.iter().filter(|r| r["flagged_count"] != 0).collect();
    assert!(flagged.is_empty(), "no flags in this input: {flagged:?}");
}

#[test]
fn alerts_do_not_depend_on_how_events_are_batched() {
    // Generated traffic with planted fraud; keyed state carries running
    // means, velocities and last locations from batch to batch.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    edge_tests::gen_events(&input, 3_000, 9);
    let run = |batch: usize| {
        let (out, _) = run_pipeline(&[guests::FRAUD, guests::ANOMALY], |c| {
            c.source = file_source(&input);
            c.engine.batch_size = batch;
        })
        .unwrap();
        alerts_of(out.path())
    };
    let whole = run(1024);
    assert!(!whole.is_empty());
    assert_eq!(run(1), whole);
    assert_eq!(run(37), whole);
}

/// The rows of `table` in `dir` whose `column` is `key`, by window start
/// (hour and minute).
fn rows_of(dir: &std::path::Path, table: &str, column: &str) -> Vec<(String, String, Value)> {
    let mut rows: Vec<(String, String, Value)> = read_jsonl(&dir.join(format!("{table}.jsonl")))
        .into_iter()
        .map(|r| {
            let key = match &r[column] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (
                key,
                r["window_start"].as_str().unwrap()[11..16].to_string(),
                r,
            )
        })
        .collect();
    rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    rows
}

fn row_at<'a>(rows: &'a [(String, String, Value)], key: &str, start: &str) -> &'a Value {
    &(rows.iter().find(|(k, s, _)| k == key && s == start))
        .unwrap_or_else(|| panic!("no row for {key} at {start} in {rows:#?}"))
        .2
}

/// The rule sets of the reference's other tables, with compliance and
/// lifecycle, over seven events: two customers' minute at
/// 09:00 (a failed purchase, a wire transfer with two flags, a deposit in
/// GBP), two events at 12:30 and 12:40 (one without a location).
fn dashboards(config: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let mut rules = guests::DASHBOARDS.to_vec();
    rules.extend([guests::COMPLIANCE, guests::LIFECYCLE]);
    let (dir, summary) = run_pipeline(&rules, |c| {
        c.source = file_source(&fixture("dashboards.jsonl"));
        c.dimensions.merchants = Some(fixture("merchants.jsonl"));
        for (rule, key, value) in config {
            let settings = &mut c.rules.rule.entry(rule.to_string()).or_default().config;
            settings.insert(key.to_string(), value.to_string());
        }
    })
    .unwrap();
    assert_eq!(summary.events, 7);
    dir
}

#[test]
fn transaction_dashboard_and_time_pattern_metrics_as_the_reference_computes_them() {
    let dir = dashboards(&[]);
    let per_customer = rows_of(dir.path(), "transaction_metrics", "customer_id");
    assert_eq!(per_customer.len(), 4, "{per_customer:#?}");
    let c1 = row_at(&per_customer, "C1", "09:00");
    assert_eq!(c1["window_end"], "2026-01-05T09:05:00.000Z");
    assert_eq!(c1["transaction_count"], 3);
    assert_eq!(c1["total_amount"], "12150.05");
    assert_eq!(c1["average_amount"], "4050.02");
    assert_eq!(c1["total_fees"], "26.50");
    assert_eq!(
        c1["type_distribution"],
        json!({"PURCHASE": 2, "WIRE_TRANSFER": 1})
    );
    let c2 = row_at(&per_customer, "C2", "09:00");
    assert_eq!(c2["average_amount"], "5.01", "10.01 / 2 rounds half-up");
    assert_eq!(
        c2["type_distribution"],
        json!({"PURCHASE": 1, "DEPOSIT": 1})
    );

    let per_type = rows_of(dir.path(), "dashboard_metrics", "transaction_type");
    assert_eq!(per_type.len(), 5, "{per_type:#?}");
    let purchases = row_at(&per_type, "PURCHASE", "09:00");
    assert_eq!(purchases["window_end"], "2026-01-05T09:01:00.000Z");
    assert_eq!(purchases["transaction_count"], 3);
    assert_eq!(purchases["total_amount"], "160.05");
    assert_eq!(purchases["average_amount"], "53.35");
    assert_eq!(purchases["total_fees"], "1.60");
    assert_eq!(purchases["success_rate"], 0.6667);
    assert_eq!(
        purchases["status_distribution"],
        json!({"COMPLETED": 2, "FAILED": 1})
    );
    assert_eq!(purchases["risk_distribution"], json!({"LOW": 2, "HIGH": 1}));
    let deposit = row_at(&per_type, "DEPOSIT", "09:01");
    assert_eq!(deposit["success_rate"], 0.0);
    assert_eq!(deposit["status_distribution"], json!({"PENDING": 1}));
    assert_eq!(deposit["risk_distribution"], json!({"UNKNOWN": 1}));
    assert_eq!(
        row_at(&per_type, "WIRE_TRANSFER", "09:00")["success_rate"],
        1.0
    );
    row_at(&per_type, "PURCHASE", "12:30");
    row_at(&per_type, "REFUND", "12:40");

    let per_hour = rows_of(dir.path(), "time_pattern_metrics", "hour_of_day");
    assert_eq!(per_hour.len(), 2, "{per_hour:#?}");
    let nine = row_at(&per_hour, "9", "09:00");
    assert_eq!(nine["window_end"], "2026-01-05T10:00:00.000Z");
    assert_eq!(nine["transaction_count"], 5);
    assert_eq!(
        nine["spending_by_type"],
        json!({"WIRE_TRANSFER": "12000.00", "PURCHASE": "160.05", "DEPOSIT": "0.01"})
    );
    assert_eq!(nine["active_customers"], 2);
    assert_eq!(nine["transactions_per_customer"], 2.5);
    assert_eq!(nine["peak_period"], "MORNING_PEAK");
    let noon = row_at(&per_hour, "12", "12:00");
    assert_eq!(noon["transaction_count"], 2);
    assert_eq!(noon["peak_period"], "LUNCH_PEAK");
}

#[test]
fn risk_analytics_and_geographic_metrics_per_window() {
    let dir = dashboards(&[]);
    let risk = rows_of(dir.path(), "risk_analytics", "customer_id");
    assert_eq!(risk.len(), 4, "{risk:#?}");
    let c1 = row_at(&risk, "C1", "09:00");
    assert_eq!(c1["window_end"], "2026-01-05T09:10:00.000Z");
    assert_eq!(c1["total_exposure"], "12150.05");
    assert_eq!(c1["high_risk_count"], 2, "one HIGH, one CRITICAL");
    assert_eq!(
        c1["compliance_violations"],
        json!(["HIGH_RISK", "HIGH_VALUE", "SANCTIONS_CHECK_REQUIRED"])
    );
    assert_eq!(c1["average_risk_score"], 0.6);
    assert_eq!(
        c1["risk_factors"],
        json!([
            "HIGH_RISK_TRANSACTIONS",
            "COMPLIANCE_VIOLATIONS",
            "WIRE_TRANSFERS"
        ])
    );
    // 0.4 x 0.6 + 0.3 x 2/3 + 3 x 0.06
    assert_eq!(c1["risk_score"], 0.62);
    assert_eq!(c1["risk_level"], "HIGH");
    let c2 = row_at(&risk, "C2", "09:00");
    assert_eq!(c2["average_risk_score"], 0.1, "the deposit has no score");
    assert_eq!(c2["risk_factors"], json!([]));
    assert_eq!(c2["risk_score"], 0.04);
    assert_eq!(c2["risk_level"], "LOW");
    // A lower exposure limit adds a factor.
    let dir = dashboards(&[("risk", "high-exposure", "10000")]);
    let c1 = rows_of(dir.path(), "risk_analytics", "customer_id");
    let c1 = row_at(&c1, "C1", "09:00");
    assert_eq!(c1["risk_factors"][0], "HIGH_EXPOSURE");
    assert_eq!(c1["risk_score"], 0.68);

    let geo = rows_of(dir.path(), "geographic_metrics", "country");
    assert_eq!(
        geo.len(),
        3,
        "the event without a location is in none: {geo:#?}"
    );
    let us = row_at(&geo, "US", "09:00");
    assert_eq!(us["window_end"], "2026-01-05T09:05:00.000Z");
    assert_eq!(us["transaction_count"], 3);
    assert_eq!(us["total_amount"], "12150.05");
    assert_eq!(us["unique_customers"], 1);
    assert_eq!(us["city_counts"], json!({"New York": 2, "Chicago": 1}));
    assert_eq!(
        us["city_spending"],
        json!({"Chicago": "12000.00", "New York": "150.05"})
    );
    assert_eq!(
        us["merchant_categories"],
        json!({"electronics": 1, "grocery": 1, "none": 1})
    );
    assert_eq!(us["currencies"], json!({"USD": 3}));
    let gb = row_at(&geo, "GB", "09:00");
    assert_eq!(
        gb["merchant_categories"],
        json!({"grocery": 1, "unknown": 1}),
        "M9 is not in the merchant dimension"
    );
    assert_eq!(gb["currencies"], json!({"GBP": 2}));
    assert_eq!(row_at(&geo, "US", "12:30")["transaction_count"], 1);

    // 5-second windows over everything: one event in each here.
    let stats = read_jsonl(&dir.path().join("risk_stats.jsonl"));
    assert_eq!(stats.len(), 7, "{stats:#?}");
    let wire = (stats.iter())
        .find(|r| r["window_start"] == "2026-01-05T09:00:30.000Z")
        .unwrap();
    assert_eq!(wire["window_end"], "2026-01-05T09:00:35.000Z");
    assert_eq!(wire["total_amount"], "12000.00");
    assert_eq!(wire["high_risk_count"], 1);
    assert_eq!(wire["flagged_count"], 1);
    assert_eq!(wire["average_risk_score"], 0.9);
}

#[test]
fn daily_aggregates_per_merchant_and_overall() {
    let dir = dashboards(&[]);
    let merchants = rows_of(dir.path(), "daily_merchant_metrics", "merchant_id");
    assert_eq!(merchants.len(), 3, "{merchants:#?}");
    let m1 = row_at(&merchants, "M1", "00:00");
    assert_eq!(m1["window_start"], "2026-01-05T00:00:00.000Z");
    assert_eq!(m1["window_end"], "2026-01-06T00:00:00.000Z");
    assert_eq!(m1["transaction_count"], 3);
    assert_eq!(m1["success_count"], 3);
    assert_eq!(m1["success_rate"], 1.0);
    assert_eq!(m1["total_volume"], "130.00");
    assert_eq!(m1["average_amount"], "43.33");
    assert_eq!(m1["unique_customers"], 2);
    let m2 = row_at(&merchants, "M2", "00:00");
    assert_eq!(m2["failure_count"], 1);
    assert_eq!(m2["failure_rate"], 1.0);
    assert_eq!(m2["success_volume"], "0");
    let pending = row_at(&merchants, "M9", "00:00");
    assert_eq!(
        (
            pending["success_rate"].clone(),
            pending["failure_rate"].clone()
        ),
        (json!(0.0), json!(0.0))
    );

    let days = read_jsonl(&dir.path().join("daily_metrics.jsonl"));
    assert_eq!(days.len(), 1, "{days:#?}");
    let day = &days[0];
    assert_eq!(day["transaction_count"], 7);
    assert_eq!(day["success_count"], 5);
    assert_eq!(day["failure_count"], 1);
    assert_eq!(day["success_rate"], 0.7143);
    assert_eq!(day["failure_rate"], 0.1429);
    assert_eq!(day["total_volume"], "12185.06");
    assert_eq!(day["success_volume"], "12135.00");
    assert_eq!(day["average_amount"], "1740.72");
    assert_eq!(day["unique_customers"], 3);
    assert_eq!(day["active_merchants"], 3);
}

#[test]
fn compliance_counts_every_flag_and_lifecycle_grades_spending() {
    let dir = dashboards(&[]);
    let compliance = rows_of(dir.path(), "compliance_metrics", "customer_id");
    let c1 = row_at(&compliance, "C1", "09:00");
    assert_eq!(
        c1["flag_counts"],
        json!({"HIGH_RISK": 1, "HIGH_VALUE": 1, "SANCTIONS_CHECK_REQUIRED": 1})
    );
    assert_eq!(
        c1["violation_amount"], "12050.05",
        "each flagged amount once"
    );
    assert_eq!(
        c1["violation_amounts"],
        json!({"HIGH_VALUE": "12000.00", "SANCTIONS_CHECK_REQUIRED": "12000.00", "HIGH_RISK": "50.05"})
    );
    let lifecycle = rows_of(dir.path(), "customer_lifecycle", "customer_id");
    assert_eq!(
        row_at(&lifecycle, "C1", "09:00")["spending_pattern"],
        "HIGH_SPENDER"
    );
    assert_eq!(
        row_at(&lifecycle, "C2", "09:00")["spending_pattern"],
        "LOW_SPENDER"
    );
    assert_eq!(
        row_at(&lifecycle, "C1", "12:30")["spending_pattern"],
        "LOW_SPENDER"
    );

    // The reference's way: the amount once per flag; and other bands.
    let dir = dashboards(&[
        ("compliance", "violation-amount-per-flag", "1"),
        ("lifecycle", "moderate-spender", "10"),
    ]);
    let compliance = rows_of(dir.path(), "compliance_metrics", "customer_id");
    assert_eq!(
        row_at(&compliance, "C1", "09:00")["violation_amount"],
        "24050.05"
    );
    let lifecycle = rows_of(dir.path(), "customer_lifecycle", "customer_id");
    assert_eq!(
        row_at(&lifecycle, "C1", "12:30")["spending_pattern"],
        "MODERATE_SPENDER"
    );
}

#[test]
fn first_match_gives_each_transaction_one_alert_as_the_reference_does() {
    // Generated traffic with much planted fraud, the reference's thresholds:
    // far locations are often also high amounts.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    edge_tests::gen_events(&input, 20_000, 3);
    let reference = [
        ("high-amount-factor", "3"),
        ("high-amount-min-history", "5"),
        ("location-min-history", "3"),
        ("time-gap-hours", "1"),
    ];
    let run = |first_match: &str| {
        let (out, _) = run_pipeline(&[guests::FRAUD], |c| {
            c.source = file_source(&input);
            let settings = &mut c.rules.rule.entry("fraud".into()).or_default().config;
            for (key, value) in reference {
                settings.insert(key.into(), value.into());
            }
            settings.insert("first-match".into(), first_match.into());
        })
        .unwrap();
        alerts_of(out.path())
    };
    let (all, first) = (run("0"), run("1"));
    let per_transaction = |alerts: &[(String, String, String)]| {
        let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (kind, _, id) in alerts {
            by.entry(id.clone()).or_default().push(kind.clone());
        }
        by
    };
    let (all_by, first_by) = (per_transaction(&all), per_transaction(&first));
    assert!(
        all_by.values().any(|kinds| kinds.len() > 1),
        "some transaction matches several rules"
    );
    assert_eq!(
        first_by.keys().collect::<Vec<_>>(),
        all_by.keys().collect::<Vec<_>>(),
        "the same transactions are alerted"
    );
    let order = [
        "HIGH_AMOUNT",
        "FREQUENCY_ANOMALY",
        "LOCATION_ANOMALY",
        "TIME_ANOMALY",
    ];
    for (id, kinds) in &first_by {
        assert_eq!(kinds.len(), 1, "{id}: {kinds:?}");
        let rank = |k: &String| order.iter().position(|o| o == k).unwrap_or(order.len());
        let best = all_by[id].iter().min_by_key(|k| rank(k)).unwrap();
        assert_eq!(&kinds[0], best, "{id}: of {:?}", all_by[id]);
    }
}
