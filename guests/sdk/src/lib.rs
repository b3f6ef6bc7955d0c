//! The guest side of edge's `edge:rules` world.
//!
//! A rule set implements [`RuleSet`] and exports it with [`rule_set!`]:
//!
//! ```ignore
//! struct Fraud;
//! impl edge_rule_sdk::RuleSet for Fraud { /* manifest, on_events, on_window */ }
//! edge_rule_sdk::rule_set!(Fraud);
//! ```
//!
//! Events arrive as a columnar [`Batch`] (one call per micro-batch); read them
//! column by column, or as canonical [`Transaction`]s with
//! [`Batch::transaction`]. Keyed state arrives with the batch ([`States`]) and
//! only the states a rule changes go back. Money is [`Decimal`], exact.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "rule-set",
        pub_export_macro: true,
        export_macro_name: "__export_rule_set",
        default_bindings_module: "::edge_rule_sdk::bindings",
        generate_unused_types: true,
    });
}

pub use bindings::edge::rules::host;
pub use bindings::edge::rules::types::{
    AggregateOp, AggregateSpec, AggregateValue, Alert, Bands, Column, ColumnType, Customer,
    Decimal as WitDecimal, Emit, EventBatch, EventsResult, Field, Filter, FiredWindow, Geo, KeyBy,
    Level, Manifest, Merchant, Row, Severity, SlidingWindow, StateBlob, TableSpec, Transaction,
    TxnKind, TxnStatus, Value, Window, WindowKind, WindowSpec,
};
pub use rust_decimal::{Decimal, RoundingStrategy};

/// A rule set: what the guest implements.
pub trait RuleSet {
    /// Declares windows, state and tables.
    fn manifest() -> Manifest;
    /// Applies `[rules.<name>.config]`; an error refuses the load.
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }
    /// Handles a micro-batch of events with the keyed state of its keys.
    fn on_events(_batch: &Batch, _states: &mut States) -> Result<Vec<Emit>, String> {
        Ok(Vec::new())
    }
    /// Handles a fired window (the host delivers fired windows in groups;
    /// the SDK calls this once per window).
    fn on_window(_window: Window, _aggregates: Aggregates) -> Result<Vec<Emit>, String> {
        Ok(Vec::new())
    }
}

/// Exports a [`RuleSet`] implementation as the component's `rule` interface.
#[macro_export]
macro_rules! rule_set {
    ($t:ty) => {
        struct __EdgeRuleSetExport;
        impl $crate::bindings::exports::edge::rules::rule::Guest for __EdgeRuleSetExport {
            fn get_manifest() -> $crate::Manifest {
                <$t as $crate::RuleSet>::manifest()
            }
            fn init(config: ::std::vec::Vec<(String, String)>) -> Result<(), String> {
                <$t as $crate::RuleSet>::init(config)
            }
            fn on_events(
                batch: $crate::EventBatch,
                states: $crate::StateBlob,
            ) -> Result<$crate::EventsResult, String> {
                $crate::__on_events::<$t>(batch, states)
            }
            fn on_windows(
                fired: ::std::vec::Vec<$crate::FiredWindow>,
            ) -> Result<::std::vec::Vec<$crate::Emit>, String> {
                let mut emits = ::std::vec::Vec::with_capacity(fired.len());
                for f in fired {
                    emits.extend(<$t as $crate::RuleSet>::on_window(
                        f.window,
                        $crate::Aggregates(f.aggregates),
                    )?);
                }
                Ok(emits)
            }
        }
        $crate::bindings::__export_rule_set!(__EdgeRuleSetExport with_types_in $crate::bindings);
    };
}

#[doc(hidden)]
pub fn __on_events<T: RuleSet>(
    batch: EventBatch,
    states: StateBlob,
) -> Result<EventsResult, String> {
    let batch = Batch(batch);
    let mut states = States {
        changed: vec![None; states.ends.len()],
        blob: states,
    };
    let emits = T::on_events(&batch, &mut states)?;
    let (changed_slots, changed_states) = states.changed();
    Ok(EventsResult {
        emits,
        changed_slots,
        changed_states,
    })
}

/// A micro-batch of events, read column by column.
pub struct Batch(pub EventBatch);

