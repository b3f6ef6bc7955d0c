//! Test-only rule set: windows grouped by the source's attributes. One
//! `baskets` row per one-minute window over every event: the quantity, the
//! revenue (the amounts) and the items per `product` attribute, the
//! quantity summed from the `quantity` attribute.

use edge_rule_sdk::{
    aggregate, attribute, column, json_object, row, tumbling, window_table, AggregateOp,
    Aggregates, ColumnType, Decimal, Emit, Field, KeyBy, KeyState, Manifest, RuleSet, Value,
    Window,
};

const QUANTITY: usize = 0;
const REVENUE: usize = 1;
const ITEMS: usize = 2;

struct Basket;

impl RuleSet for Basket {
    fn manifest() -> Manifest {
        Manifest {
            name: "basket".into(),
            version: "0.0.1".into(),
            state_key: None,
            state_ttl_ms: 0,
            windows: vec![tumbling(
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
            )],
            tables: vec![window_table(
                "baskets",
                None,
                vec![
                    column("quantity", ColumnType::Json, "Quantity per product."),
                    column("revenue", ColumnType::Json, "Revenue per product."),
                    column("items", ColumnType::Json, "Items per product."),
                ],
            )],
        }
    }

    fn on_window(
        window: Window,
        aggs: Aggregates<'_>,
        _state: &mut KeyState<'_>,
    ) -> Result<Vec<Emit>, String> {
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
