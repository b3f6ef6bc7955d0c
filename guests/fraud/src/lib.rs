//! Fraud detection, in real time, per customer.
//!
//! Alerts:
//! - `HIGH_AMOUNT`: an amount over four times the customer's largest amount
//!   so far, once two transactions are known (eight times while fewer
//!   than five are).
//! - `FREQUENCY_ANOMALY`: more transactions in the current hour than three
//!   times the customer's average per active hour (and at least 10).
//! - `LOCATION_ANOMALY`: a country the customer never used before, once one
//!   transaction is known.
//! - `TIME_ANOMALY`: an hour of day at which the customer never transacted
//!   and at least three hours from every hour they did, once thirty
//!   transactions are known (stronger at night, 00-05 UTC).
//! - `RAPID_ORDERS`: more than five transactions within one minute, and
//!   more than five times the customer's usual number in a minute (from
//!   their average per active hour).
//! - `CARD_TESTING`: three or more amounts under 5.00 within ten minutes.
//!
//! Unlike the reference, which gives each transaction the first rule that
//! matches, every rule that matches raises its alert: an analyst sees all
//! the reasons at once. `first-match = 1` gives the reference's way: one
//! alert per transaction, the first in the order HIGH_AMOUNT,
//! FREQUENCY_ANOMALY, LOCATION_ANOMALY, TIME_ANOMALY, RAPID_ORDERS,
//! CARD_TESTING (the last two are edge's own).
//!
//! Config (`[rules.fraud.config]`, whole numbers): `rapid-orders-limit`
//! (default 5), `high-amount-factor` (4), `high-amount-min-history` (2),
//! `location-min-history` (1), `time-min-history` (30), `time-gap-hours`
//! (3; 1 gives the reference's rule, any hour never used).

use edge_rule_sdk::{
    Batch, Decimal, Emit, KeyBy, Keyed, Manifest, Reader, RuleSet, Severity, State, States, Writer,
};
use std::sync::atomic::{AtomicU32, Ordering};

static RAPID_LIMIT: AtomicU32 = AtomicU32::new(5);
static HIGH_FACTOR: AtomicU32 = AtomicU32::new(4);
static HIGH_MIN_HISTORY: AtomicU32 = AtomicU32::new(2);
static LOCATION_MIN_HISTORY: AtomicU32 = AtomicU32::new(1);
static TIME_MIN_HISTORY: AtomicU32 = AtomicU32::new(30);
static TIME_GAP_HOURS: AtomicU32 = AtomicU32::new(3);
static FIRST_MATCH: AtomicU32 = AtomicU32::new(0);

/// The order `first-match` keeps alerts in: the reference's, then edge's own.
const FIRST_MATCH_ORDER: [&str; 6] = [
    "HIGH_AMOUNT",
    "FREQUENCY_ANOMALY",
    "LOCATION_ANOMALY",
    "TIME_ANOMALY",
    "RAPID_ORDERS",
    "CARD_TESTING",
];

/// The config keys and what each sets.
const CONFIG: [(&str, &AtomicU32); 7] = [
    ("rapid-orders-limit", &RAPID_LIMIT),
    ("high-amount-factor", &HIGH_FACTOR),
    ("high-amount-min-history", &HIGH_MIN_HISTORY),
    ("location-min-history", &LOCATION_MIN_HISTORY),
    ("time-min-history", &TIME_MIN_HISTORY),
    ("time-gap-hours", &TIME_GAP_HOURS),
    ("first-match", &FIRST_MATCH),
];

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const MAX_COUNTRIES: usize = 8;

#[derive(Default)]
struct Customer {
    count: u32,
    max_amount: Decimal,
    /// Event times within the last minute.
    recent: Vec<i64>,
    /// Event times of small amounts within the last ten minutes.
    small: Vec<i64>,
    hour_start: i64,
    hour_count: u32,
    active_hours: u32,
    past_hours_total: u32,
    countries: Vec<String>,
    hours: [u32; 24],
}

