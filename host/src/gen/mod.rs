//! The built-in generator of realistic payment traffic.
//!
//! Customers come in tiers BASIC/PREMIUM/VIP/ENTERPRISE (60/25/10/5 %), with
//! amount ranges per tier and busier higher tiers (weights 1/2/3/4). Traffic
//! follows time-of-day multipliers in simulated event time. Risk scores
//! (0 to 100, with their level, as the reference systems write them) and
//! compliance flags follow fixed rules; planted fraud patterns (bursts of
//! small amounts, far locations on new devices, amount spikes) give the rule
//! sets something to find; a fraction of records is dirty on purpose. The same
//! seed gives the same records, byte for byte.

use crate::config::GeneratorConfig;
use crate::dims::{CustomerDim, Dims, MerchantDim};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BinaryHeap;
use std::io::Write;

const TIERS: [(&str, u32, f64, f64, u32); 4] = [
    // name, share %, min amount, max amount, activity weight
    ("BASIC", 60, 5.0, 500.0, 1),
    ("PREMIUM", 25, 20.0, 2_000.0, 2),
    ("VIP", 10, 50.0, 10_000.0, 3),
    ("ENTERPRISE", 5, 100.0, 50_000.0, 4),
];

const SEGMENTS: [&str; 5] = [
    "students",
    "young_professionals",
    "families",
    "retirees",
    "small_business",
];

const CITIES: [(&str, &str); 20] = [
    ("US", "New York"),
    ("US", "San Francisco"),
    ("US", "Chicago"),
    ("GB", "London"),
    ("GB", "Manchester"),
    ("DE", "Berlin"),
    ("DE", "Munich"),
    ("FR", "Paris"),
    ("NL", "Amsterdam"),
    ("ES", "Madrid"),
    ("IN", "Mumbai"),
    ("IN", "Bangalore"),
    ("SG", "Singapore"),
    ("JP", "Tokyo"),
    ("AU", "Sydney"),
    ("CA", "Toronto"),
    ("BR", "Sao Paulo"),
    ("MX", "Mexico City"),
    ("AE", "Dubai"),
    ("ZA", "Johannesburg"),
];

const CURRENCIES: [(&str, &str); 14] = [
    ("US", "USD"),
    ("GB", "GBP"),
    ("DE", "EUR"),
    ("FR", "EUR"),
    ("NL", "EUR"),
    ("ES", "EUR"),
    ("IN", "INR"),
    ("SG", "SGD"),
    ("JP", "JPY"),
    ("AU", "AUD"),
    ("CA", "CAD"),
    ("BR", "BRL"),
    ("MX", "MXN"),
    ("AE", "AED"),
];

const CATEGORIES: [&str; 10] = [
    "grocery",
    "electronics",
    "travel",
    "restaurants",
    "fuel",
    "fashion",
    "entertainment",
    "health",
    "utilities",
    "online_services",
];

/// Kind weights (per mille): purchase, payment, transfer, withdrawal, deposit, wire, refund.
const KINDS: [(&str, u32); 7] = [
    ("PURCHASE", 500),
    ("PAYMENT", 150),
    ("TRANSFER", 150),
    ("WITHDRAWAL", 80),
    ("DEPOSIT", 70),
    ("WIRE_TRANSFER", 30),
    ("REFUND", 20),
];

const STATUSES: [(&str, u32); 4] = [
    ("COMPLETED", 920),
    ("PENDING", 40),
    ("FAILED", 30),
    ("REVERSED", 10),
];

/// Traffic multiplier per hour of day (UTC).
const HOURLY: [f64; 24] = [
    0.25, 0.2, 0.15, 0.15, 0.2, 0.3, 0.5, 0.8, 1.1, 1.3, 1.3, 1.4, 1.6, 1.5, 1.3, 1.2, 1.2, 1.4,
    1.6, 1.7, 1.5, 1.1, 0.7, 0.4,
];

/// The kinds of dirty record the generator plants.
pub const DIRTY_KINDS: [&str; 11] = [
    "truncated",
    "malformed",
    "missing_customer",
    "missing_id",
    "negative_amount",
    "non_numeric_amount",
    "unknown_kind",
    "invalid_utf8",
    "duplicate",
    "far_future",
    "wrong_type",
];

