//! Customer lifecycle: 15-minute tumbling windows per customer, enriched
//! with the customer dimension (tier, segment, sign-up) and keyed state that
//! carries lifetime totals from window to window.
//!
//! Table `customer_lifecycle`: channel usage, spending by merchant category,
//! location and device consistency (share of the most used city and device),
//! and the lifecycle stage:
//! - `REACTIVATED`: back after more than 7 days without a window;
//! - `NEW`: signed up less than 30 days before, or at most 5 transactions ever;
//! - `AT_RISK`: fewer than a third of the previous active window's
//!   transactions (when that had at least 4);
//! - `LOYAL`: active in at least 8 windows;
//! - `ACTIVE` otherwise.
//!
//! The spending pattern grades the window's spend: `HIGH_SPENDER` over
//! 10,000, `MODERATE_SPENDER` over 1,000, `LOW_SPENDER` otherwise
//! (config keys `high-spender` and `moderate-spender`).

use edge_rule_sdk::{
    aggregate, column, dims, json_object, money_value, round_half_up, row, share, text, tumbling,
    window_table, AggregateOp, Aggregates, ColumnType, Decimal, Emit, Field, KeyBy, KeyState,
    Manifest, Merchant, Reader, RuleSet, State, Value, Window, WindowSpec, Writer,
};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

const COUNT: usize = 0;
const SPEND: usize = 1;
const CHANNELS: usize = 2;
const BY_MERCHANT: usize = 3;
const CITIES: usize = 4;
const DEVICES: usize = 5;

const DAY: i64 = 86_400_000;
const TABLE: &str = "customer_lifecycle";

#[derive(Default)]
struct Lifetime {
    transactions: u64,
    spend: Decimal,
    active_windows: u32,
    last_window_end: i64,
    last_window_count: u64,
}

impl State for Lifetime {
    fn encode(&self, w: &mut Writer) {
        w.i64(self.transactions as i64);
        w.decimal(self.spend);
        w.u32(self.active_windows);
        w.i64(self.last_window_end);
        w.i64(self.last_window_count as i64);
    }
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        Some(Self {
            transactions: r.i64()? as u64,
            spend: r.decimal()?,
            active_windows: r.u32()?,
            last_window_end: r.i64()?,
            last_window_count: r.i64()? as u64,
        })
    }
}

fn consistency<'a>(counts: impl Iterator<Item = (&'a str, u64)>, total: u64) -> f64 {
    share(counts.map(|(_, n)| n).max().unwrap_or(0), total, 1.0)
}

/// A window's spend above which the customer is a `HIGH_SPENDER`.
static HIGH_SPENDER: AtomicU32 = AtomicU32::new(10_000);
/// A window's spend above which the customer is a `MODERATE_SPENDER`.
static MODERATE_SPENDER: AtomicU32 = AtomicU32::new(1_000);

/// The config keys and what each sets.
const CONFIG: [(&str, &AtomicU32); 2] = [
    ("high-spender", &HIGH_SPENDER),
    ("moderate-spender", &MODERATE_SPENDER),
];

/// The spending pattern of a window's spend.
fn spending_pattern(spend: Decimal) -> &'static str {
    let over = |limit: &AtomicU32| spend > Decimal::from(limit.load(Ordering::Relaxed));
    if over(&HIGH_SPENDER) {
        "HIGH_SPENDER"
    } else if over(&MODERATE_SPENDER) {
        "MODERATE_SPENDER"
    } else {
        "LOW_SPENDER"
    }
}

struct Lifecycle;

