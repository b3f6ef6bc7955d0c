//! Big spenders: an alert when a customer pays far more than usual, and
//! the spend per country per hour.

use edge_rule_sdk::*;
use std::sync::atomic::{AtomicU32, Ordering};

const HOUR: i64 = 3_600_000;
static FACTOR: AtomicU32 = AtomicU32::new(5);

/// What the rule set remembers per customer.
#[derive(Default)]
struct Spend {
    count: u32,
    total: Decimal,
}

impl State for Spend {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.count);
        w.decimal(self.total);
    }
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        Some(Self {
            count: r.u32()?,
            total: r.decimal()?,
        })
    }
}

struct BigSpender;

impl RuleSet for BigSpender {
    fn manifest() -> Manifest {
        Manifest {
            name: "big-spender".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            state_key: Some(KeyBy::Customer),
            state_ttl_ms: 30 * 24 * HOUR,
            windows: vec![WindowSpec {
                name: "country-1h".into(),
                kind: WindowKind::Tumbling(HOUR),
                key: KeyBy::Country,
                allowed_lateness_ms: 0,
                with_state: false,
                aggregates: vec![
                    aggregate("count", AggregateOp::Count),
                    aggregate("spend", AggregateOp::Sum(Field::Amount)),
                ],
            }],
            tables: vec![TableSpec {
                name: "country_spend".into(),
                key: vec!["country".into(), "window_start".into()],
                columns: vec![
                    column("country", ColumnType::Text, "The country."),
                    column("window_start", ColumnType::Time, "Hour start."),
                    column("transactions", ColumnType::Int, "Transactions in the hour."),
                    column("spend", ColumnType::Money(2), "Their amounts summed."),
                ],
            }],
        }
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        for (key, value) in config {
            match (key.as_str(), value.parse::<u32>()) {
                ("factor", Ok(f)) if f > 1 => FACTOR.store(f, Ordering::Relaxed),
                ("factor", _) => {
                    return Err(format!("factor must be an integer above 1, got {value:?}"))
                }
                _ => return Err(format!("unknown setting {key:?} (known: factor)")),
            }
        }
        Ok(())
    }

    fn on_events(batch: &Batch, states: &mut States) -> Result<Vec<Emit>, String> {
        let factor = Decimal::from(FACTOR.load(Ordering::Relaxed));
        let mut customers = Keyed::<Spend>::new(states);
        let mut out = Vec::new();
        for i in 0..batch.len() {
            let spend = customers.get(states, batch.slot(i));
            let amount = batch.amount(i);
            if spend.count >= 3 {
                let mean = spend.total / Decimal::from(spend.count);
                if amount > mean * factor {
                    out.push(alert(
                        batch,
                        i,
                        "big-spender",
                        "BIG_SPEND",
                        Severity::Medium,
                        0.6,
                        format!("amount {amount} is over {factor}x the customer's mean {mean:.2}"),
                    ));
                }
            }
            spend.count += 1;
            spend.total += amount;
        }
        customers.write_back(states);
        Ok(out)
    }

    fn on_window(
        window: Window,
        aggregates: Aggregates<'_>,
        _state: &mut KeyState<'_>,
    ) -> Result<Vec<Emit>, String> {
        let spend = aggregates.money(1).unwrap_or_default().round_dp(2);
        Ok(vec![row(
            "country_spend",
            vec![
                text(window.key),
                Value::Time(window.start),
                Value::Int(aggregates.count(0) as i64),
                money_value(spend),
            ],
        )])
    }
}

edge_rule_sdk::rule_set!(BigSpender);
