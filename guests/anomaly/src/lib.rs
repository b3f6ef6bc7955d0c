//! Anomaly detection, in real time, per customer.
//!
//! Alerts:
//! - `STATISTICAL_OUTLIER`: an amount more than 4 standard deviations above
//!   the customer's running mean (Welford), once twenty amounts are known.
//!   Only large amounts count: an unusually small one is no risk.
//! - `PATTERN_DEVIATION`: a device the customer never used before, once ten
//!   transactions are known (stronger for withdrawals and wire transfers).
//! - `VELOCITY_ANOMALY`: a change of pace: spend within ten minutes over
//!   twenty times what the customer usually spends in ten minutes (their
//!   mean amount times their usual number of transactions in ten minutes
//!   since their first, at least one), across at least four transactions.
//!
//! Unlike the reference, which gives each transaction the first rule that
//! matches and takes |z| > 3 either side, every rule that matches raises
//! its alert, and the thresholds are set for few alerts an analyst can act
//! on. `first-match = 1` keeps one alert per transaction, the first in the
//! reference's order (STATISTICAL_OUTLIER, PATTERN_DEVIATION,
//! VELOCITY_ANOMALY). Config (`[rules.anomaly.config]`): `outlier-z` (default 4; 3 with
//! `outlier-both-sides = 1` is the reference's rule), `outlier-min-history`
//! (20), `pattern-min-history` (10), `velocity-factor` (20),
//! `velocity-min-count` (4), `velocity-pace` (1; 0 compares with the mean
//! amount alone: with factor 5 and count 3, the reference's rule).
//!
//! The running statistics are scores, not money: they use f64; amounts stay exact.

use edge_rule_sdk::{
    Batch, Decimal, Emit, KeyBy, Keyed, Manifest, Reader, RuleSet, Severity, State, States,
    TxnKind, Writer,
};
use std::sync::atomic::{AtomicU32, Ordering};

const WINDOW: i64 = 600_000;
const MAX_DEVICES: usize = 4;

static OUTLIER_Z: AtomicU32 = AtomicU32::new(4);
static OUTLIER_BOTH_SIDES: AtomicU32 = AtomicU32::new(0);
static OUTLIER_MIN_HISTORY: AtomicU32 = AtomicU32::new(20);
static PATTERN_MIN_HISTORY: AtomicU32 = AtomicU32::new(10);
static VELOCITY_FACTOR: AtomicU32 = AtomicU32::new(20);
static VELOCITY_MIN_COUNT: AtomicU32 = AtomicU32::new(4);
static VELOCITY_PACE: AtomicU32 = AtomicU32::new(1);
static FIRST_MATCH: AtomicU32 = AtomicU32::new(0);

/// The reference's order, which `first-match` keeps alerts in.
const FIRST_MATCH_ORDER: [&str; 3] = [
    "STATISTICAL_OUTLIER",
    "PATTERN_DEVIATION",
    "VELOCITY_ANOMALY",
];

/// The config keys (whole numbers) and what each sets.
const CONFIG: [(&str, &AtomicU32); 8] = [
    ("outlier-z", &OUTLIER_Z),
    ("outlier-both-sides", &OUTLIER_BOTH_SIDES),
    ("outlier-min-history", &OUTLIER_MIN_HISTORY),
    ("pattern-min-history", &PATTERN_MIN_HISTORY),
    ("velocity-factor", &VELOCITY_FACTOR),
    ("velocity-min-count", &VELOCITY_MIN_COUNT),
    ("velocity-pace", &VELOCITY_PACE),
    ("first-match", &FIRST_MATCH),
];

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
    /// Event time of the first transaction (0: not known, a state written
    /// before it was kept).
    first_seen: i64,
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
        w.i64(self.first_seen);
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
        // Absent from a state written before it was kept.
        let first_seen = r.i64().unwrap_or(0);
        Some(Self {
            n,
            mean,
            m2,
            devices,
            recent,
            last_velocity_alert,
            first_seen,
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

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        edge_rule_sdk::apply_settings(config, &CONFIG)
    }

    fn on_events(batch: &Batch, states: &mut States) -> Result<Vec<Emit>, String> {
        let outlier_z = f64::from(OUTLIER_Z.load(Ordering::Relaxed));
        let both_sides = OUTLIER_BOTH_SIDES.load(Ordering::Relaxed) != 0;
        let outlier_min = u64::from(OUTLIER_MIN_HISTORY.load(Ordering::Relaxed).max(2));
        let pattern_min = u64::from(PATTERN_MIN_HISTORY.load(Ordering::Relaxed));
        let velocity_factor = f64::from(VELOCITY_FACTOR.load(Ordering::Relaxed));
        let velocity_min = VELOCITY_MIN_COUNT.load(Ordering::Relaxed) as usize;
        let pace = VELOCITY_PACE.load(Ordering::Relaxed) != 0;
        let first_match = FIRST_MATCH.load(Ordering::Relaxed) == 1;
        let mut keyed = Keyed::<Customer>::new(states);
        let mut out = Vec::new();
        for i in 0..batch.len() {
            let raised = out.len();
            let c = keyed.get(states, batch.slot(i));
            let t = batch.event_time(i);
            let amount = batch.amount(i);
            let x = as_f64(amount);

            if c.n >= outlier_min {
                let sd = (c.m2 / (c.n - 1) as f64).sqrt();
                if sd > 0.0 {
                    let z = (x - c.mean) / sd;
                    let off = if both_sides { z.abs() } else { z };
                    if off > outlier_z {
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
                    if c.n >= pattern_min {
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
            if c.n >= 5 && c.recent.len() >= velocity_min && t - c.last_velocity_alert >= WINDOW {
                let spend: Decimal = c.recent.iter().map(|(_, a)| *a).sum();
                // Transactions the customer usually makes in ten minutes
                // (over ten minutes at least, and one at least).
                let usual = match c.first_seen {
                    _ if !pace => 1.0,
                    0 => 1.0,
                    first => {
                        let span = (t - first).max(WINDOW) as f64;
                        (c.n as f64 * WINDOW as f64 / span).max(1.0)
                    }
                };
                let limit = c.mean * usual * velocity_factor;
                if as_f64(spend) > limit {
                    c.last_velocity_alert = t;
                    out.push(alert(
                        batch,
                        i,
                        "VELOCITY_ANOMALY",
                        Severity::Medium,
                        0.65,
                        format!(
                            "spent {spend} in {} transactions within ten minutes (mean amount \
                             {:.2}, usually {usual:.1} transactions in ten minutes)",
                            c.recent.len(),
                            c.mean
                        ),
                    ));
                }
            }

            if c.n == 0 {
                c.first_seen = t;
            }
            c.n += 1;
            let delta = x - c.mean;
            c.mean += delta / c.n as f64;
            c.m2 += delta * (x - c.mean);
            if first_match {
                edge_rule_sdk::keep_first_match(&mut out, raised, &FIRST_MATCH_ORDER);
            }
        }
        keyed.write_back(states);
        Ok(out)
    }
}

edge_rule_sdk::rule_set!(Anomaly);
