//! Test-only rule set: keys and groups by the source's attributes.
//!
//! - `baskets`: one row per one-minute window over every event, with the
//!   quantity, the revenue (the amounts) and the items per `product`
//!   attribute, the quantity summed from the `quantity` attribute.
//! - `order_lines`: one row per event with an `order` attribute, numbering
//!   the order's lines in the order they arrive, from keyed state keyed by
//!   the order.
//! - `order_totals`: per `order` attribute and one-minute window, its items
//!   and their amount.

use edge_rule_sdk::{
    aggregate, attribute, column, json_object, money_value, row, text, tumbling, window_table,
    AggregateOp, Aggregates, Batch, ColumnType, Decimal, Emit, Field, KeyBy, KeyState, Manifest,
    Reader, RuleSet, States, TableSpec, Value, Window, Writer,
};

const QUANTITY: usize = 0;
const REVENUE: usize = 1;
const ITEMS: usize = 2;

struct Basket;

fn order() -> KeyBy {
    KeyBy::Attribute("order".into())
}

impl RuleSet for Basket {
    fn manifest() -> Manifest {
        Manifest {
            name: "basket".into(),
            version: "0.0.1".into(),
            state_key: Some(order()),
            state_ttl_ms: 0,
            windows: vec![
                tumbling(
                    "all-1m",
                    60_000,
                    KeyBy::Global,
                    vec![
                        aggregate(
                            "quantity",
                            AggregateOp::SumBy((attribute("product"), attribute("quantity"))),
                        ),
                        aggregate(
                            "revenue",
                            AggregateOp::SumBy((attribute("product"), Field::Amount)),
                        ),
                        aggregate("items", AggregateOp::CountBy(attribute("product"))),
                    ],
                ),
                tumbling(
                    "order-1m",
                    60_000,
                    order(),
                    vec![
                        aggregate("items", AggregateOp::Count),
                        aggregate("amount", AggregateOp::Sum(Field::Amount)),
                    ],
                ),
            ],
            tables: vec![
                window_table(
                    "baskets",
                    None,
                    vec![
                        column("quantity", ColumnType::Json, "Quantity per product."),
                        column("revenue", ColumnType::Json, "Revenue per product."),
                        column("items", ColumnType::Json, "Items per product."),
                    ],
                ),
                window_table(
                    "order_totals",
                    Some(column("order_id", ColumnType::Text, "The order.")),
                    vec![
                        column("items", ColumnType::Int, "Items in the window."),
                        column("amount", ColumnType::Money(8), "Their amount."),
                    ],
                ),
                TableSpec {
                    name: "order_lines".into(),
                    key: vec!["transaction_id".into()],
                    columns: vec![
                        column("transaction_id", ColumnType::Text, "The item."),
                        column("order_id", ColumnType::Text, "Its order."),
                        column("line", ColumnType::Int, "Its line in the order, from 1."),
                    ],
                },
            ],
        }
    }

    fn on_events(batch: &Batch, states: &mut States) -> Result<Vec<Emit>, String> {
        let Some(at) = batch.attribute_index("order") else {
            return Ok(Vec::new());
        };
        let mut lines: Vec<Option<i64>> = vec![None; states.len()];
        let mut out = Vec::new();
        for i in 0..batch.len() {
            let Some(order) = batch.attribute_at(i, at) else {
                continue;
            };
            let slot = batch.slot(i);
            let line = lines[slot].get_or_insert_with(|| {
                states
                    .get(slot)
                    .and_then(|b| Reader::new(b).i64())
                    .unwrap_or(0)
            });
            *line += 1;
            out.push(row(
                "order_lines",
                vec![text(batch.id(i)), text(order), Value::Int(*line)],
            ));
        }
        for (slot, line) in lines.into_iter().enumerate() {
            if let Some(n) = line {
                let mut w = Writer(Vec::new());
                w.i64(n);
                states.set(slot, w.0);
            }
        }
        Ok(out)
    }

    fn on_window(
        window: Window,
        aggs: Aggregates<'_>,
        _state: &mut KeyState<'_>,
    ) -> Result<Vec<Emit>, String> {
        if &*window.spec == "order-1m" {
            return Ok(vec![row(
                "order_totals",
                vec![
                    text(window.key),
                    Value::Time(window.start),
                    Value::Time(window.end),
                    Value::Int(aggs.count(0) as i64),
                    money_value(aggs.money(1).unwrap_or_default()),
                ],
            )]);
        }
        let sums = |i: usize| -> Vec<(&str, Decimal)> { aggs.sums(i).collect() };
        let (quantity, revenue) = (sums(QUANTITY), sums(REVENUE));
        Ok(vec![row(
            "baskets",
            vec![
                Value::Time(window.start),
                Value::Time(window.end),
                Value::Text(json_object(quantity.iter().map(|(k, v)| (*k, v)), true)),
                Value::Text(json_object(revenue.iter().map(|(k, v)| (*k, v)), true)),
                Value::Text(json_object(aggs.counts(ITEMS), false)),
            ],
        )])
    }
}

edge_rule_sdk::rule_set!(Basket);
