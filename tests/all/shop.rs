//! The e-commerce reference's tables as Debezium captures them (`orders`
//! and `order_items`, NUMERIC columns as base64 with the scale in the
//! schema), read through `[decode.tables]` into events with attributes.

use edge_tests::{file_source, guests, read_jsonl, run_pipeline};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A NUMERIC value as Debezium's `precise` mode sends it: the unscaled
/// value's big-endian two's-complement bytes, in base64.
fn precise(units: i64) -> String {
    use base64::Engine;
    let bytes = units.to_be_bytes();
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut bytes = bytes[first..].to_vec();
    if bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
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
    let row = json!({
        "id": id, "order_id": order, "product_id": product, "quantity": quantity,
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
        json!({"order": "1", "product": "P1", "quantity": "2"})
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
