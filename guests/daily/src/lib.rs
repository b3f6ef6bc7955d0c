//! Daily aggregates, as the UPI reference's nightly job computes them:
//! tumbling windows of one UTC day, per merchant and over all payments.
//!
//! Tables `daily_merchant_metrics` (per merchant and day) and
//! `daily_metrics` (per day): transactions, successes (COMPLETED) and
//! failures (FAILED) with their rates, the volume in all and of the
//! successes, the average amount (half-up, 2 places) and the distinct
//! customers; `daily_metrics` also counts the merchants paid. A day's rows
//! are written when the watermark passes its end, keyed by merchant and day,
//! so a re-run over the same input replaces them. Payments without a
//! merchant count only in `daily_metrics`.

use edge_rule_sdk::{
    aggregate, average, column, filtered, money_value, round_half_up, row, share, text, tumbling,
    window_table, with_status, AggregateOp, Aggregates, Column, ColumnType, Emit, Field, KeyBy,
    KeyState, Manifest, RuleSet, TableSpec, TxnStatus, Value, Window, WindowSpec,
};

const DAY: i64 = 86_400_000;
const PER_MERCHANT: &str = "merchant-1d";
const OVERALL: &str = "all-1d";

const COUNT: usize = 0;
const VOLUME: usize = 1;
const SUCCESSES: usize = 2;
const FAILURES: usize = 3;
const SUCCESS_VOLUME: usize = 4;
const CUSTOMERS: usize = 5;
const MERCHANTS: usize = 6;

fn daily(name: &str, key: KeyBy) -> WindowSpec {
    let mut aggregates = vec![
        aggregate("count", AggregateOp::Count),
        aggregate("volume", AggregateOp::Sum(Field::Amount)),
        filtered(
            "successes",
            AggregateOp::Count,
            with_status(TxnStatus::Completed),
        ),
        filtered(
            "failures",
            AggregateOp::Count,
            with_status(TxnStatus::Failed),
        ),
        filtered(
            "success-volume",
            AggregateOp::Sum(Field::Amount),
            with_status(TxnStatus::Completed),
        ),
        aggregate("customers", AggregateOp::Distinct(Field::Customer)),
    ];
    if matches!(key, KeyBy::Global) {
        aggregates.push(aggregate(
            "merchants",
            AggregateOp::Distinct(Field::Merchant),
        ));
    }
    tumbling(name, DAY, key, aggregates)
}

fn table(name: &str, key: Option<Column>, more: Vec<Column>) -> TableSpec {
    let mut columns = vec![
        column(
            "transaction_count",
            ColumnType::Int,
            "Transactions in the day.",
        ),
        column("success_count", ColumnType::Int, "COMPLETED transactions."),
        column("failure_count", ColumnType::Int, "FAILED transactions."),
        column(
            "success_rate",
            ColumnType::Float,
            "success_count / transaction_count, 4 places.",
        ),
        column(
            "failure_rate",
            ColumnType::Float,
            "failure_count / transaction_count, 4 places.",
        ),
        column("total_volume", ColumnType::Money(4), "Sum of the amounts."),
        column(
            "success_volume",
            ColumnType::Money(4),
            "Sum of the COMPLETED transactions' amounts.",
        ),
        column(
            "average_amount",
            ColumnType::Money(2),
            "total_volume / transaction_count, half-up to 2 places.",
        ),
        column("unique_customers", ColumnType::Int, "Distinct customers."),
    ];
    columns.extend(more);
    window_table(name, key, columns)
}

struct Daily;

impl RuleSet for Daily {
    fn manifest() -> Manifest {
        Manifest {
            name: "daily".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            state_key: None,
            state_ttl_ms: 0,
            windows: vec![
                daily(PER_MERCHANT, KeyBy::Merchant),
                daily(OVERALL, KeyBy::Global),
            ],
            tables: vec![
                table(
                    "daily_merchant_metrics",
                    Some(column("merchant_id", ColumnType::Text, "The merchant.")),
                    Vec::new(),
                ),
                table(
                    "daily_metrics",
                    None,
                    vec![column(
                        "active_merchants",
                        ColumnType::Int,
                        "Distinct merchants paid.",
                    )],
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
        let volume = aggs.money(VOLUME).unwrap_or_default();
        let (successes, failures) = (aggs.count(SUCCESSES), aggs.count(FAILURES));
        let mut values = vec![
            Value::Time(window.start),
            Value::Time(window.end),
            Value::Int(count as i64),
            Value::Int(successes as i64),
            Value::Int(failures as i64),
            Value::Float(share(successes, count, 0.0)),
            Value::Float(share(failures, count, 0.0)),
            money_value(round_half_up(volume, 4)),
            money_value(round_half_up(
                aggs.money(SUCCESS_VOLUME).unwrap_or_default(),
                4,
            )),
            money_value(average(volume, count)),
            Value::Int(aggs.count(CUSTOMERS) as i64),
        ];
        let table = if &*window.spec == PER_MERCHANT {
            values.insert(0, text(window.key));
            "daily_merchant_metrics"
        } else {
            values.push(Value::Int(aggs.count(MERCHANTS) as i64));
            "daily_metrics"
        };
        Ok(vec![row(table, values)])
    }
}

edge_rule_sdk::rule_set!(Daily);
