//! Transaction metrics, as the reference's dashboards read them: three
//! tumbling windows over every valid transaction.
//!
//! - Table `transaction_metrics`, 5 minutes per customer: count, total,
//!   average (half-up, 2 places), total fees, type distribution.
//! - Table `dashboard_metrics`, 1 minute per transaction type: count,
//!   volume, average, fees, success rate (COMPLETED / count), status and
//!   risk-level distributions.
//! - Table `time_pattern_metrics`, 1 hour per hour of day (UTC): count and
//!   spend per type, active customers, transactions per active customer,
//!   and the peak period of the hour (MORNING_PEAK 09-11, LUNCH_PEAK 12-14,
//!   EVENING_PEAK 17-19, OFF_PEAK otherwise; both ends included).
//!
//! Types and statuses are written in the reference's spelling, upper case.

use edge_rule_sdk::{
    aggregate, average, column, filtered, json_object, money_value, round_half_up, row, share,
    text, tumbling, window_table, with_status, AggregateOp, AggregateSpec, Aggregates, Column,
    ColumnType, Decimal, Emit, Field, KeyBy, KeyState, Manifest, RuleSet, TableSpec, TxnStatus,
    Value, Window, WindowSpec,
};

const MINUTE: i64 = 60_000;

const CUSTOMER_5M: &str = "customer-5m";
const TYPE_1M: &str = "type-1m";
const HOUR_1H: &str = "hour-1h";

// The aggregates every window of this rule set starts with.
const COUNT: usize = 0;
const TOTAL: usize = 1;
const FEES: usize = 2;
const BY_TYPE: usize = 3;
// Then, for `type-1m`:
const COMPLETED: usize = 4;
const STATUSES: usize = 5;
const RISK_LEVELS: usize = 6;
// And for `hour-1h`:
const SPEND_BY_TYPE: usize = 4;
const CUSTOMERS: usize = 5;

/// Count, total, fees and count per type: the aggregates every window has.
fn common() -> Vec<AggregateSpec> {
    vec![
        aggregate("count", AggregateOp::Count),
        aggregate("total", AggregateOp::Sum(Field::Amount)),
        aggregate("fees", AggregateOp::Sum(Field::Fee)),
        aggregate("by-type", AggregateOp::CountBy(Field::Kind)),
    ]
}

/// A window of `minutes` keyed by `key`: the common aggregates, then `more`.
fn window(name: &str, minutes: i64, key: KeyBy, more: Vec<AggregateSpec>) -> WindowSpec {
    let mut aggregates = common();
    aggregates.extend(more);
    tumbling(name, minutes * MINUTE, key, aggregates)
}

/// A table keyed by `key` and the window's start, with the window's bounds
/// and the columns every table of this rule set has, then `more`.
fn table(name: &str, key: Column, more: Vec<Column>) -> TableSpec {
    let mut columns = vec![
        column(
            "transaction_count",
            ColumnType::Int,
            "Transactions in the window.",
        ),
        column("total_amount", ColumnType::Money(4), "Sum of the amounts."),
        column(
            "average_amount",
            ColumnType::Money(2),
            "Total / count, rounded half-up to 2 places.",
        ),
        column("total_fees", ColumnType::Money(4), "Sum of the fees."),
        column(
            "type_distribution",
            ColumnType::Json,
            "Transactions per type.",
        ),
    ];
    columns.extend(more);
    window_table(name, Some(key), columns)
}

/// Per-type (or per-status) counts with the reference's upper-case names.
fn upper_counts<'a>(entries: impl Iterator<Item = (&'a str, u64)>) -> String {
    let entries: Vec<(String, u64)> = entries.map(|(k, n)| (k.to_ascii_uppercase(), n)).collect();
    json_object(entries.iter().map(|(k, n)| (k.as_str(), *n)), false)
}

/// The peak period an hour of day (0-23) falls in.
fn peak_period(hour: u32) -> &'static str {
    match hour {
        9..=11 => "MORNING_PEAK",
        12..=14 => "LUNCH_PEAK",
        17..=19 => "EVENING_PEAK",
        _ => "OFF_PEAK",
    }
}

struct Metrics;