struct Customer {
    id: String,
    account: String,
    tier: usize,
    home: usize,
    devices: Vec<String>,
}

struct Merchant {
    id: String,
    city: usize,
}

/// One generated record.
pub struct Generated {
    /// The record's bytes (JSON, or deliberately broken).
    pub bytes: Vec<u8>,
    /// Which dirty kind it is, if dirty.
    pub dirty: Option<&'static str>,
    /// Which fraud pattern it belongs to, if any, and which planted
    /// incident (numbered from 1; the events of one burst share it).
    pub fraud: Option<(&'static str, u64)>,
}

/// A planted event waiting for simulated time to reach it.
struct Scheduled {
    time: i64,
    seq: u64,
    event: Event,
    pattern: &'static str,
    incident: u64,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

#[derive(Clone)]
struct Event {
    customer: usize,
    kind: &'static str,
    status: &'static str,
    cents: i64,
    merchant: Option<usize>,
    city: usize,
    device: String,
    channel: &'static str,
    time: i64,
}

/// The generator. Deterministic for a given [`GeneratorConfig`].
pub struct Generator {
    rng: ChaCha8Rng,
    customers: Vec<Customer>,
    cumulative_weights: Vec<u64>,
    merchants: Vec<Merchant>,
    merchant_dims: Vec<MerchantDim>,
    customer_dims: Vec<CustomerDim>,
    clock: f64,
    traffic: f64,
    dirty: f64,
    fraud: f64,
    seq: u64,
    scheduled: BinaryHeap<Scheduled>,
    last: Vec<u8>,
    customer_churn: f64,
    device_churn: f64,
    /// The simulated day of the last event (days since the epoch).
    day: i64,
    /// The number of the next new customer.
    next_customer: u32,
    /// Customers replaced since the last [`Generator::take_churned`]:
    /// (the old id, the new customer).
    churned: Vec<(String, CustomerDim)>,
    /// Dirty records planted so far.
    planted: u64,
    /// Fraud incidents planted so far.
    incidents: u64,
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, weighted: &[(T, u32)]) -> T {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut n = rng.random_range(0..total);
    for (v, w) in weighted {
        if n < *w {
            return *v;
        }
        n -= w;
    }
    weighted[0].0
}

impl Generator {
    /// A generator with its population of customers and merchants.
    pub fn new(config: &GeneratorConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let start = config.start_ms().unwrap_or(1_767_571_200_000);
        let tier_shares: Vec<(usize, u32)> =
            TIERS.iter().enumerate().map(|(i, t)| (i, t.1)).collect();
        let mut customers = Vec::new();
        let mut customer_dims = Vec::new();
        let mut cumulative_weights = Vec::new();
        let mut total = 0u64;
        for n in 0..config.customers {
            let tier = pick(&mut rng, &tier_shares);
            let home = rng.random_range(0..CITIES.len());
            let devices = (0..rng.random_range(1..=2))
                .map(|_| format!("dev-{:012x}", rng.random::<u64>() >> 16))
                .collect();
            let id = format!("CUST_{:06}", n + 1);
            let signup_days = rng.random_range(1..1500);
            customer_dims.push(CustomerDim {
                id: id.clone(),
                tier: TIERS[tier].0.to_string(),
                segment: SEGMENTS[rng.random_range(0..SEGMENTS.len())].to_string(),
                signup_time: start - signup_days * 86_400_000,
                country: CITIES[home].0.to_string(),
                city: CITIES[home].1.to_string(),
            });
            customers.push(Customer {
                account: format!("ACC_{:08}", n + 1),
                id,
                tier,
                home,
                devices,
            });
            total += u64::from(TIERS[tier].4);
            cumulative_weights.push(total);
        }
        let mut merchants = Vec::new();
        let mut merchant_dims = Vec::new();
        for n in 0..config.merchants {
            let city = rng.random_range(0..CITIES.len());
            let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
            let id = format!("MERCH_{:05}", n + 1);
            merchant_dims.push(MerchantDim {
                id: id.clone(),
                name: format!(
                    "{} {} #{}",
                    CITIES[city].1,
                    category.replace('_', " "),
                    n + 1
                ),
                category: category.to_string(),
                country: CITIES[city].0.to_string(),
                city: CITIES[city].1.to_string(),
            });
            merchants.push(Merchant { id, city });
        }
        Self {
            rng,
            customers,
            cumulative_weights,
            merchants,
            merchant_dims,
            customer_dims,
            clock: start as f64,
            traffic: config.traffic as f64,
            dirty: config.dirty,
            fraud: config.fraud,
            seq: 0,
            scheduled: BinaryHeap::new(),
            last: Vec::new(),
            customer_churn: config.customer_churn,
            device_churn: config.device_churn,
            day: start.div_euclid(86_400_000),
            next_customer: config.customers + 1,
            churned: Vec::new(),
            planted: 0,
            incidents: 0,
        }
    }

