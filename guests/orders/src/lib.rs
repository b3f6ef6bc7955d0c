//! Fraud on the e-commerce reference's orders: alerts on each order (an
//! event of kind PURCHASE with an `order` attribute; the lines of an order,
//! of other kinds, are left alone).
//!
//! - `HIGH_VALUE_ORDER`: an order above `high-value-order` (1000).
//! - `RAPID_ORDERS`: an order of a customer who placed more than
//!   `rapid-orders-limit` (5) orders within `rapid-orders-secs` (60) seconds
//!   of event time: the sixth and each one after it in the burst.
//!
//! Keyed state per customer: the times of its orders of the last
//! `rapid-orders-secs`.

use edge_rule_sdk::{
    alert, apply_settings, Batch, Decimal, Emit, KeyBy, Keyed, Manifest, Reader, RuleSet, Severity,
    State, States, TxnKind, Writer,
};
use std::sync::atomic::{AtomicU32, Ordering};

static HIGH_VALUE: AtomicU32 = AtomicU32::new(1000);
static RAPID_LIMIT: AtomicU32 = AtomicU32::new(5);
static RAPID_SECS: AtomicU32 = AtomicU32::new(60);

/// The config keys and what each sets.
const CONFIG: [(&str, &AtomicU32); 3] = [
    ("high-value-order", &HIGH_VALUE),
    ("rapid-orders-limit", &RAPID_LIMIT),
    ("rapid-orders-secs", &RAPID_SECS),
];

/// A customer's recent orders: their event times, oldest first.
#[derive(Default)]
struct Recent(Vec<i64>);

impl State for Recent {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.0.len() as u32);
        self.0.iter().for_each(|&t| w.i64(t));
    }
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        let n = r.u32()?;
        r.items(n, 8, Reader::i64).map(Recent)
    }
}

struct Orders;

impl RuleSet for Orders {
    fn manifest() -> Manifest {
        Manifest {
            name: "orders".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            state_key: Some(KeyBy::Customer),
            // A burst is judged over the last minutes only.
            state_ttl_ms: 10 * 60_000,
            windows: Vec::new(),
            tables: Vec::new(),
        }
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        apply_settings(config, &CONFIG)?;
        // A customer's orders are kept for ten minutes after the last.
        if !(1..=600).contains(&RAPID_SECS.load(Ordering::Relaxed)) {
            return Err("rapid-orders-secs must be from 1 to 600".into());
        }
        Ok(())
    }

    fn on_events(batch: &Batch, states: &mut States) -> Result<Vec<Emit>, String> {
        let Some(order) = batch.attribute_index("order") else {
            return Ok(Vec::new());
        };
        let high = Decimal::from(HIGH_VALUE.load(Ordering::Relaxed));
        let limit = RAPID_LIMIT.load(Ordering::Relaxed) as usize;
        let span = i64::from(RAPID_SECS.load(Ordering::Relaxed)) * 1000;
        let mut keyed: Keyed<Recent> = Keyed::new(states);
        let mut out = Vec::new();
        for i in 0..batch.len() {
            if batch.kind(i) != TxnKind::Purchase {
                continue;
            }
            let Some(id) = batch.attribute_at(i, order) else {
                continue;
            };
            let amount = batch.amount(i);
            if amount > high {
                out.push(alert(
                    batch,
                    i,
                    "orders",
                    "HIGH_VALUE_ORDER",
                    Severity::High,
                    0.8,
                    format!("order {id} of {amount} is above {high}"),
                ));
            }
            let time = batch.event_time(i);
            let recent = keyed.get(states, batch.slot(i));
            recent.0.retain(|&t| t > time - span);
            let at = recent.0.partition_point(|&t| t <= time);
            recent.0.insert(at, time);
            let n = recent.0.len();
            if n > limit {
                out.push(alert(
                    batch,
                    i,
                    "orders",
                    "RAPID_ORDERS",
                    Severity::High,
                    (n as f64 / (2 * limit.max(1)) as f64).min(1.0),
                    format!(
                        "order {id}: {n} orders within {} s (more than {limit})",
                        span / 1000
                    ),
                ));
            }
        }
        keyed.write_back(states);
        Ok(out)
    }
}

edge_rule_sdk::rule_set!(Orders);