impl State for Customer {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.count);
        w.decimal(self.max_amount);
        w.u32(self.recent.len() as u32);
        self.recent.iter().for_each(|t| w.i64(*t));
        w.u32(self.small.len() as u32);
        self.small.iter().for_each(|t| w.i64(*t));
        w.i64(self.hour_start);
        w.u32(self.hour_count);
        w.u32(self.active_hours);
        w.u32(self.past_hours_total);
        w.u32(self.countries.len() as u32);
        self.countries.iter().for_each(|c| w.str(c));
        self.hours.iter().for_each(|h| w.u32(*h));
    }

    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        let count = r.u32()?;
        let max_amount = r.decimal()?;
        let n = r.u32()?;
        let recent = r.items(n, 8, Reader::i64)?;
        let n = r.u32()?;
        let small = r.items(n, 8, Reader::i64)?;
        let hour_start = r.i64()?;
        let hour_count = r.u32()?;
        let active_hours = r.u32()?;
        let past_hours_total = r.u32()?;
        let n = r.u32()?;
        let countries = r.items(n, 4, Reader::str)?;
        let mut hours = [0u32; 24];
        for h in hours.iter_mut() {
            *h = r.u32()?;
        }
        Some(Self {
            count,
            max_amount,
            recent,
            small,
            hour_start,
            hour_count,
            active_hours,
            past_hours_total,
            countries,
            hours,
        })
    }
}

struct Fraud;

fn alert(
    batch: &Batch,
    i: usize,
    kind: &str,
    severity: Severity,
    score: f64,
    reason: String,
) -> Emit {
    edge_rule_sdk::alert(batch, i, "fraud", kind, severity, score, reason)
}

impl RuleSet for Fraud {
    fn manifest() -> Manifest {
        Manifest {
            name: "fraud".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            state_key: Some(KeyBy::Customer),
            state_ttl_ms: 7 * 24 * HOUR,
            windows: Vec::new(),
            tables: Vec::new(),
        }
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        edge_rule_sdk::apply_settings(config, &CONFIG)
    }