    /// Dirty records planted so far (each should be a dead letter).
    pub fn planted(&self) -> u64 {
        self.planted
    }

    /// The customers replaced since the last call, as (old id, new
    /// customer), for the dimension table.
    pub fn take_churned(&mut self) -> Vec<(String, CustomerDim)> {
        std::mem::take(&mut self.churned)
    }

    /// A simulated midnight: some customers leave and new ones come, some
    /// get a new device.
    fn new_day(&mut self) {
        let replaced = (self.customers.len() as f64 * self.customer_churn).round() as usize;
        for _ in 0..replaced {
            let i = self.rng.random_range(0..self.customers.len());
            let n = self.next_customer;
            self.next_customer += 1;
            let home = self.rng.random_range(0..CITIES.len());
            let devices = (0..self.rng.random_range(1..=2))
                .map(|_| format!("dev-{:012x}", self.rng.random::<u64>() >> 16))
                .collect();
            let c = &mut self.customers[i];
            let old = std::mem::replace(&mut c.id, format!("CUST_{n:06}"));
            c.account = format!("ACC_{n:08}");
            c.home = home;
            c.devices = devices;
            let dim = &mut self.customer_dims[i];
            dim.id = c.id.clone();
            dim.signup_time = self.clock as i64;
            dim.country = CITIES[home].0.to_string();
            dim.city = CITIES[home].1.to_string();
            self.churned.push((old, dim.clone()));
        }
        let renewed = (self.customers.len() as f64 * self.device_churn).round() as usize;
        for _ in 0..renewed {
            let i = self.rng.random_range(0..self.customers.len());
            let device = format!("dev-{:012x}", self.rng.random::<u64>() >> 16);
            let devices = &mut self.customers[i].devices;
            if devices.len() >= 3 {
                devices.remove(0);
            }
            devices.push(device);
        }
    }

    /// The simulated time: that of the latest event (ms since the epoch).
    pub fn now_ms(&self) -> i64 {
        self.clock as i64
    }

    /// The customers and merchants as dimension tables.
    pub fn dims(&self) -> Dims {
        let mut dims = Dims::default();
        self.customer_dims
            .iter()
            .cloned()
            .for_each(|c| dims.put_customer(c));
        self.merchant_dims
            .iter()
            .cloned()
            .for_each(|m| dims.put_merchant(m));
        dims
    }

    /// The customers as JSON lines (the format `[dimensions] customers` reads).
    pub fn customers_jsonl(&self) -> String {
        self.customer_dims
            .iter()
            .map(|c| {
                serde_json::json!({
                    "customer_id": c.id, "tier": c.tier, "segment": c.segment,
                    "signup_date": crate::model::iso_time(c.signup_time),
                    "country": c.country, "city": c.city,
                })
                .to_string()
                    + "\n"
            })
            .collect()
    }

    /// The merchants as JSON lines.
    pub fn merchants_jsonl(&self) -> String {
        self.merchant_dims
            .iter()
            .map(|m| {
                serde_json::json!({
                    "merchant_id": m.id, "name": m.name, "category": m.category,
                    "country": m.country, "city": m.city,
                })
                .to_string()
                    + "\n"
            })
            .collect()
    }

