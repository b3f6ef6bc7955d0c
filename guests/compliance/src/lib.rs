//! Compliance monitoring: 30-minute tumbling windows per customer.
//!
//! Table `compliance_metrics`: the count of every flag the source sends (a
//! map), and of the reference's four (HIGH_VALUE, HIGH_RISK,
//! STRUCTURING_SUSPECTED, SANCTIONS_CHECK_REQUIRED) as columns; the flagged
//! transaction ids; the violation amount, in all and per flag; the
//! risk-level distribution; a compliance score (share of unflagged
//! transactions) and whether the customer requires review (score below 0.7,
//! or any sanctions check).
//!
//! The violation amount counts each flagged transaction's amount once. The
//! reference adds it once per flag, so a transaction with two flags counts
//! twice; `violation-amount-per-flag = 1` gives that.

use edge_rule_sdk::{
    aggregate, column, filtered, flagged, json_array, json_object, money_value, round_half_up, row,
    share, text, tumbling, window_table, AggregateOp, Aggregates, ColumnType, Decimal, Emit, Field,
    KeyBy, KeyState, Manifest, RuleSet, Value, Window,
};
use std::sync::atomic::{AtomicU32, Ordering};

const COUNT: usize = 0;
const TOTAL: usize = 1;
const BY_FLAG: usize = 2;
const FLAGGED_AMOUNT: usize = 3;
const FLAGGED_COUNT: usize = 4;
const RISK_LEVELS: usize = 5;
const FLAGGED_EVENTS: usize = 6;
const AMOUNT_BY_FLAG: usize = 7;

/// 1: the violation amount adds a transaction's amount once per flag, as
/// the reference does.
static PER_FLAG: AtomicU32 = AtomicU32::new(0);

/// The config keys and what each sets.
const CONFIG: [(&str, &AtomicU32); 1] = [("violation-amount-per-flag", &PER_FLAG)];

const TABLE: &str = "compliance_metrics";

struct Compliance;

impl RuleSet for Compliance {
    fn manifest() -> Manifest {
        let money = ColumnType::Money(4);
        Manifest {
            name: "compliance".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            state_key: None,
            state_ttl_ms: 0,
            windows: vec![tumbling(
                "customer-30m",
                30 * 60_000,
                KeyBy::Customer,
                vec![
                    aggregate("count", AggregateOp::Count),
                    aggregate("total", AggregateOp::Sum(Field::Amount)),
                    aggregate("by-flag", AggregateOp::CountBy(Field::Flag)),
                    filtered("flagged-amount", AggregateOp::Sum(Field::Amount), flagged()),
                    filtered("flagged-count", AggregateOp::Count, flagged()),
                    aggregate("risk-levels", AggregateOp::CountBy(Field::RiskLevel)),
                    filtered("flagged-events", AggregateOp::Collect, flagged()),
                    aggregate(
                        "amount-by-flag",
                        AggregateOp::SumBy((Field::Flag, Field::Amount)),
                    ),
                ],
            )],
            tables: vec![window_table(
                TABLE,
                Some(column("customer_id", ColumnType::Text, "The customer.")),
                vec![
                    column(
                        "transaction_count",
                        ColumnType::Int,
                        "Transactions in the window.",
                    ),
                    column("total_amount", money, "Sum of all amounts."),
                    column(
                        "high_value_count",
                        ColumnType::Int,
                        "Transactions flagged HIGH_VALUE (> 10000).",
                    ),
                    column(
                        "high_risk_count",
                        ColumnType::Int,
                        "Transactions flagged HIGH_RISK.",
                    ),
                    column(
                        "structuring_count",
                        ColumnType::Int,
                        "Transactions flagged STRUCTURING_SUSPECTED.",
                    ),
                    column(
                        "sanctions_count",
                        ColumnType::Int,
                        "Transactions flagged SANCTIONS_CHECK_REQUIRED.",
                    ),
                    column(
                        "flag_counts",
                        ColumnType::Json,
                        "Transactions per flag, for every flag the source sends.",
                    ),
                    column(
                        "flagged_count",
                        ColumnType::Int,
                        "Transactions with at least one flag.",
                    ),
                    column(
                        "flagged_transaction_ids",
                        ColumnType::Json,
                        "Ids of the flagged transactions.",
                    ),
                    column(
                        "violation_amount",
                        money,
                        "Sum of the flagged transactions' amounts (once per flag with \
                         violation-amount-per-flag = 1).",
                    ),
                    column(
                        "violation_amounts",
                        ColumnType::Json,
                        "Sum of the amounts per flag.",
                    ),
                    column(
                        "risk_distribution",
                        ColumnType::Json,
                        "Transactions per risk level.",
                    ),
                    column(
                        "compliance_score",
                        ColumnType::Float,
                        "Share of unflagged transactions, 4 places.",
                    ),
                    column(
                        "requires_review",
                        ColumnType::Boolean,
                        "Score below 0.7 or a sanctions check required.",
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
        let by_flag = aggs.counts(BY_FLAG);
        let flags = |name: &str| {
            by_flag
                .clone()
                .find(|(k, _)| *k == name)
                .map_or(0, |(_, n)| n as i64)
        };
        let sanctions = flags("SANCTIONS_CHECK_REQUIRED");
        let (high_value, high_risk, structuring) = (
            flags("HIGH_VALUE"),
            flags("HIGH_RISK"),
            flags("STRUCTURING_SUSPECTED"),
        );
        let flagged_count = aggs.count(FLAGGED_COUNT);
        let score = share(count - flagged_count.min(count), count, 1.0);
        let risk = json_object(aggs.counts(RISK_LEVELS), false);
        let total = aggs.money(TOTAL).unwrap_or_default();
        let per_flag = aggs.sums(AMOUNT_BY_FLAG);
        let violation = if PER_FLAG.load(Ordering::Relaxed) == 1 {
            per_flag.clone().map(|(_, amount)| amount).sum()
        } else {
            aggs.money(FLAGGED_AMOUNT).unwrap_or_default()
        };
        let per_flag: Vec<(&str, Decimal)> = per_flag
            .map(|(flag, amount)| (flag, round_half_up(amount, 4)))
            .collect();
        let ids = aggs
            .events(FLAGGED_EVENTS)
            .map(|b| json_array((0..b.len()).map(|i| b.id(i))))
            .unwrap_or_else(|| "[]".into());
        Ok(vec![row(
            TABLE,
            vec![
                text(window.key),
                Value::Time(window.start),
                Value::Time(window.end),
                Value::Int(count as i64),
                money_value(round_half_up(total, 4)),
                Value::Int(high_value),
                Value::Int(high_risk),
                Value::Int(structuring),
                Value::Int(sanctions),
                Value::Text(json_object(by_flag, false)),
                Value::Int(flagged_count as i64),
                Value::Text(ids),
                money_value(round_half_up(violation, 4)),
                Value::Text(json_object(per_flag.iter().map(|(k, v)| (*k, v)), true)),
                Value::Text(risk),
                Value::Float(score),
                Value::Boolean(score < 0.7 || sanctions > 0),
            ],
        )])
    }
}

edge_rule_sdk::rule_set!(Compliance);