impl RuleSet for Metrics {
    fn manifest() -> Manifest {
        let completed = filtered(
            "completed",
            AggregateOp::Count,
            with_status(TxnStatus::Completed),
        );
        Manifest {
            name: "metrics".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            state_key: None,
            state_ttl_ms: 0,
            windows: vec![
                window(CUSTOMER_5M, 5, KeyBy::Customer, Vec::new()),
                window(
                    TYPE_1M,
                    1,
                    KeyBy::Kind,
                    vec![
                        completed,
                        aggregate("statuses", AggregateOp::CountBy(Field::Status)),
                        aggregate("risk-levels", AggregateOp::CountBy(Field::RiskLevel)),
                    ],
                ),
                window(
                    HOUR_1H,
                    60,
                    KeyBy::HourOfDay,
                    vec![
                        aggregate(
                            "spend-by-type",
                            AggregateOp::SumBy((Field::Kind, Field::Amount)),
                        ),
                        aggregate("customers", AggregateOp::Distinct(Field::Customer)),
                    ],
                ),
            ],
            tables: vec![
                table(
                    "transaction_metrics",
                    column("customer_id", ColumnType::Text, "The customer."),
                    Vec::new(),
                ),
                table(
                    "dashboard_metrics",
                    column(
                        "transaction_type",
                        ColumnType::Text,
                        "PURCHASE, TRANSFER, WIRE_TRANSFER, WITHDRAWAL, DEPOSIT, PAYMENT, \
                         REFUND or OTHER.",
                    ),
                    vec![
                        column(
                            "success_rate",
                            ColumnType::Float,
                            "COMPLETED transactions / count, 4 places.",
                        ),
                        column(
                            "status_distribution",
                            ColumnType::Json,
                            "Transactions per status.",
                        ),
                        column(
                            "risk_distribution",
                            ColumnType::Json,
                            "Transactions per risk level (UNKNOWN without one).",
                        ),
                    ],
                ),
                table(
                    "time_pattern_metrics",
                    column(
                        "hour_of_day",
                        ColumnType::Int,
                        "Hour of the day of the event time, UTC (0-23).",
                    ),
                    vec![
                        column(
                            "spending_by_type",
                            ColumnType::Json,
                            "Sum of the amounts per type.",
                        ),
                        column(
                            "active_customers",
                            ColumnType::Int,
                            "Distinct customers in the hour.",
                        ),
                        column(
                            "transactions_per_customer",
                            ColumnType::Float,
                            "Count / active customers, 4 places.",
                        ),
                        column(
                            "peak_period",
                            ColumnType::Text,
                            "MORNING_PEAK (09-11), LUNCH_PEAK (12-14), EVENING_PEAK (17-19) \
                             or OFF_PEAK.",
                        ),
                    ],
                ),
            ],
        }
    }

    fn on_window(
        window: Window,
        aggs: Aggregates<'_>,
        _state: &mut KeyState<'_>,
    ) -> Result<Vec<Emit>, String> {
        let count = aggs.count(COUNT);
        let total = aggs.money(TOTAL).unwrap_or_default();
        let mut values = vec![
            Value::Null,
            Value::Time(window.start),
            Value::Time(window.end),
            Value::Int(count as i64),
            money_value(round_half_up(total, 4)),
            money_value(average(total, count)),
            money_value(round_half_up(aggs.money(FEES).unwrap_or_default(), 4)),
            Value::Text(upper_counts(aggs.counts(BY_TYPE))),
        ];
        let table = match &*window.spec {
            CUSTOMER_5M => {
                values[0] = text(window.key);
                "transaction_metrics"
            }
            TYPE_1M => {
                values[0] = text(window.key.to_ascii_uppercase());
                values.extend([
                    Value::Float(share(aggs.count(COMPLETED), count, 0.0)),
                    Value::Text(upper_counts(aggs.counts(STATUSES))),
                    Value::Text(json_object(aggs.counts(RISK_LEVELS), false)),
                ]);
                "dashboard_metrics"
            }
            HOUR_1H => {
                let hour: u32 = window
                    .key
                    .parse()
                    .map_err(|_| format!("hour of day {:?} is not a number", window.key))?;
                let spend: Vec<(String, Decimal)> = aggs
                    .sums(SPEND_BY_TYPE)
                    .map(|(kind, sum)| (kind.to_ascii_uppercase(), round_half_up(sum, 4)))
                    .collect();
                let customers = aggs.count(CUSTOMERS);
                values[0] = Value::Int(i64::from(hour));
                values.extend([
                    Value::Text(json_object(
                        spend.iter().map(|(k, v)| (k.as_str(), v)),
                        true,
                    )),
                    Value::Int(customers as i64),
                    Value::Float(share(count, customers, 0.0)),
                    text(peak_period(hour)),
                ]);
                "time_pattern_metrics"
            }
            other => return Err(format!("no window spec named {other:?}")),
        };
        Ok(vec![row(table, values)])
    }
}

edge_rule_sdk::rule_set!(Metrics);