    fn pick_customer(&mut self) -> usize {
        let total = *self.cumulative_weights.last().unwrap_or(&1);
        let n = self.rng.random_range(0..total);
        self.cumulative_weights.partition_point(|&w| w <= n)
    }

    fn pick_merchant_near(&mut self, city: usize) -> usize {
        // Two tries at a merchant in the same city, then anywhere.
        for _ in 0..2 {
            let m = self.rng.random_range(0..self.merchants.len());
            if self.merchants[m].city == city {
                return m;
            }
        }
        self.rng.random_range(0..self.merchants.len())
    }

    fn amount_cents(&mut self, tier: usize) -> i64 {
        let (lo, hi) = (TIERS[tier].2, TIERS[tier].3);
        let x: f64 = self.rng.random_range(lo.ln()..hi.ln());
        (x.exp() * 100.0).round() as i64
    }

    fn advance_clock(&mut self) -> i64 {
        let hour = crate::model::hour_of_day(self.clock as i64) as usize;
        let rate = self.traffic * HOURLY[hour];
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        self.clock += -u.ln() * 1000.0 / rate;
        self.clock as i64
    }

    fn normal_event(&mut self, time: i64) -> Event {
        let customer = self.pick_customer();
        let c = &self.customers[customer];
        let (tier, home) = (c.tier, c.home);
        let kind = pick(&mut self.rng, &KINDS);
        let status = pick(&mut self.rng, &STATUSES);
        let mut cents = self.amount_cents(tier);
        if self.rng.random_bool(0.003) {
            cents = self.rng.random_range(900_000..1_000_000);
        }
        let city = if self.rng.random_bool(0.05) {
            // A trip within the home country.
            let country = CITIES[home].0;
            let same: Vec<usize> = (0..CITIES.len())
                .filter(|&i| CITIES[i].0 == country)
                .collect();
            same[self.rng.random_range(0..same.len())]
        } else {
            home
        };
        let merchant = matches!(kind, "PURCHASE" | "PAYMENT" | "REFUND")
            .then(|| self.pick_merchant_near(city));
        let channel = match kind {
            "WITHDRAWAL" => "atm",
            "DEPOSIT" => ["atm", "branch", "mobile"][self.rng.random_range(0..3)],
            "PURCHASE" => ["pos", "web", "mobile"][self.rng.random_range(0..3)],
            _ => ["web", "mobile"][self.rng.random_range(0..2)],
        };
        let devices = &self.customers[customer].devices;
        let device = devices[self.rng.random_range(0..devices.len())].clone();
        // Some events arrive a little out of order (within the default 5 s bound).
        let jitter = if self.rng.random_bool(0.1) {
            self.rng.random_range(0..2_000)
        } else {
            0
        };
        Event {
            customer,
            kind,
            status,
            cents,
            merchant,
            city,
            device,
            channel,
            time: time - jitter,
        }
    }