impl Batch {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.0.ids.len()
    }
    /// Dictionary string `index`.
    pub fn dict(&self, index: u32) -> &str {
        let i = index as usize;
        let ends = &self.0.dict_ends;
        let (Some(&end), start) = (ends.get(i), if i == 0 { Some(&0) } else { ends.get(i - 1) })
        else {
            return "";
        };
        let start = start.copied().unwrap_or(0) as usize;
        self.0
            .dict_bytes
            .get(start..end as usize)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
    /// Whether the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.0.ids.is_empty()
    }
    fn text(&self, index: u32) -> &str {
        self.dict(index)
    }
    fn optional(&self, index: u32) -> Option<&str> {
        (index != 0).then(|| self.text(index))
    }
    /// Event `i`'s transaction id.
    pub fn id(&self, i: usize) -> &str {
        self.text(self.0.ids[i])
    }
    /// Event `i`'s customer.
    pub fn customer(&self, i: usize) -> &str {
        self.text(self.0.customers[i])
    }
    /// Event `i`'s account, if any.
    pub fn account(&self, i: usize) -> Option<&str> {
        self.optional(self.0.accounts[i])
    }
    /// Event `i`'s merchant, if any.
    pub fn merchant(&self, i: usize) -> Option<&str> {
        self.optional(self.0.merchants[i])
    }
    /// Event `i`'s kind.
    pub fn kind(&self, i: usize) -> TxnKind {
        self.0.kinds[i]
    }
    /// Event `i`'s status.
    pub fn status(&self, i: usize) -> TxnStatus {
        self.0.statuses[i]
    }
    /// Event `i`'s amount.
    pub fn amount(&self, i: usize) -> Decimal {
        Decimal::new(self.0.amounts[i], u32::from(self.0.money_scale))
    }
    /// Event `i`'s fee.
    pub fn fee(&self, i: usize) -> Decimal {
        Decimal::new(self.0.fees[i], u32::from(self.0.money_scale))
    }
    /// Event `i`'s currency.
    pub fn currency(&self, i: usize) -> &str {
        self.text(self.0.currencies[i])
    }
    /// Event `i`'s channel, if known.
    pub fn channel(&self, i: usize) -> Option<&str> {
        self.optional(self.0.channels[i])
    }
    /// Event `i`'s device fingerprint, if known.
    pub fn device(&self, i: usize) -> Option<&str> {
        self.optional(self.0.devices[i])
    }
    /// Event `i`'s country, if known.
    pub fn country(&self, i: usize) -> Option<&str> {
        self.optional(self.0.countries[i])
    }
    /// Event `i`'s city, if known.
    pub fn city(&self, i: usize) -> Option<&str> {
        self.optional(self.0.cities[i])
    }
    /// Event `i`'s risk score, if given.
    pub fn risk_score(&self, i: usize) -> Option<f64> {
        self.0.risk_scores[i]
    }
    /// Event `i`'s compliance flags.
    pub fn flags(&self, i: usize) -> impl Iterator<Item = &str> + '_ {
        let start = self.0.flag_starts[i] as usize;
        let end = self.0.flag_starts[i + 1] as usize;
        self.0.flag_ids[start..end].iter().map(|&f| self.text(f))
    }
    /// Event `i`'s event time (ms).
    pub fn event_time(&self, i: usize) -> i64 {
        self.0.event_times[i]
    }
    /// Event `i`'s state slot: the index of its key in [`States`].
    pub fn slot(&self, i: usize) -> usize {
        self.0.key_slots.get(i).copied().unwrap_or(0) as usize
    }
    /// The key of a state slot.
    pub fn slot_key(&self, slot: usize) -> &str {
        self.text(self.0.state_keys[slot])
    }
    /// Event `i` as a canonical transaction.
    pub fn transaction(&self, i: usize) -> Transaction {
        Transaction {
            id: self.id(i).to_string(),
            customer_id: self.customer(i).to_string(),
            account_id: self.account(i).map(str::to_string),
            merchant_id: self.merchant(i).map(str::to_string),
            kind: self.kind(i),
            status: self.status(i),
            amount: money(self.amount(i)),
            fee: money(self.fee(i)),
            currency: self.currency(i).to_string(),
            channel: self.channel(i).map(str::to_string),
            device: self.device(i).map(str::to_string),
            location: self.country(i).map(|country| Geo {
                country: country.to_string(),
                city: self.city(i).unwrap_or("").to_string(),
            }),
            risk_score: self.risk_score(i),
            compliance_flags: self.flags(i).map(str::to_string).collect(),
            event_time: self.event_time(i),
        }
    }
}

/// The keyed states of a batch, one slot per distinct key.
pub struct States {
    blob: StateBlob,
    changed: Vec<Option<Vec<u8>>>,
}

