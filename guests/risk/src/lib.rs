//! Risk analytics: 10-minute tumbling windows per customer.
//!
//! Table `risk_analytics`: the customer's exposure (the sum of the window's
//! amounts), its HIGH or CRITICAL transactions, the compliance flags raised
//! (the violations), the risk factors found and a risk score made of them:
//!
//! - factors: `HIGH_EXPOSURE` (exposure over `high-exposure`, 50,000),
//!   `HIGH_RISK_TRANSACTIONS` (any HIGH or CRITICAL transaction),
//!   `COMPLIANCE_VIOLATIONS` (any flag), `WIRE_TRANSFERS` (any wire
//!   transfer), `HIGH_FREQUENCY` (more than `high-frequency`, 20,
//!   transactions in the window);
//! - score, in [0, 1]: 0.4 × the mean of the transactions' risk scores
//!   (normalised to [0, 1]; 0 when none has one) + 0.3 × the share of HIGH
//!   or CRITICAL transactions + 0.06 per factor, at most 1, 4 places;
//! - level: graded from the score as the reference grades a transaction's
//!   (CRITICAL above 0.8, HIGH above 0.6, MEDIUM above 0.3, else LOW).
//!
//! Table `risk_stats`, as the risk-control reference keeps it: 5-second
//! tumbling windows over every valid transaction, one row per window: count,
//! total, average and largest amount, distinct customers, HIGH or CRITICAL
//! transactions, flagged transactions and the mean risk score.

use edge_rule_sdk::{
    aggregate, average, column, filtered, flagged, json_array, money_value, nullable, round4,
    round_half_up, row, share, text, tumbling, window_table, with_kind, AggregateOp, Aggregates,
    ColumnType, Decimal, Emit, Field, KeyBy, KeyState, Manifest, RuleSet, TxnKind, Value, Window,
};
use std::sync::atomic::{AtomicU32, Ordering};

const COUNT: usize = 0;
const EXPOSURE: usize = 1;
const RISK_LEVELS: usize = 2;
const FLAGS: usize = 3;
const MEAN_SCORE: usize = 4;
const WIRES: usize = 5;

const TABLE: &str = "risk_analytics";
const CUSTOMER_10M: &str = "customer-10m";
const STATS_5S: &str = "all-5s";

// `all-5s` has `count`, `exposure` (the total) and `risk-levels` where
// `customer-10m` has them, then:
const STATS_MEAN_SCORE: usize = 3;
const LARGEST: usize = 4;
const CUSTOMERS: usize = 5;
const FLAGGED: usize = 6;

/// Exposure in a window above which `HIGH_EXPOSURE` is a factor.
static HIGH_EXPOSURE: AtomicU32 = AtomicU32::new(50_000);
/// Transactions in a window above which `HIGH_FREQUENCY` is a factor.
static HIGH_FREQUENCY: AtomicU32 = AtomicU32::new(20);

/// The config keys and what each sets.
const CONFIG: [(&str, &AtomicU32); 2] = [
    ("high-exposure", &HIGH_EXPOSURE),
    ("high-frequency", &HIGH_FREQUENCY),
];

/// What a window's transactions add up to, for the score.
struct Seen {
    count: u64,
    exposure: Decimal,
    high_risk: u64,
    flagged: bool,
    wires: u64,
    mean_score: Option<f64>,
}

impl Seen {
    /// The risk factors found, in a fixed order.
    fn factors(&self) -> Vec<&'static str> {
        let limit = |l: &AtomicU32| u64::from(l.load(Ordering::Relaxed));
        [
            (
                self.exposure > Decimal::from(limit(&HIGH_EXPOSURE)),
                "HIGH_EXPOSURE",
            ),
            (self.high_risk > 0, "HIGH_RISK_TRANSACTIONS"),
            (self.flagged, "COMPLIANCE_VIOLATIONS"),
            (self.wires > 0, "WIRE_TRANSFERS"),
            (self.count > limit(&HIGH_FREQUENCY), "HIGH_FREQUENCY"),
        ]
        .into_iter()
        .filter_map(|(found, name)| found.then_some(name))
        .collect()
    }

    /// The score made of the mean risk, the high-risk share and `factors`.
    fn score(&self, factors: usize) -> f64 {
        let mean = self.mean_score.unwrap_or(0.0).clamp(0.0, 1.0);
        let high_share = share(self.high_risk, self.count, 0.0);
        let score = 0.4 * mean + 0.3 * high_share + 0.06 * factors as f64;
        round4(score.min(1.0))
    }
}

/// A score graded as the reference grades a transaction's.
fn level(score: f64) -> &'static str {
    if score > 0.8 {
        "CRITICAL"
    } else if score > 0.6 {
        "HIGH"
    } else if score > 0.3 {
        "MEDIUM"
    } else {
        "LOW"
    }
}

/// The HIGH or CRITICAL transactions of a `count-by(risk-level)` result.
fn high_risk<'a>(levels: impl Iterator<Item = (&'a str, u64)>) -> u64 {
    levels
        .filter(|(level, _)| matches!(*level, "HIGH" | "CRITICAL"))
        .map(|(_, n)| n)
        .sum()
}

/// A mean score to 4 places, or null.
fn mean_value(mean: Option<f64>) -> Value {
    mean.map_or(Value::Null, |m| Value::Float(round4(m)))
}