    fn plant_fraud(&mut self, time: i64) {
        let base = self.normal_event(time);
        let tier = self.customers[base.customer].tier;
        let pattern = self.rng.random_range(0..3);
        let mut planned: Vec<(Event, &'static str)> = Vec::new();
        match pattern {
            0 => {
                // Card testing: a burst of small purchases within 40 seconds.
                for k in 0..8 {
                    let mut e = base.clone();
                    e.kind = "PURCHASE";
                    e.channel = "web";
                    e.status = "COMPLETED";
                    e.cents = self.rng.random_range(100..499);
                    e.merchant = Some(self.rng.random_range(0..self.merchants.len()));
                    e.time = time + k * 5_000;
                    planned.push((e, "burst"));
                }
            }
            1 => {
                // Account takeover: far away, new device, a large cash-out.
                let home_country = CITIES[self.customers[base.customer].home].0;
                let mut far = self.rng.random_range(0..CITIES.len());
                while CITIES[far].0 == home_country {
                    far = (far + 1) % CITIES.len();
                }
                let mut e = base;
                e.city = far;
                e.device = format!("dev-{:012x}", self.rng.random::<u64>() >> 16);
                e.kind = if self.rng.random_bool(0.5) {
                    "WITHDRAWAL"
                } else {
                    "WIRE_TRANSFER"
                };
                e.channel = if e.kind == "WITHDRAWAL" { "atm" } else { "web" };
                e.merchant = None;
                e.cents = (TIERS[tier].3 * 100.0 * self.rng.random_range(0.5..2.0)) as i64;
                planned.push((e, "far_location"));
            }
            _ => {
                // Amount spike: 5 to 20 times the tier's largest amount.
                let mut e = base;
                e.cents = (TIERS[tier].3 * 100.0 * self.rng.random_range(5.0..20.0)) as i64;
                planned.push((e, "amount_spike"));
            }
        }
        self.incidents += 1;
        for (event, pattern) in planned {
            self.seq += 1;
            self.scheduled.push(Scheduled {
                time: event.time,
                seq: self.seq,
                event,
                pattern,
                incident: self.incidents,
            });
        }
    }

    fn uuid(&mut self) -> String {
        let a: u64 = self.rng.random();
        let b: u64 = self.rng.random();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    fn render(&mut self, e: &Event) -> Vec<u8> {
        let c = &self.customers[e.customer];
        let (tier, home) = (c.tier, c.home);
        let (country, city) = CITIES[e.city];
        let currency = CURRENCIES
            .iter()
            .find(|(c, _)| *c == CITIES[home].0)
            .map_or("USD", |(_, cur)| cur);
        let amount = e.cents as f64 / 100.0;
        let fee_cents = match e.kind {
            "PURCHASE" => e.cents * 15 / 1000,
            "PAYMENT" => e.cents / 100,
            "TRANSFER" => e.cents / 200,
            "WIRE_TRANSFER" => (e.cents / 100).max(1_500),
            "WITHDRAWAL" => 250,
            _ => 0,
        };
        let hour = crate::model::hour_of_day(e.time) as usize;
        let foreign = CITIES[e.city].0 != CITIES[home].0;
        let base_risk = [0.2, 0.15, 0.1, 0.08][tier];
        let mut risk = base_risk
            + (amount / TIERS[tier].3).min(3.0) * 0.15
            + if foreign { 0.35 } else { 0.0 }
            + if hour < 5 { 0.1 } else { 0.0 }
            + self.rng.random_range(0.0..0.2);
        risk = (risk.min(1.0) * 1000.0).round() / 1000.0;
        // Written as the reference systems write it: a score from 0 to 100
        // with its level (CRITICAL above 80, HIGH above 60, MEDIUM above 30).
        let score = (risk * 1000.0).round() / 10.0;
        let level = match score {
            s if s > 80.0 => "CRITICAL",
            s if s > 60.0 => "HIGH",
            s if s > 30.0 => "MEDIUM",
            _ => "LOW",
        };
        let mut flags: Vec<&str> = Vec::new();
        if e.cents > 1_000_000 {
            flags.push("HIGH_VALUE");
        }
        if risk >= 0.8 {
            flags.push("HIGH_RISK");
        }
        if (900_000..1_000_000).contains(&e.cents) {
            flags.push("STRUCTURING_SUSPECTED");
        }
        if (e.kind == "WIRE_TRANSFER" && e.cents > 500_000) || (foreign && e.cents > 300_000) {
            flags.push("SANCTIONS_CHECK_REQUIRED");
        }
        let id = self.uuid();
        let c = &self.customers[e.customer];
        let mut out = Vec::with_capacity(512);
        let _ = write!(
            out,
            r#"{{"transaction_id":"{id}","customer_id":"{}","account_id":"{}","#,
            c.id, c.account
        );
        if let Some(m) = e.merchant {
            let _ = write!(out, r#""merchant_id":"{}","#, self.merchants[m].id);
        }
        let _ = write!(
            out,
            r#""transaction_type":"{}","status":"{}","amount":"{}.{:02}","fee_amount":"{}.{:02}","currency":"{currency}","channel":"{}","device_fingerprint":"{}","location":{{"country":"{country}","city":"{city}"}},"risk_score":{score},"risk_level":"{level}","compliance_flags":["#,
            e.kind,
            e.status,
            e.cents / 100,
            e.cents % 100,
            fee_cents / 100,
            fee_cents % 100,
            e.channel,
            e.device,
        );
        for (n, f) in flags.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let _ = write!(out, "\"{f}\"");
        }
        let _ = write!(
            out,
            r#"],"created_at":"{}"}}"#,
            crate::model::iso_time(e.time)
        );
        out
    }

    fn make_dirty(&mut self, clean: Vec<u8>) -> (Vec<u8>, &'static str) {
        let mut kind = DIRTY_KINDS[self.rng.random_range(0..DIRTY_KINDS.len())];
        if kind == "duplicate" && self.last.is_empty() {
            // Nothing to duplicate yet: plant a wrong type instead, and say so.
            kind = "wrong_type";
        }
        let text = String::from_utf8_lossy(&clean).into_owned();
        let bytes = match kind {
            "truncated" => clean[..clean.len() / 2].to_vec(),
            "malformed" => text.replacen("\":\"", "\" \"", 1).into_bytes(),
            "missing_customer" => remove_field(&text, "customer_id").into_bytes(),
            "missing_id" => remove_field(&text, "transaction_id").into_bytes(),
            "negative_amount" => text
                .replacen("\"amount\":\"", "\"amount\":\"-", 1)
                .into_bytes(),
            "non_numeric_amount" => replace_field(&text, "amount", "\"twelve\"").into_bytes(),
            "unknown_kind" => replace_field(&text, "transaction_type", "\"TELEPORT\"").into_bytes(),
            "invalid_utf8" => {
                let mut b = clean;
                let at = b.len() / 3;
                b.splice(at..at, [0xff, 0xfe]);
                b
            }
            "duplicate" => self.last.clone(),
            "far_future" => {
                replace_field(&text, "created_at", "\"2999-01-01T00:00:00Z\"").into_bytes()
            }
            _ => replace_field(&text, "amount", "true").into_bytes(),
        };
        (bytes, kind)
    }

    /// The next record.
    pub fn next_record(&mut self) -> Generated {
        let now = self.clock as i64;
        if self.scheduled.peek().is_some_and(|s| s.time <= now) {
            if let Some(s) = self.scheduled.pop() {
                let bytes = self.render(&s.event);
                self.last.clone_from(&bytes);
                return Generated {
                    bytes,
                    dirty: None,
                    fraud: Some((s.pattern, s.incident)),
                };
            }
        }
        let time = self.advance_clock();
        let day = time.div_euclid(86_400_000);
        if day != self.day {
            self.day = day;
            if self.customer_churn > 0.0 || self.device_churn > 0.0 {
                self.new_day();
            }
        }
        if self.fraud > 0.0 && self.rng.random_bool(self.fraud / 4.0) {
            self.plant_fraud(time);
        }
        let event = self.normal_event(time);
        let clean = self.render(&event);
        if self.dirty > 0.0 && self.rng.random_bool(self.dirty) {
            self.planted += 1;
            let (bytes, kind) = self.make_dirty(clean);
            return Generated {
                bytes,
                dirty: Some(kind),
                fraud: None,
            };
        }
        self.last.clone_from(&clean);
        Generated {
            bytes: clean,
            dirty: None,
            fraud: None,
        }
    }
}

fn field_span(text: &str, name: &str) -> Option<(usize, usize)> {
    let key = format!("\"{name}\":");
    let start = text.find(&key)?;
    let value_start = start + key.len();
    let rest = &text[value_start..];
    let len = if let Some(inner) = rest.strip_prefix('"') {
        inner.find('"')? + 2
    } else {
        rest.find([',', '}'])?
    };
    Some((start, value_start + len))
}

fn remove_field(text: &str, name: &str) -> String {
    match field_span(text, name) {
        Some((start, mut end)) => {
            if text[end..].starts_with(',') {
                end += 1;
            }
            format!("{}{}", &text[..start], &text[end..])
        }
        None => text.to_string(),
    }
}

fn replace_field(text: &str, name: &str, value: &str) -> String {
    match field_span(text, name) {
        Some((start, end)) => format!("{}\"{name}\":{value}{}", &text[..start], &text[end..]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DecodeConfig, GeneratorConfig};
    use crate::decode::Decoder;
    use crate::model::Format;
    use crate::model::Interner;

    fn config(dirty: f64) -> GeneratorConfig {
        GeneratorConfig {
            dirty,
            customers: 200,
            merchants: 20,
            ..GeneratorConfig::default()
        }
    }

    #[test]
    fn same_seed_same_records() {
        let mut a = Generator::new(&config(0.05));
        let mut b = Generator::new(&config(0.05));
        for _ in 0..2_000 {
            assert_eq!(a.next_record().bytes, b.next_record().bytes);
        }
    }

    #[test]
    fn clean_records_decode_and_dirty_ones_are_rejected() {
        let mut g = Generator::new(&GeneratorConfig {
            fraud: 0.05,
            ..config(0.1)
        });
        let d = Decoder::new(Format::Json, &DecodeConfig::default()).unwrap();
        let mut strings = Interner::default();
        let (mut clean, mut dirty, mut fraud) = (0, 0, 0);
        let mut tiers = std::collections::HashMap::new();
        let dims = g.dims();
        for _ in 0..20_000 {
            let r = g.next_record();
            let decoded = d.decode(&r.bytes, &mut strings);
            match r.dirty {
                // A duplicate is valid JSON; the dedup stage drops it.
                Some("duplicate") => assert!(decoded.is_ok()),
                Some(kind) => assert!(decoded.is_err(), "{kind} decoded"),
                None => {
                    let t = decoded
                        .unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&r.bytes)));
                    clean += 1;
                    fraud += usize::from(r.fraud.is_some());
                    let tier = &dims.customer(strings.resolve(t.customer)).unwrap().tier;
                    *tiers.entry(tier.clone()).or_insert(0u32) += 1;
                }
            }
            dirty += usize::from(r.dirty.is_some());
        }
        assert!((1_500..2_500).contains(&dirty), "{dirty} dirty of 20000");
        assert!(fraud > 100, "{fraud} planted fraud events");
        // Busier higher tiers: VIP customers are a sixth as many as BASIC but weigh 3x.
        assert!(tiers["BASIC"] > tiers["VIP"], "{tiers:?}");
        assert!(clean > 17_000);
    }