impl States {
    /// Number of slots.
    pub fn len(&self) -> usize {
        self.blob.ends.len()
    }
    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.blob.ends.is_empty()
    }
    /// The bytes of a slot's state (its latest write in this call, if any).
    pub fn get(&self, slot: usize) -> Option<&[u8]> {
        if let Some(Some(v)) = self.changed.get(slot) {
            return (!v.is_empty()).then_some(v.as_slice());
        }
        let end = *self.blob.ends.get(slot)? as usize;
        let start = if slot == 0 {
            0
        } else {
            self.blob.ends[slot - 1] as usize
        };
        self.blob.bytes.get(start..end).filter(|b| !b.is_empty())
    }
    /// Replaces a slot's state.
    pub fn set(&mut self, slot: usize, value: Vec<u8>) {
        self.changed[slot] = Some(value);
    }
    /// Deletes a slot's state.
    pub fn delete(&mut self, slot: usize) {
        self.changed[slot] = Some(Vec::new());
    }
    fn changed(self) -> (Vec<u32>, StateBlob) {
        let mut slots = Vec::new();
        let mut blob = StateBlob {
            bytes: Vec::new(),
            ends: Vec::new(),
        };
        for (slot, value) in self.changed.into_iter().enumerate() {
            if let Some(value) = value {
                slots.push(slot as u32);
                blob.bytes.extend_from_slice(&value);
                blob.ends.push(blob.bytes.len() as u32);
            }
        }
        (slots, blob)
    }
}

/// A typed keyed state: how it is written to and read from bytes.
pub trait State: Default {
    /// Writes the state.
    fn encode(&self, w: &mut Writer);
    /// Reads a state; `None` when the bytes do not parse (the state restarts).
    fn decode(r: &mut Reader<'_>) -> Option<Self>;
}

/// Decoded states of a batch, decoded on first use and written back at the end.
pub struct Keyed<S> {
    items: Vec<Option<S>>,
}

impl<S: State> Keyed<S> {
    /// An empty cache for the batch's slots.
    pub fn new(states: &States) -> Self {
        Self {
            items: (0..states.len()).map(|_| None).collect(),
        }
    }
    /// The state of a slot, decoded (or default) on first use.
    pub fn get(&mut self, states: &States, slot: usize) -> &mut S {
        self.items[slot].get_or_insert_with(|| {
            states
                .get(slot)
                .and_then(|bytes| S::decode(&mut Reader::new(bytes)))
                .unwrap_or_default()
        })
    }
    /// Writes every state that was used back to `states`.
    pub fn write_back(self, states: &mut States) {
        for (slot, item) in self.items.into_iter().enumerate() {
            if let Some(state) = item {
                let mut w = Writer::default();
                state.encode(&mut w);
                states.set(slot, w.0);
            }
        }
    }
}

/// Writes state bytes (little-endian, length-prefixed strings).
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// Writes a byte.
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    /// Writes a u32.
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// Writes an i64.
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// Writes an f64.
    pub fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// Writes a decimal exactly.
    pub fn decimal(&mut self, v: Decimal) {
        self.0.extend_from_slice(&v.serialize());
    }
    /// Writes a string.
    pub fn str(&mut self, v: &str) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v.as_bytes());
    }
}

/// Reads what [`Writer`] wrote.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }
    /// Reads a byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    /// Reads a u32.
    pub fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    /// Reads an i64.
    pub fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }
    /// Reads an f64.
    pub fn f64(&mut self) -> Option<f64> {
        self.take().map(f64::from_le_bytes)
    }
    /// Reads a decimal.
    pub fn decimal(&mut self) -> Option<Decimal> {
        self.take().map(Decimal::deserialize)
    }
    /// Reads a string.
    pub fn str(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        if self.bytes.len() < len {
            return None;
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        String::from_utf8(head.to_vec()).ok()
    }
}

/// The aggregates of a fired window, in the order the window spec declares them.
pub struct Aggregates(pub Vec<AggregateValue>);

impl Aggregates {
    /// A `count` or `distinct` result (0 if the aggregate is of another kind).
    pub fn count(&self, i: usize) -> u64 {
        match self.0.get(i) {
            Some(AggregateValue::Count(n)) => *n,
            _ => 0,
        }
    }
    /// A money result; `None` for an empty min/max/avg.
    pub fn money(&self, i: usize) -> Option<Decimal> {
        match self.0.get(i) {
            Some(AggregateValue::Money(d)) => Some(decimal(*d)),
            _ => None,
        }
    }
    /// A number result; `None` for an empty min/max/avg.
    pub fn number(&self, i: usize) -> Option<f64> {
        match self.0.get(i) {
            Some(AggregateValue::Number(n)) => Some(*n),
            _ => None,
        }
    }
    /// A `count-by` or `count-by-band` result, largest first.
    pub fn counts(&self, i: usize) -> &[(String, u64)] {
        match self.0.get(i) {
            Some(AggregateValue::Counts(c)) => c,
            _ => &[],
        }
    }
    /// A `sum-by` result, largest first.
    pub fn sums(&self, i: usize) -> Vec<(&str, Decimal)> {
        match self.0.get(i) {
            Some(AggregateValue::Sums(s)) => {
                s.iter().map(|(k, v)| (k.as_str(), decimal(*v))).collect()
            }
            _ => Vec::new(),
        }
    }
    /// Takes a `collect` result out (`None` when the window collected no events).
    pub fn take_events(&mut self, i: usize) -> Option<Batch> {
        match self.0.get_mut(i) {
            Some(AggregateValue::Events(b)) => Some(Batch(std::mem::replace(
                b,
                EventBatch {
                    dict_bytes: Vec::new(),
                    dict_ends: vec![0],
                    ids: Vec::new(),
                    customers: Vec::new(),
                    accounts: Vec::new(),
                    merchants: Vec::new(),
                    kinds: Vec::new(),
                    statuses: Vec::new(),
                    amounts: Vec::new(),
                    fees: Vec::new(),
                    money_scale: 0,
                    currencies: Vec::new(),
                    channels: Vec::new(),
                    devices: Vec::new(),
                    countries: Vec::new(),
                    cities: Vec::new(),
                    risk_scores: Vec::new(),
                    flag_starts: vec![0],
                    flag_ids: Vec::new(),
                    event_times: Vec::new(),
                    state_keys: Vec::new(),
                    key_slots: Vec::new(),
                },
            ))),
            _ => None,
        }
    }
}