fn stats_table() -> edge_rule_sdk::TableSpec {
    window_table(
        "risk_stats",
        None,
        vec![
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
            column("max_amount", ColumnType::Money(4), "Largest amount."),
            column("unique_customers", ColumnType::Int, "Distinct customers."),
            column(
                "high_risk_count",
                ColumnType::Int,
                "Transactions whose risk level is HIGH or CRITICAL.",
            ),
            column(
                "flagged_count",
                ColumnType::Int,
                "Transactions with at least one compliance flag.",
            ),
            nullable(column(
                "average_risk_score",
                ColumnType::Float,
                "Mean risk score in [0, 1] of the transactions that have one.",
            )),
        ],
    )
}

fn stats_row(window: &Window, aggs: &Aggregates<'_>) -> Emit {
    let count = aggs.count(COUNT);
    let total = aggs.money(EXPOSURE).unwrap_or_default();
    row(
        "risk_stats",
        vec![
            Value::Time(window.start),
            Value::Time(window.end),
            Value::Int(count as i64),
            money_value(round_half_up(total, 4)),
            money_value(average(total, count)),
            money_value(round_half_up(aggs.money(LARGEST).unwrap_or_default(), 4)),
            Value::Int(aggs.count(CUSTOMERS) as i64),
            Value::Int(high_risk(aggs.counts(RISK_LEVELS)) as i64),
            Value::Int(aggs.count(FLAGGED) as i64),
            mean_value(aggs.number(STATS_MEAN_SCORE)),
        ],
    )
}

struct Risk;

impl RuleSet for Risk {
    fn manifest() -> Manifest {
        let wires = filtered(
            "wires",
            AggregateOp::Count,
            with_kind(TxnKind::WireTransfer),
        );
        Manifest {
            name: "risk".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            state_key: None,
            state_ttl_ms: 0,
            windows: vec![
                tumbling(
                    CUSTOMER_10M,
                    10 * 60_000,
                    KeyBy::Customer,
                    vec![
                        aggregate("count", AggregateOp::Count),
                        aggregate("exposure", AggregateOp::Sum(Field::Amount)),
                        aggregate("risk-levels", AggregateOp::CountBy(Field::RiskLevel)),
                        aggregate("flags", AggregateOp::CountBy(Field::Flag)),
                        aggregate("mean-score", AggregateOp::Avg(Field::RiskScore)),
                        wires,
                    ],
                ),
                tumbling(
                    STATS_5S,
                    5_000,
                    KeyBy::Global,
                    vec![
                        aggregate("count", AggregateOp::Count),
                        aggregate("total", AggregateOp::Sum(Field::Amount)),
                        aggregate("risk-levels", AggregateOp::CountBy(Field::RiskLevel)),
                        aggregate("mean-score", AggregateOp::Avg(Field::RiskScore)),
                        aggregate("largest", AggregateOp::Max(Field::Amount)),
                        aggregate("customers", AggregateOp::Distinct(Field::Customer)),
                        filtered("flagged", AggregateOp::Count, flagged()),
                    ],
                ),
            ],
            tables: vec![
                window_table(
                    TABLE,
                    Some(column("customer_id", ColumnType::Text, "The customer.")),
                    vec![
                        column(
                            "transaction_count",
                            ColumnType::Int,
                            "Transactions in the window.",
                        ),
                        column(
                            "total_exposure",
                            ColumnType::Money(4),
                            "Sum of the amounts.",
                        ),
                        column(
                            "high_risk_count",
                            ColumnType::Int,
                            "Transactions whose risk level is HIGH or CRITICAL.",
                        ),
                        column(
                            "compliance_violations",
                            ColumnType::Json,
                            "The compliance flags raised, each once, sorted.",
                        ),
                        nullable(column(
                            "average_risk_score",
                            ColumnType::Float,
                            "Mean risk score in [0, 1] of the transactions that have one.",
                        )),
                        column(
                            "risk_factors",
                            ColumnType::Json,
                            "HIGH_EXPOSURE, HIGH_RISK_TRANSACTIONS, COMPLIANCE_VIOLATIONS, \
                         WIRE_TRANSFERS, HIGH_FREQUENCY: those found.",
                        ),
                        column(
                            "risk_score",
                            ColumnType::Float,
                            "0.4 x mean risk + 0.3 x high-risk share + 0.06 per factor, at most 1.",
                        ),
                        column(
                            "risk_level",
                            ColumnType::Text,
                            "The score graded: CRITICAL > 0.8, HIGH > 0.6, MEDIUM > 0.3, LOW.",
                        ),
                    ],
                ),
                stats_table(),
            ],
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
        if &*window.spec == STATS_5S {
            return Ok(vec![stats_row(&window, &aggs)]);
        }
        let mut flags: Vec<&str> = aggs.counts(FLAGS).map(|(flag, _)| flag).collect();
        flags.sort_unstable();
        let seen = Seen {
            count: aggs.count(COUNT),
            exposure: aggs.money(EXPOSURE).unwrap_or_default(),
            high_risk: high_risk(aggs.counts(RISK_LEVELS)),
            flagged: !flags.is_empty(),
            wires: aggs.count(WIRES),
            mean_score: aggs.number(MEAN_SCORE),
        };
        let factors = seen.factors();
        let score = seen.score(factors.len());
        Ok(vec![row(
            TABLE,
            vec![
                text(window.key),
                Value::Time(window.start),
                Value::Time(window.end),
                Value::Int(seen.count as i64),
                money_value(round_half_up(seen.exposure, 4)),
                Value::Int(seen.high_risk as i64),
                Value::Text(json_array(flags)),
                mean_value(seen.mean_score),
                Value::Text(json_array(factors)),
                Value::Float(score),
                text(level(score)),
            ],
        )])
    }
}

edge_rule_sdk::rule_set!(Risk);