    #[test]
    fn customers_churn_at_each_simulated_midnight() {
        let mut g = Generator::new(&GeneratorConfig {
            customer_churn: 0.1,
            device_churn: 0.1,
            traffic: 1,
            ..config(0.0)
        });
        let first: std::collections::HashSet<String> =
            g.customers.iter().map(|c| c.id.clone()).collect();
        // Two simulated days at one event a second before the hour multipliers.
        while g.now_ms() < 1_767_571_200_000 + 2 * 86_400_000 {
            g.next_record();
        }
        let churned = g.take_churned();
        assert_eq!(churned.len(), 40, "10 % of 200 customers, twice");
        let now: std::collections::HashSet<String> =
            g.customers.iter().map(|c| c.id.clone()).collect();
        assert!(now.len() == 200 && now.difference(&first).count() >= 30);
        for (old, new) in &churned {
            assert!(first.contains(old) || churned.iter().any(|(_, c)| &c.id == old));
            assert!(new.id.starts_with("CUST_0002"), "{}", new.id);
        }
        assert!(g.customers.iter().all(|c| c.devices.len() <= 3));
    }

    #[test]
    fn tiers_follow_the_shares() {
        let g = Generator::new(&GeneratorConfig {
            customers: 10_000,
            ..config(0.0)
        });
        let basic = g.customers.iter().filter(|c| c.tier == 0).count();
        let enterprise = g.customers.iter().filter(|c| c.tier == 3).count();
        assert!((5_600..6_400).contains(&basic), "{basic}");
        assert!((350..650).contains(&enterprise), "{enterprise}");
    }
}