    fn on_events(batch: &Batch, states: &mut States) -> Result<Vec<Emit>, String> {
        let rapid_limit = RAPID_LIMIT.load(Ordering::Relaxed) as usize;
        let high_factor = Decimal::from(HIGH_FACTOR.load(Ordering::Relaxed));
        let high_min = HIGH_MIN_HISTORY.load(Ordering::Relaxed);
        let location_min = LOCATION_MIN_HISTORY.load(Ordering::Relaxed);
        let time_min = TIME_MIN_HISTORY.load(Ordering::Relaxed);
        let time_gap = TIME_GAP_HOURS.load(Ordering::Relaxed).clamp(1, 12) as usize;
        let small_amount = Decimal::new(500, 2);
        let first_match = FIRST_MATCH.load(Ordering::Relaxed) == 1;
        let mut keyed = Keyed::<Customer>::new(states);
        let mut out = Vec::new();
        for i in 0..batch.len() {
            let raised = out.len();
            let c = keyed.get(states, batch.slot(i));
            let t = batch.event_time(i);
            let amount = batch.amount(i);

            // With fewer than five amounts known their largest says less:
            // twice the factor.
            let factor = if c.count < 5 {
                high_factor * Decimal::TWO
            } else {
                high_factor
            };
            if c.count >= high_min && amount > c.max_amount * factor {
                let ratio = if c.max_amount.is_zero() {
                    10.0
                } else {
                    edge_rule_sdk::to_f64(amount / c.max_amount)
                };
                out.push(alert(
                    batch,
                    i,
                    "HIGH_AMOUNT",
                    if ratio > 10.0 {
                        Severity::High
                    } else {
                        Severity::Medium
                    },
                    0.5 + ratio / 40.0,
                    format!(
                        "amount {amount} is {ratio:.1}x the customer's largest so far ({})",
                        c.max_amount
                    ),
                ));
            }

            c.recent.retain(|&r| t - r < MINUTE);
            c.recent.push(t);
            // A customer who transacts often has a higher limit: five
            // times their usual count per minute.
            let per_minute = match c.active_hours {
                0 => 0.0,
                hours => c.past_hours_total as f64 / hours as f64 / 60.0,
            };
            let rapid = rapid_limit.max((5.0 * per_minute).ceil() as usize);
            if c.recent.len() == rapid + 1 {
                out.push(alert(
                    batch,
                    i,
                    "RAPID_ORDERS",
                    Severity::High,
                    0.8,
                    format!(
                        "{} transactions within one minute (limit {rapid})",
                        c.recent.len()
                    ),
                ));
            }
            if c.recent.len() > 16 {
                c.recent.remove(0);
            }

            if amount < small_amount {
                c.small.retain(|&r| t - r < 10 * MINUTE);
                c.small.push(t);
                if c.small.len() == 3 {
                    out.push(alert(
                        batch,
                        i,
                        "CARD_TESTING",
                        Severity::High,
                        0.85,
                        "3 transactions under 5.00 within ten minutes".to_string(),
                    ));
                }
                if c.small.len() > 16 {
                    c.small.remove(0);
                }
            }

            let hour_start = t - t.rem_euclid(HOUR);
            if hour_start != c.hour_start {
                if c.hour_count > 0 {
                    c.active_hours += 1;
                    c.past_hours_total += c.hour_count;
                }
                c.hour_start = hour_start;
                c.hour_count = 0;
            }
            c.hour_count += 1;
            if c.active_hours >= 3 {
                let average = c.past_hours_total as f64 / c.active_hours as f64;
                let limit = (average * 3.0).max(10.0).ceil() as u32;
                if c.hour_count == limit + 1 {
                    out.push(alert(
                        batch,
                        i,
                        "FREQUENCY_ANOMALY",
                        Severity::Medium,
                        0.6,
                        format!(
                            "{} transactions this hour, usual {average:.1} per active hour",
                            c.hour_count
                        ),
                    ));
                }
            }

            if let Some(country) = batch.country(i) {
                if !c.countries.iter().any(|k| k == country) {
                    if c.count >= location_min {
                        out.push(alert(
                            batch,
                            i,
                            "LOCATION_ANOMALY",
                            Severity::High,
                            0.75,
                            format!(
                                "first transaction from {country}; known: {}",
                                c.countries.join(", ")
                            ),
                        ));
                    }
                    if c.countries.len() < MAX_COUNTRIES {
                        c.countries.push(country.to_string());
                    }
                }
            }

            let hour = edge_rule_sdk::hour_of_day(t) as usize;
            // Hours within `time_gap - 1` of this one, either side.
            let near = (0..time_gap).flat_map(|d| [(hour + d) % 24, (hour + 24 - d) % 24]);
            if c.count >= time_min && near.into_iter().all(|h| c.hours[h] == 0) {
                let night = hour < 6;
                out.push(alert(
                    batch,
                    i,
                    "TIME_ANOMALY",
                    if night {
                        Severity::Medium
                    } else {
                        Severity::Low
                    },
                    if night { 0.7 } else { 0.5 },
                    format!(
                        "first transaction at {hour:02}h UTC (none within {} h of it) after {} \
                         transactions",
                        time_gap - 1,
                        c.count
                    ),
                ));
            }
            c.hours[hour] += 1;

            c.count += 1;
            if amount > c.max_amount {
                c.max_amount = amount;
            }
            if first_match {
                edge_rule_sdk::keep_first_match(&mut out, raised, &FIRST_MATCH_ORDER);
            }
        }
        keyed.write_back(states);
        Ok(out)
    }
}

edge_rule_sdk::rule_set!(Fraud);
