//! Anomaly detection, in real time, per customer.
//!
//! Alerts:
//! - `STATISTICAL_OUTLIER`: |z| > 3 for the amount against the customer's
//!   running mean and standard deviation (Welford), once ten amounts are known.
//! - `PATTERN_DEVIATION`: a device the customer never used before, once ten
//!   transactions are known (stronger for withdrawals and wire transfers).
//! - `VELOCITY_ANOMALY`: spend within ten minutes over five times the
//!   customer's mean amount, across at least three transactions.
//!
//! The running statistics are scores, not money: they use f64; amounts stay exact.

use edge_rule_sdk::{
    Batch, Decimal, Emit, KeyBy, Keyed, Manifest, Reader, RuleSet, Severity, State, States,
    TxnKind, Writer,
};

const WINDOW: i64 = 600_000;
const MAX_DEVICES: usize = 4;

#[derive(Default)]
struct Customer {
    n: u64,
    mean: f64,
    m2: f64,
    devices: Vec<String>,
    /// (event time, amount) within the last ten minutes.
    recent: Vec<(i64, Decimal)>,
    /// Event time of the last velocity alert, to raise it once per burst.
    last_velocity_alert: i64,
}

impl State for Customer {
    fn encode(&self, w: &mut Writer) {
        w.i64(self.n as i64);
        w.f64(self.mean);
        w.f64(self.m2);
        w.u32(self.devices.len() as u32);
        self.devices.iter().for_each(|d| w.str(d));
        w.u32(self.recent.len() as u32);
        for (t, a) in &self.recent {
            w.i64(*t);
            w.decimal(*a);
        }
        w.i64(self.last_velocity_alert);
    }

    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        let n = r.i64()? as u64;
        let mean = r.f64()?;
        let m2 = r.f64()?;
        let k = r.u32()?;
        let devices = r.items(k, 4, Reader::str)?;
        let k = r.u32()?;
        let recent = r.items(k, 24, |r| Some((r.i64()?, r.decimal()?)))?;
        let last_velocity_alert = r.i64()?;
        Some(Self {
            n,
            mean,
            m2,
            devices,
            recent,
            last_velocity_alert,
        })
    }
}

fn alert(
    batch: &Batch,
    i: usize,
    kind: &str,
    severity: Severity,
    score: f64,
    reason: String,
) -> Emit {
    edge_rule_sdk::alert(batch, i, "anomaly", kind, severity, score, reason)
}

fn as_f64(d: Decimal) -> f64 {
    edge_rule_sdk::to_f64(d)
}

struct Anomaly;

impl RuleSet for Anomaly {
    fn manifest() -> Manifest {
        Manifest {
            name: "anomaly".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            state_key: Some(KeyBy::Customer),
            state_ttl_ms: 30 * 24 * 3_600_000,
            windows: Vec::new(),
            tables: Vec::new(),
        }
    }

    fn on_events(batch: &Batch, states: &mut States) -> Result<Vec<Emit>, String> {
        let mut keyed = Keyed::<Customer>::new(states);
        let mut out = Vec::new();
        for i in 0..batch.len() {
            let c = keyed.get(states, batch.slot(i));
            let t = batch.event_time(i);
            let amount = batch.amount(i);
            let x = as_f64(amount);

            if c.n >= 10 {
                let sd = (c.m2 / (c.n - 1) as f64).sqrt();
                if sd > 0.0 {
                    let z = (x - c.mean) / sd;
                    if z.abs() > 3.0 {
                        out.push(alert(
                            batch,
                            i,
                            "STATISTICAL_OUTLIER",
                            if z.abs() > 6.0 {
                                Severity::High
                            } else {
                                Severity::Medium
                            },
                            z.abs() / 6.0,
                            format!(
                                "amount {amount} has z-score {z:.2} (mean {:.2}, sd {sd:.2}, n {})",
                                c.mean, c.n
                            ),
                        ));
                    }
                }
            }

            if let Some(device) = batch.device(i) {
                if !c.devices.iter().any(|d| d == device) {
                    if c.n >= 10 {
                        let risky =
                            matches!(batch.kind(i), TxnKind::Withdrawal | TxnKind::WireTransfer);
                        out.push(alert(
                            batch,
                            i,
                            "PATTERN_DEVIATION",
                            if risky {
                                Severity::High
                            } else {
                                Severity::Medium
                            },
                            if risky { 0.8 } else { 0.6 },
                            format!(
                                "new device {device} after {} transactions on {} known",
                                c.n,
                                c.devices.len()
                            ),
                        ));
                    }
                    if c.devices.len() >= MAX_DEVICES {
                        c.devices.remove(0);
                    }
                    c.devices.push(device.to_string());
                }
            }

            c.recent.retain(|(r, _)| t - r < WINDOW);
            c.recent.push((t, amount));
            if c.recent.len() > 32 {
                c.recent.remove(0);
            }
            if c.n >= 5 && c.recent.len() >= 3 && t - c.last_velocity_alert >= WINDOW {
                let spend: Decimal = c.recent.iter().map(|(_, a)| *a).sum();
                let limit = c.mean * 5.0;
                if as_f64(spend) > limit {
                    c.last_velocity_alert = t;
                    out.push(alert(
                        batch,
                        i,
                        "VELOCITY_ANOMALY",
                        Severity::Medium,
                        0.65,
                        format!(
                            "spent {spend} in {} transactions within ten minutes (mean amount {:.2})",
                            c.recent.len(),
                            c.mean
                        ),
                    ));
                }
            }

            c.n += 1;
            let delta = x - c.mean;
            c.mean += delta / c.n as f64;
            c.m2 += delta * (x - c.mean);
        }
        keyed.write_back(states);
        Ok(out)
    }
}

edge_rule_sdk::rule_set!(Anomaly);
