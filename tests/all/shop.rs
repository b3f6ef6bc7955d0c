//! The e-commerce reference's tables as Debezium captures them (`orders`
//! and `order_items`, NUMERIC columns as base64 with the scale in the
//! schema), read through `[decode.tables]` into events with attributes.

use edge_tests::{file_source, guests, read_jsonl, run_pipeline};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A NUMERIC value of `units` hundredths as Debezium's `precise` mode
/// sends it (base64 of the unscaled value's bytes).
fn precise(units: i64) -> String {
    edge::decode::debezium::encode_precise(rust_decimal::Decimal::new(units, 2))
}

/// A Debezium create event of `table` with `row`, its `numeric` columns
/// NUMERIC with scale 2.
fn change(table: &str, row: Value, numeric: &[&str]) -> String {
    let fields: Vec<Value> = numeric
        .iter()
        .map(|c| json!({"field": c, "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}}))
        .collect();
    json!({
        "schema": {"type": "struct", "fields": [
            {"field": "before", "type": "struct", "optional": true, "fields": fields.clone()},
            {"field": "after", "type": "struct", "optional": true, "fields": fields},
        ]},
        "payload": {
            "before": null,
            "after": row,
            "source": {"connector": "postgresql", "db": "shop", "schema": "public", "table": table},
            "op": "c",
            "ts_ms": 1_767_571_200_000i64
        }
    })
    .to_string()
}

fn order(id: i64, customer: &str, total_cents: i64, minute: u32) -> String {
    let row = json!({
        "id": id, "customer_id": customer, "status": "COMPLETED",
        "total_amount": precise(total_cents),
        "created_at": format!("2026-01-05T00:0{minute}:00Z"),
    });
    change("orders", row, &["total_amount"])
}

fn item(
    id: i64,
    order: i64,
    product: &str,
    quantity: i64,
    price_cents: i64,
    minute: u32,
) -> String {
    let category = if product == "P2" { "books" } else { "toys" };
    let row = json!({
        "id": id, "order_id": order, "product_id": product, "quantity": quantity,
        "category": category,
        "unit_price": precise(price_cents),
        "created_at": format!("2026-01-05T00:0{minute}:05Z"),
    });
    change("order_items", row, &["unit_price"])
}

/// `[decode.tables]` for the two tables, as `examples/shop.toml` has it.
fn shop_decode(c: &mut edge::config::Config) {
    let shop = edge_tests::root().join("examples/shop.toml");
    let config = edge::app::load_config(Some(&shop)).unwrap();
    c.decode = config.decode;
    c.source.format = Some(edge::model::Format::Debezium);
    // The rule sets' settings, for those that are loaded.
    for (name, rule) in config.rules.rule {
        if c.rules
            .paths
            .iter()
            .any(|p| p.contains(&format!("{name}.wasm")))
        {
            c.rules.rule.insert(name, rule);
        }
    }
}

#[test]
fn orders_and_order_items_read_with_each_table_s_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("shop.jsonl");
    let lines = [
        order(1, "K1", 4_550, 0),
        item(1, 1, "P1", 2, 1_000, 0),
        item(2, 1, "P2", 1, 2_550, 0),
        order(2, "K2", 1_999, 1),
        item(3, 2, "P1", 1, 1_999, 1),
        // A line whose quantity is not a number, and one with none.
        item(4, 2, "P3", 0, 100, 1).replace("\"quantity\":0", "\"quantity\":\"two\""),
        item(5, 2, "P3", 0, 100, 1).replace("\"quantity\":0,", ""),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (out, summary) = run_pipeline(&[guests::TALLY, guests::BASKET], |c| {
        c.source = file_source(&input);
        shop_decode(c);
    })
    .unwrap();
    assert_eq!(summary.events, 5);
    let seen: BTreeMap<String, Value> = read_jsonl(&out.path().join("seen.jsonl"))
        .into_iter()
        .map(|r| (r["transaction_id"].as_str().unwrap().to_string(), r))
        .collect();
    // Orders keep their ids and amounts; a line's id is prefixed, so order
    // 1 and line 1 both count, and its amount is price times quantity.
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["1", "2", "item-1", "item-2", "item-3"]
    );
    assert_eq!(seen["1"]["amount"], "45.50");
    assert_eq!(seen["1"]["customer_id"], "K1");
    assert_eq!(seen["1"]["attributes"], json!({"order": "1"}));
    assert_eq!(seen["item-1"]["amount"], "20.00");
    assert_eq!(seen["item-1"]["customer_id"], "unassigned");
    assert_eq!(
        seen["item-1"]["attributes"],
        json!({"order": "1", "product": "P1", "quantity": "2", "category": "toys"})
    );
    // Lines numbered per order, the order first.
    let lines: BTreeMap<String, i64> = read_jsonl(&out.path().join("order_lines.jsonl"))
        .iter()
        .map(|r| {
            let id = r["transaction_id"].as_str().unwrap().to_string();
            (id, r["line"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(lines["1"], 1);
    assert_eq!(lines["item-2"], 3);
    assert_eq!(lines["item-3"], 2);
    // Quantity and revenue per product, from the lines only.
    let mut baskets = read_jsonl(&out.path().join("baskets.jsonl"));
    baskets.sort_by_key(|r| r["window_start"].as_str().unwrap().to_string());
    assert_eq!(baskets[0]["quantity"], json!({"P1": "2", "P2": "1"}));
    assert_eq!(baskets[0]["revenue"], json!({"P1": "20.00", "P2": "25.50"}));
    assert_eq!(baskets[1]["revenue"], json!({"P1": "19.99"}));
    // The two bad lines are dead letters naming the column.
    let letters = read_jsonl(&out.path().join("dead_letter.jsonl"));
    let reasons: Vec<(&str, &str)> = letters
        .iter()
        .map(|d| (d["reason"].as_str().unwrap(), d["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "invalid_amount",
                "quantity (the amount's multiplier) is not a decimal number"
            ),
            (
                "missing_field",
                "quantity (the amount's multiplier) is missing"
            ),
        ]
    );
}

#[test]
fn tables_are_refused_where_they_cannot_apply() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("shop.jsonl");
    std::fs::write(&input, order(1, "K1", 100, 0) + "\n").unwrap();
    let error = run_pipeline(&[guests::TALLY], |c| {
        c.source = file_source(&input);
        shop_decode(c);
        c.source.format = Some(edge::model::Format::Json);
    })
    .expect_err("refused")
    .to_string();
    assert!(
        error.contains("decode.tables reads the tables of Debezium change events"),
        "{error}"
    );
    let error = run_pipeline(&[guests::TALLY], |c| {
        c.source = file_source(&input);
        shop_decode(c);
        let orders = c.decode.tables.get_mut("orders").unwrap();
        orders.values.insert("colour".into(), "red".into());
    })
    .expect_err("refused")
    .to_string();
    assert!(
        error.contains("decode.tables.orders.values: unknown field \"colour\""),
        "{error}"
    );
}

/// The orders and lines of the e-commerce tests: two customers, one of
/// them ordering seven times within a minute; a line whose order never
/// comes.
fn shop_input(dir: &std::path::Path) -> std::path::PathBuf {
    let input = dir.join("shop.jsonl");
    let mut lines = vec![
        // 00:00: order 1 (K1, 45.50): 2 x P1 at 10.00, 1 x P2 at 25.50.
        order(1, "K1", 4_550, 0),
        item(1, 1, "P1", 2, 1_000, 0),
        item(2, 1, "P2", 1, 2_550, 0),
        // 00:01: order 2 (K2, 1500.00, above 1000): 3 x P3 at 500.00.
        order(2, "K2", 150_000, 1),
        item(3, 2, "P3", 3, 50_000, 1),
        // A line of order 99, which never comes.
        item(4, 99, "P1", 1, 1_000, 1),
    ];
    // 00:02..00:03: K3 orders seven times within a minute, 10.00 each.
    for n in 0..7 {
        let row = json!({
            "id": 10 + n, "customer_id": "K3", "status": "PENDING",
            "total_amount": precise(1_000),
            "created_at": format!("2026-01-05T00:02:{:02}Z", 5 * n),
        });
        lines.push(change("orders", row, &["total_amount"]));
    }
    // 00:05: one more order, for the trend of the one-minute windows.
    lines.push(order(30, "K1", 9_000, 5));
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    input
}

fn by(rows: &[Value], key: &[&str]) -> BTreeMap<String, Value> {
    rows.iter()
        .map(|r| {
            let k: Vec<String> = key
                .iter()
                .map(|k| match &r[*k] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            (k.join("|"), r.clone())
        })
        .collect()
}

#[test]
fn orders_alert_and_sales_give_revenue_top_products_categories_and_joined_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = shop_input(dir.path());
    for workers in [1, 2] {
        let (out, summary) = run_pipeline(&guests::SHOP, |c| {
            c.source = file_source(&input);
            c.engine.workers = workers;
            shop_decode(c);
        })
        .unwrap();
        assert_eq!(summary.events, 14);
        let out = out.path();

        // Alerts: order 2 above 1000; K3's sixth and seventh orders.
        let mut alerts: Vec<String> = read_jsonl(&out.join("alerts.jsonl"))
            .iter()
            .map(|a| {
                format!(
                    "{} {}",
                    a["kind"].as_str().unwrap(),
                    a["transaction_id"].as_str().unwrap()
                )
            })
            .collect();
        alerts.sort();
        assert_eq!(
            alerts,
            ["HIGH_VALUE_ORDER 2", "RAPID_ORDERS 15", "RAPID_ORDERS 16"],
            "{workers} workers"
        );

        // Revenue per minute with orders, and the trend.
        let revenue = by(
            &read_jsonl(&out.join("revenue_stats.jsonl")),
            &["window_size", "window_start"],
        );
        let minute = |m: u32| revenue[&format!("1m|2026-01-05T00:0{m}:00.000Z")].clone();
        assert_eq!(minute(0)["revenue"], "45.50");
        assert_eq!(minute(0)["orders"], 1);
        assert_eq!(minute(0)["trend"], "FIRST");
        assert_eq!(minute(0)["previous_revenue"], Value::Null);
        assert_eq!(minute(1)["revenue"], "1500.00");
        assert_eq!(minute(1)["trend"], "UP");
        assert_eq!(minute(1)["previous_revenue"], "45.50");
        // (1500 - 45.50) / 45.50
        assert_eq!(minute(1)["revenue_change"], 31.967);
        assert_eq!(minute(2)["revenue"], "70.00");
        assert_eq!(minute(2)["orders"], 7);
        assert_eq!(minute(2)["average_order_value"], "10.00");
        assert_eq!(minute(2)["trend"], "DOWN");
        assert_eq!(minute(5)["previous_revenue"], "70.00");
        assert_eq!(minute(5)["trend"], "UP");
        let five = &revenue["5m|2026-01-05T00:00:00.000Z"];
        assert_eq!(five["revenue"], "1615.50");
        assert_eq!(five["orders"], 9);
        assert_eq!(five["average_order_value"], "179.50");
        let hour = &revenue["1h|2026-01-05T00:00:00.000Z"];
        assert_eq!(hour["revenue"], "1705.50");
        assert_eq!(hour["orders"], 10);
        assert_eq!(revenue.len(), 4 + 2 + 1, "{revenue:#?}");

        // Top products over the five minutes: by quantity P3 (3), P1 (3:
        // 2 + the unmatched line's 1), P2; by revenue P3, P2, P1.
        let top = by(
            &read_jsonl(&out.join("top_products.jsonl")),
            &["window_size", "ranking", "rank"],
        );
        let at = |ranking: &str, rank: u32| {
            let r = &top[&format!("5m|{ranking}|{rank}")];
            (
                r["product_id"].as_str().unwrap().to_string(),
                r["quantity"].clone(),
                r["revenue"].clone(),
            )
        };
        assert_eq!(at("QUANTITY", 1), ("P1".into(), json!("3"), json!("30.00")));
        assert_eq!(
            at("QUANTITY", 2),
            ("P3".into(), json!("3"), json!("1500.00"))
        );
        assert_eq!(at("QUANTITY", 3), ("P2".into(), json!("1"), json!("25.50")));
        assert_eq!(at("REVENUE", 1).0, "P3");
        assert_eq!(at("REVENUE", 2).0, "P1");
        assert_eq!(at("REVENUE", 3).0, "P2");

        let categories = by(
            &read_jsonl(&out.join("category_performance.jsonl")),
            &["window_size", "category"],
        );
        let toys = &categories["5m|toys"];
        assert_eq!(
            (
                toys["revenue"].clone(),
                toys["quantity"].clone(),
                toys["lines"].clone()
            ),
            (json!("1530.00"), json!("6"), json!(3))
        );
        let books = &categories["5m|books"];
        assert_eq!(
            (books["revenue"].clone(), books["lines"].clone()),
            (json!("25.50"), json!(1))
        );

        // Lines joined to their orders; the line of the order that never
        // came is written unmatched.
        let joined = by(&read_jsonl(&out.join("order_lines.jsonl")), &["line_id"]);
        assert_eq!(joined.len(), 4, "{joined:#?}");
        let line = &joined["item-1"];
        assert_eq!(line["order_id"], "1");
        assert_eq!(line["customer_id"], "K1");
        assert_eq!(line["order_status"], "COMPLETED");
        assert_eq!(line["matched"], true);
        assert_eq!(line["quantity"], "2");
        assert_eq!(line["amount"], "20.00");
        assert_eq!(joined["item-3"]["customer_id"], "K2");
        let orphan = &joined["item-4"];
        assert_eq!(orphan["matched"], false);
        assert_eq!(orphan["customer_id"], Value::Null);
        assert_eq!(orphan["order_id"], "99");
    }
}

#[test]
fn the_shop_tables_land_in_clickhouse_and_postgres() {
    use edge::config::SinkKind;
    use edge_tests::db;
    let (Some(ch), Some(pg)) = (
        edge_tests::service("EDGE_CLICKHOUSE_URL"),
        edge_tests::service("EDGE_POSTGRES_URL"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = shop_input(dir.path());
    let (database, schema) = (db::unique("edge_shop"), db::unique("edge_shop"));
    run_pipeline(&guests::SHOP, |c| {
        c.source = file_source(&input);
        shop_decode(c);
        c.clickhouse.url = ch.clone();
        c.clickhouse.database = database.clone();
        c.postgres.url = pg.clone();
        c.postgres.schema = schema.clone();
        let routes = &mut c.output.routes;
        routes.insert("*".into(), vec![SinkKind::Clickhouse, SinkKind::Postgres]);
    })
    .unwrap();
    let queries = [
        (
            "revenue_stats",
            "count(*), sum(orders), sum(revenue)",
            "window_size = '1h'",
        ),
        (
            "top_products",
            "count(*), sum(rank), sum(quantity)",
            "window_size = '5m'",
        ),
        (
            "category_performance",
            "count(*), sum(lines), sum(revenue)",
            "window_size = '1m'",
        ),
        (
            "order_lines",
            "count(*), sum(amount), count(customer_id)",
            "1 = 1",
        ),
    ];
    let want = [
        ["1", "10", "1705.5"],
        ["6", "12", "14"],
        ["3", "4", "1555.5"],
        ["4", "1555.5", "3"],
    ];
    for ((table, columns, filter), want) in queries.iter().zip(want) {
        let ch_row = db::clickhouse(
            &ch,
            &format!("SELECT {columns} FROM `{database}`.{table} FINAL WHERE {filter}"),
        )
        .remove(0);
        let pg_row = db::postgres(
            &pg,
            &format!("select {columns} from \"{schema}\".{table} where {filter}"),
        )
        .remove(0);
        for (server, got) in [("clickhouse", ch_row), ("postgres", pg_row)] {
            let got: Vec<String> = got
                .iter()
                .map(|v| {
                    v.parse::<rust_decimal::Decimal>()
                        .map_or(v.clone(), |d| d.normalize().to_string())
                })
                .collect();
            assert_eq!(got, want, "{server} {table}");
        }
    }
    db::clickhouse(&ch, &format!("DROP DATABASE `{database}`"));
    db::postgres(&pg, &format!("drop schema \"{schema}\" cascade"));
}