impl RuleSet for Lifecycle {
    fn manifest() -> Manifest {
        Manifest {
            name: "lifecycle".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            state_key: None,
            state_ttl_ms: 90 * DAY,
            windows: vec![WindowSpec {
                with_state: !cfg!(feature = "host-state"),
                ..tumbling(
                    "customer-15m",
                    15 * 60_000,
                    KeyBy::Customer,
                    vec![
                        aggregate("count", AggregateOp::Count),
                        aggregate("spend", AggregateOp::Sum(Field::Amount)),
                        aggregate("channels", AggregateOp::CountBy(Field::Channel)),
                        aggregate(
                            "by-merchant",
                            AggregateOp::SumBy((Field::Merchant, Field::Amount)),
                        ),
                        aggregate("cities", AggregateOp::CountBy(Field::City)),
                        aggregate("devices", AggregateOp::CountBy(Field::Device)),
                    ],
                )
            }],
            tables: vec![window_table(
                TABLE,
                Some(column("customer_id", ColumnType::Text, "The customer.")),
                vec![
                    column(
                        "tier",
                        ColumnType::Text,
                        "Customer tier from the customer dimension (UNKNOWN if absent).",
                    ),
                    column(
                        "segment",
                        ColumnType::Text,
                        "Customer segment from the customer dimension.",
                    ),
                    column(
                        "transaction_count",
                        ColumnType::Int,
                        "Transactions in the window.",
                    ),
                    column(
                        "total_spend",
                        ColumnType::Money(4),
                        "Sum of amounts in the window.",
                    ),
                    column(
                        "channel_usage",
                        ColumnType::Json,
                        "Transactions per channel.",
                    ),
                    column(
                        "spending_by_category",
                        ColumnType::Json,
                        "Spend per merchant category.",
                    ),
                    column(
                        "location_consistency",
                        ColumnType::Float,
                        "Share of the most used city.",
                    ),
                    column(
                        "device_consistency",
                        ColumnType::Float,
                        "Share of the most used device.",
                    ),
                    column(
                        "spending_pattern",
                        ColumnType::Text,
                        "HIGH_SPENDER (window spend over high-spender, 10000), \
                         MODERATE_SPENDER (over moderate-spender, 1000) or LOW_SPENDER.",
                    ),
                    column(
                        "lifecycle_stage",
                        ColumnType::Text,
                        "NEW, ACTIVE, LOYAL, AT_RISK or REACTIVATED.",
                    ),
                    column(
                        "lifetime_transactions",
                        ColumnType::Int,
                        "Transactions seen for the customer so far.",
                    ),
                    column(
                        "lifetime_spend",
                        ColumnType::Money(4),
                        "Spend seen for the customer so far.",
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
        state: &mut KeyState<'_>,
    ) -> Result<Vec<Emit>, String> {
        let count = aggs.count(COUNT);
        let spend = aggs.money(SPEND).unwrap_or_default();
        let customer = dims::customer(&window.key);
        let mut life: Lifetime = state.read();

        // Spend per category, in category order (a window has few).
        let merchants: Vec<(Option<Rc<Merchant>>, Decimal)> = aggs
            .sums(BY_MERCHANT)
            .map(|(merchant, amount)| (dims::merchant(merchant), amount))
            .collect();
        let mut by_category: Vec<(&str, Decimal)> = Vec::with_capacity(merchants.len());
        for (merchant, amount) in &merchants {
            let name = merchant.as_ref().map_or("unknown", |m| m.category.as_str());
            match by_category.iter_mut().find(|(c, _)| *c == name) {
                Some((_, sum)) => *sum += *amount,
                None => by_category.push((name, *amount)),
            }
        }
        by_category.sort_unstable_by(|a, b| a.0.cmp(b.0));

        let previous_count = life.last_window_count;
        let reactivated = life.last_window_end > 0 && window.start - life.last_window_end > 7 * DAY;
        if window.refire == 0 {
            life.transactions += count;
            life.spend += spend;
            life.active_windows += 1;
        }
        let new_customer = customer
            .as_ref()
            .is_some_and(|c| window.end - c.signup_time < 30 * DAY)
            || life.transactions <= 5;
        let stage = if reactivated {
            "REACTIVATED"
        } else if new_customer {
            "NEW"
        } else if previous_count >= 4 && count * 3 < previous_count {
            "AT_RISK"
        } else if life.active_windows >= 8 {
            "LOYAL"
        } else {
            "ACTIVE"
        };
        life.last_window_end = window.end;
        life.last_window_count = count;
        state.write(&life);

        let (tier, segment) = customer
            .map(|c| (c.tier.clone(), c.segment.clone()))
            .unwrap_or_else(|| ("UNKNOWN".into(), "UNKNOWN".into()));
        Ok(vec![row(
            TABLE,
            vec![
                text(window.key),
                Value::Time(window.start),
                Value::Time(window.end),
                text(tier),
                text(segment),
                Value::Int(count as i64),
                money_value(round_half_up(spend, 4)),
                Value::Text(json_object(aggs.counts(CHANNELS), false)),
                Value::Text(json_object(by_category.iter().map(|(k, v)| (*k, v)), true)),
                Value::Float(consistency(aggs.counts(CITIES), count)),
                Value::Float(consistency(aggs.counts(DEVICES), count)),
                text(spending_pattern(spend)),
                text(stage),
                Value::Int(life.transactions as i64),
                money_value(round_half_up(life.spend, 4)),
            ],
        )])
    }
}

edge_rule_sdk::rule_set!(Lifecycle);