/// A WIT decimal as an exact [`Decimal`].
pub fn decimal(d: WitDecimal) -> Decimal {
    Decimal::new(d.units, u32::from(d.scale))
}

/// An exact [`Decimal`] as a WIT decimal. Values whose digits do not fit an
/// `s64` lose decimal places (rounded half-up) until they do.
pub fn money(d: Decimal) -> WitDecimal {
    let mut d = d;
    if i64::try_from(d.mantissa()).is_err() {
        d = d.normalize();
    }
    loop {
        if let Ok(units) = i64::try_from(d.mantissa()) {
            return WitDecimal {
                units,
                scale: d.scale() as u8,
            };
        }
        if d.scale() == 0 {
            let units = if d.is_sign_negative() {
                i64::MIN
            } else {
                i64::MAX
            };
            return WitDecimal { units, scale: 0 };
        }
        d = d.round_dp_with_strategy(d.scale() - 1, RoundingStrategy::MidpointAwayFromZero);
    }
}

/// Rounds money half-up (away from zero at the midpoint) to `dp` places.
pub fn round_half_up(d: Decimal, dp: u32) -> Decimal {
    d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero)
}

/// A table row.
pub fn row(table: &str, values: Vec<Value>) -> Emit {
    Emit::Row(Row {
        table: table.to_string(),
        values,
    })
}

/// An alert about event `i` of a batch: rule `<rule_set>.<kind in kebab-case>`,
/// with the event's transaction, customer and time; the score is clamped to [0, 1].
pub fn alert(
    batch: &Batch,
    i: usize,
    rule_set: &str,
    kind: &str,
    severity: Severity,
    score: f64,
    reason: String,
) -> Emit {
    Emit::Alert(Alert {
        rule: format!("{rule_set}.{}", kind.to_ascii_lowercase().replace('_', "-")),
        kind: kind.to_string(),
        severity,
        score: score.clamp(0.0, 1.0),
        transaction_id: Some(batch.id(i).to_string()),
        customer_id: Some(batch.customer(i).to_string()),
        reason,
        event_time: batch.event_time(i),
    })
}

/// A text value.
pub fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// A money value.
pub fn money_value(d: Decimal) -> Value {
    Value::Money(money(d))
}

/// A column of an output table.
pub fn column(name: &str, ty: ColumnType, doc: &str) -> Column {
    Column {
        name: name.to_string(),
        ty,
        nullable: false,
        doc: doc.to_string(),
    }
}

/// An aggregate over all events.
pub fn aggregate(name: &str, op: AggregateOp) -> AggregateSpec {
    AggregateSpec {
        name: name.to_string(),
        op,
        filter: None,
    }
}

/// Writes `{"key": value, ...}` as JSON text, for `json` columns.
pub fn json_object<'a, V: std::fmt::Display + 'a>(
    entries: impl IntoIterator<Item = (&'a str, V)>,
    quote_values: bool,
) -> String {
    let mut out = String::from("{");
    for (n, (key, value)) in entries.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        json_string(&mut out, key);
        out.push(':');
        if quote_values {
            json_string(&mut out, &value.to_string());
        } else {
            out.push_str(&value.to_string());
        }
    }
    out.push('}');
    out
}

/// Writes `["a", "b"]` as JSON text.
pub fn json_array<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        json_string(&mut out, item);
    }
    out.push(']');
    out
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The hour of day (UTC) of an event time.
pub fn hour_of_day(event_time: i64) -> u32 {
    (event_time.rem_euclid(86_400_000) / 3_600_000) as u32
}

/// Logs through the host.
pub fn log(level: Level, message: &str) {
    host::log(level, message);
}

/// Marks a column as nullable.
pub fn nullable(mut c: Column) -> Column {
    c.nullable = true;
    c
}
