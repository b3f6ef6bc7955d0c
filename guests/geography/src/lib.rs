//! Geographic analysis: 5-minute tumbling windows per country.
//!
//! Table `geographic_metrics`: per country, the transactions and spend per
//! city, the transactions per merchant category (from the merchant
//! dimension; `unknown` for a merchant it lacks, `none` for a payment
//! without a merchant), the currencies used and the distinct customers.
//! Events without a location have no country and are in no row.

use edge_rule_sdk::{
    aggregate, column, dims, json_object, money_value, round_half_up, row, text, tumbling,
    window_table, AggregateOp, Aggregates, ColumnType, Decimal, Emit, Field, KeyBy, KeyState,
    Manifest, RuleSet, Value, Window,
};

const COUNT: usize = 0;
const TOTAL: usize = 1;
const CITIES: usize = 2;
const CITY_SPEND: usize = 3;
const MERCHANTS: usize = 4;
const CURRENCIES: usize = 5;
const CUSTOMERS: usize = 6;

const TABLE: &str = "geographic_metrics";

struct Geography;

impl RuleSet for Geography {
    fn manifest() -> Manifest {
        Manifest {
            name: "geography".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            state_key: None,
            state_ttl_ms: 0,
            windows: vec![tumbling(
                "country-5m",
                5 * 60_000,
                KeyBy::Country,
                vec![
                    aggregate("count", AggregateOp::Count),
                    aggregate("total", AggregateOp::Sum(Field::Amount)),
                    aggregate("cities", AggregateOp::CountBy(Field::City)),
                    aggregate(
                        "city-spend",
                        AggregateOp::SumBy((Field::City, Field::Amount)),
                    ),
                    aggregate("merchants", AggregateOp::CountBy(Field::Merchant)),
                    aggregate("currencies", AggregateOp::CountBy(Field::Currency)),
                    aggregate("customers", AggregateOp::Distinct(Field::Customer)),
                ],
            )],
            tables: vec![window_table(
                TABLE,
                Some(column(
                    "country",
                    ColumnType::Text,
                    "The country, as the source gave it.",
                )),
                vec![
                    column(
                        "transaction_count",
                        ColumnType::Int,
                        "Transactions in the window.",
                    ),
                    column("total_amount", ColumnType::Money(4), "Sum of the amounts."),
                    column("unique_customers", ColumnType::Int, "Distinct customers."),
                    column("city_counts", ColumnType::Json, "Transactions per city."),
                    column(
                        "city_spending",
                        ColumnType::Json,
                        "Sum of the amounts per city.",
                    ),
                    column(
                        "merchant_categories",
                        ColumnType::Json,
                        "Transactions per merchant category.",
                    ),
                    column("currencies", ColumnType::Json, "Transactions per currency."),
                ],
            )],
        }
    }

    fn on_window(
        window: Window,
        aggs: Aggregates<'_>,
        _state: &mut KeyState<'_>,
    ) -> Result<Vec<Emit>, String> {
        let count = aggs.count(COUNT);
        let with_merchant: u64 = aggs.counts(MERCHANTS).map(|(_, n)| n).sum();
        let merchants: Vec<(Option<String>, u64)> = aggs
            .counts(MERCHANTS)
            .map(|(id, n)| (dims::merchant(id).map(|m| m.category.clone()), n))
            .collect();
        let mut categories: Vec<(&str, u64)> = Vec::new();
        let without = count.saturating_sub(with_merchant);
        let entries = merchants
            .iter()
            .map(|(category, n)| (category.as_deref().unwrap_or("unknown"), *n))
            .chain((without > 0).then_some(("none", without)));
        for (name, n) in entries {
            match categories.iter_mut().find(|(c, _)| *c == name) {
                Some((_, sum)) => *sum += n,
                None => categories.push((name, n)),
            }
        }
        categories.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let spend: Vec<(&str, Decimal)> = aggs
            .sums(CITY_SPEND)
            .map(|(city, sum)| (city, round_half_up(sum, 4)))
            .collect();
        Ok(vec![row(
            TABLE,
            vec![
                text(window.key),
                Value::Time(window.start),
                Value::Time(window.end),
                Value::Int(count as i64),
                money_value(round_half_up(aggs.money(TOTAL).unwrap_or_default(), 4)),
                Value::Int(aggs.count(CUSTOMERS) as i64),
                Value::Text(json_object(aggs.counts(CITIES), false)),
                Value::Text(json_object(spend.iter().map(|(k, v)| (*k, v)), true)),
                Value::Text(json_object(categories, false)),
                Value::Text(json_object(aggs.counts(CURRENCIES), false)),
            ],
        )])
    }
}

edge_rule_sdk::rule_set!(Geography);
