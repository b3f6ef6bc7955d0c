//! Merchant performance: 10-minute tumbling windows per merchant.
//!
//! Table `merchant_metrics`: revenue (the sum of every valid transaction in
//! the window), transaction count, average value (rounded half-up to 2
//! places), unique customers, retention (the share of the window's customers
//! who paid the merchant more than once in it), per amount range the count
//! and the sum of the amounts, and the cities paid from. Name and category
//! come from the merchant dimension.
//!
//! `amount_ranges` counts the transactions per range and
//! `amount_range_totals` sums their amounts. The reference's `amount_ranges`
//! holds the sums; `amount-ranges-as-sums = 1` gives that column the sums
//! too (the counts stay in `amount_range_counts`, which always has them).

use edge_rule_sdk::{
    aggregate, average, column, dims, json_object, money_value, nullable, round_half_up, row,
    share, text, tumbling, window_table, AggregateOp, Aggregates, Bands, ColumnType, Decimal, Emit,
    Field, KeyBy, KeyState, Manifest, RuleSet, Value, Window,
};
use std::sync::atomic::{AtomicU32, Ordering};

const COUNT: usize = 0;
const REVENUE: usize = 1;
const CUSTOMERS: usize = 2;
const PER_CUSTOMER: usize = 3;
const BANDS: usize = 4;
const CITIES: usize = 5;
const MIN: usize = 6;
const MAX: usize = 7;
const BAND_SUMS: usize = 8;

/// 1: `amount_ranges` holds the sum of the amounts per range, as the
/// reference's does, rather than the count.
static RANGES_AS_SUMS: AtomicU32 = AtomicU32::new(0);

/// The config keys and what each sets.
const CONFIG: [(&str, &AtomicU32); 1] = [("amount-ranges-as-sums", &RANGES_AS_SUMS)];

const TABLE: &str = "merchant_metrics";

struct Merchant;

fn bands() -> Bands {
    Bands {
        field: Field::Amount,
        bounds: [10, 50, 100, 500, 1000, 5000]
            .into_iter()
            .map(|b| edge_rule_sdk::money(Decimal::from(b)))
            .collect(),
    }
}

impl RuleSet for Merchant {
    fn manifest() -> Manifest {
        Manifest {
            name: "merchant".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            state_key: None,
            state_ttl_ms: 0,
            windows: vec![tumbling(
                "merchant-10m",
                10 * 60_000,
                KeyBy::Merchant,
                vec![
                    aggregate("count", AggregateOp::Count),
                    aggregate("revenue", AggregateOp::Sum(Field::Amount)),
                    aggregate("customers", AggregateOp::Distinct(Field::Customer)),
                    aggregate("per-customer", AggregateOp::CountBy(Field::Customer)),
                    aggregate("bands", AggregateOp::CountByBand(bands())),
                    aggregate("cities", AggregateOp::CountBy(Field::City)),
                    aggregate("min", AggregateOp::Min(Field::Amount)),
                    aggregate("max", AggregateOp::Max(Field::Amount)),
                    aggregate("band-sums", AggregateOp::SumByBand(bands())),
                ],
            )],
            tables: vec![window_table(
                TABLE,
                Some(column("merchant_id", ColumnType::Text, "The merchant.")),
                vec![
                    column(
                        "merchant_name",
                        ColumnType::Text,
                        "Name from the merchant dimension.",
                    ),
                    column(
                        "category",
                        ColumnType::Text,
                        "Category from the merchant dimension.",
                    ),
                    column(
                        "revenue",
                        ColumnType::Money(4),
                        "Sum of every valid transaction's amount.",
                    ),
                    column(
                        "transaction_count",
                        ColumnType::Int,
                        "Transactions in the window.",
                    ),
                    column(
                        "average_value",
                        ColumnType::Money(2),
                        "Revenue / count, rounded half-up to 2 places.",
                    ),
                    nullable(column(
                        "min_amount",
                        ColumnType::Money(4),
                        "Smallest amount.",
                    )),
                    nullable(column(
                        "max_amount",
                        ColumnType::Money(4),
                        "Largest amount.",
                    )),
                    column("unique_customers", ColumnType::Int, "Distinct customers."),
                    column(
                        "repeat_customers",
                        ColumnType::Int,
                        "Customers with more than one transaction.",
                    ),
                    column(
                        "retention",
                        ColumnType::Float,
                        "repeat_customers / unique_customers, 4 places.",
                    ),
                    column(
                        "amount_ranges",
                        ColumnType::Json,
                        "Transactions per amount range (with amount-ranges-as-sums = 1, \
                         the sum of their amounts, as the reference).",
                    ),
                    column("locations", ColumnType::Json, "Transactions per city."),
                    column(
                        "amount_range_counts",
                        ColumnType::Json,
                        "Transactions per amount range.",
                    ),
                    column(
                        "amount_range_totals",
                        ColumnType::Json,
                        "Sum of the amounts per amount range.",
                    ),
                ],
            )],
        }
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        edge_rule_sdk::apply_settings(config, &CONFIG)
    }

    fn on_window(
        window: Window,
        aggs: Aggregates<'_>,
        _state: &mut KeyState<'_>,
    ) -> Result<Vec<Emit>, String> {
        let count = aggs.count(COUNT);
        let revenue = aggs.money(REVENUE).unwrap_or_default();
        let average = average(revenue, count);
        let unique = aggs.count(CUSTOMERS);
        let repeat = aggs.counts(PER_CUSTOMER).filter(|(_, n)| *n > 1).count() as u64;
        let retention = share(repeat, unique, 0.0);
        let (name, category) = dims::merchant(&window.key)
            .map(|m| (m.name.clone(), m.category.clone()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let optional =
            |d: Option<Decimal>| d.map_or(Value::Null, |d| money_value(round_half_up(d, 4)));
        let counts = json_object(aggs.counts(BANDS), false);
        let sums: Vec<(&str, Decimal)> = aggs
            .sums(BAND_SUMS)
            .map(|(band, sum)| (band, round_half_up(sum, 4)))
            .collect();
        let totals = json_object(sums.iter().map(|(k, v)| (*k, v)), true);
        let ranges = if RANGES_AS_SUMS.load(Ordering::Relaxed) == 1 {
            totals.clone()
        } else {
            counts.clone()
        };
        Ok(vec![row(
            TABLE,
            vec![
                text(window.key),
                Value::Time(window.start),
                Value::Time(window.end),
                text(name),
                text(category),
                money_value(round_half_up(revenue, 4)),
                Value::Int(count as i64),
                money_value(average),
                optional(aggs.money(MIN)),
                optional(aggs.money(MAX)),
                Value::Int(unique as i64),
                Value::Int(repeat as i64),
                Value::Float(retention),
                Value::Text(ranges),
                Value::Text(json_object(aggs.counts(CITIES), false)),
                Value::Text(counts),
                Value::Text(totals),
            ],
        )])
    }
}

edge_rule_sdk::rule_set!(Merchant);
