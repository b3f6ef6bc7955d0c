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

pub mod pool;

pub use bindings::edge::rules::host;
pub use bindings::edge::rules::types::{
    AggregateOp, AggregateSpec, Alert, Bands, Column, ColumnType, Customer, Decimal as WitDecimal,
    Emit, EventBatch, EventsResult, Field, Filter, Geo, KeyBy, Level, Manifest, Merchant,
    PackedRows, ResultKind, RiskLevel, Row, Severity, SlidingWindow, StateBlob, TableSpec,
    Transaction, TxnKind, TxnStatus, Value, WindowBatch, WindowKind, WindowSpec, WindowsResult,
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
    /// the SDK calls this once per window), with the keyed state of the
    /// window's key.
    fn on_window(
        _window: Window,
        _aggregates: Aggregates<'_>,
        _state: &mut KeyState<'_>,
    ) -> Result<Vec<Emit>, String> {
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
                fired: $crate::WindowBatch,
            ) -> Result<$crate::WindowsResult, String> {
                $crate::__on_windows::<$t>(fired)
            }
        }
        $crate::bindings::__export_rule_set!(__EdgeRuleSetExport with_types_in $crate::bindings);
    };
}

#[doc(hidden)]
pub fn __on_windows<T: RuleSet>(mut fired: WindowBatch) -> Result<WindowsResult, String> {
    dims::refresh();
    let per_window = fired.results_per_window as usize;
    // States with the batch when the spec is declared `with-state`.
    let blob = std::mem::replace(
        &mut fired.states,
        StateBlob {
            bytes: Vec::new(),
            ends: Vec::new(),
        },
    );
    let with_state = blob.ends.len() == fired.keys.len();
    let mut states = States::new(blob);
    // The window before each one with the same key, if any (only states
    // that came with the batch need it).
    let earlier: Vec<Option<usize>> = if with_state {
        let mut last_of_key = rustc_hash::FxHashMap::default();
        (0..fired.keys.len())
            .map(|w| last_of_key.insert(fired.keys[w], w))
            .collect()
    } else {
        Vec::new()
    };
    let dict = Dict::new(&fired.dict_bytes, &fired.dict_ends);
    let events_dict = Dict::new(&fired.events.dict_bytes, &fired.events.dict_ends);
    let mut emits = Vec::with_capacity(fired.keys.len());
    let spec: std::rc::Rc<str> = fired.spec.as_str().into();
    for w in 0..fired.keys.len() {
        let window = Window {
            spec: spec.clone(),
            key: dict.get(fired.keys[w]).to_string(),
            start: fired.starts[w],
            end: fired.ends[w],
            refire: fired.refires[w],
        };
        let aggregates = Aggregates {
            fired: &fired,
            dict,
            events_dict,
            first: w * per_window,
            len: per_window,
        };
        let mut state = KeyState {
            key: dict.get(fired.keys[w]),
            window: w,
            batch: with_state.then_some((&mut states, &earlier[..])),
        };
        emits.extend(T::on_window(window, aggregates, &mut state)?);
    }
    let (changed_windows, changed_states) = states.changed();
    let rows = pack(&mut emits);
    Ok(WindowsResult {
        emits,
        rows,
        changed_windows,
        changed_states,
    })
}

/// The keyed state of a fired window's key. For a spec declared
/// `with-state` it came with the window batch and changes go back with the
/// call's result; otherwise each read and write is a host call
/// (`state-get`, `state-set`). A window sees the changes that earlier
/// windows of its key made in the same call.
pub struct KeyState<'a> {
    key: &'a str,
    window: usize,
    /// The call's states (one slot per window) and, per window, the earlier
    /// window with the same key.
    batch: Option<(&'a mut States, &'a [Option<usize>])>,
}

impl KeyState<'_> {
    /// Calls `f` with the state's bytes (`None` when the key has none).
    fn with_bytes<R>(&self, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let Some((states, earlier)) = &self.batch else {
            return f(host::state_get(self.key).as_deref());
        };
        // The latest write to this key in the call, else the state it
        // started with.
        let mut w = self.window;
        loop {
            match (states.written(w), earlier.get(w).copied().flatten()) {
                (true, _) | (false, None) => return f(states.get(w)),
                (false, Some(before)) => w = before,
            }
        }
    }
    /// The state's bytes (`None` when the key has none).
    pub fn get(&self) -> Option<Vec<u8>> {
        self.with_bytes(|b| b.map(<[u8]>::to_vec))
    }
    /// The state decoded, or the default when there is none (or it does not
    /// parse).
    pub fn read<S: State>(&self) -> S {
        self.with_bytes(|b| b.and_then(|b| S::decode(&mut Reader::new(b))))
            .unwrap_or_default()
    }
    /// Replaces the state with `state`.
    pub fn write<S: State>(&mut self, state: &S) {
        match &mut self.batch {
            Some((states, _)) => states.write(self.window, |w| state.encode(w)),
            None => {
                let mut w = Writer::default();
                state.encode(&mut w);
                host::state_set(self.key, &w.0);
            }
        }
    }
    /// Deletes the state.
    pub fn delete(&mut self) {
        match &mut self.batch {
            Some((states, _)) => states.delete(self.window),
            None => host::state_delete(self.key),
        }
    }
}

#[doc(hidden)]
pub fn __on_events<T: RuleSet>(
    batch: EventBatch,
    states: StateBlob,
) -> Result<EventsResult, String> {
    dims::refresh();
    let batch = Batch::whole(&batch);
    let mut states = States::new(states);
    let mut emits = T::on_events(&batch, &mut states)?;
    let (changed_slots, changed_states) = states.changed();
    let rows = pack(&mut emits);
    Ok(EventsResult {
        emits,
        rows,
        changed_slots,
        changed_states,
    })
}

/// Moves the rows of `emits` into a packing, in order; alerts stay. Rows
/// cross to the host packed: a few flat lists cost less to pass than a list
/// of values per row.
fn pack(emits: &mut Vec<Emit>) -> PackedRows {
    let mut p = PackedRows {
        tables: Vec::new(),
        row_tables: Vec::new(),
        row_lengths: Vec::new(),
        tags: Vec::new(),
        ints: Vec::new(),
        scales: Vec::new(),
        floats: Vec::new(),
        text_bytes: Vec::new(),
        text_ends: Vec::new(),
    };
    if !emits.iter().any(|e| matches!(e, Emit::Row(_))) {
        return p;
    }
    for emit in std::mem::take(emits) {
        let row = match emit {
            Emit::Row(row) => row,
            alert => {
                emits.push(alert);
                continue;
            }
        };
        let table = match p.tables.iter().position(|t| same_text(t, &row.table)) {
            Some(i) => i,
            None => {
                p.tables.push(row.table);
                p.tables.len() - 1
            }
        };
        p.row_tables.push(table as u32);
        p.row_lengths.push(row.values.len() as u32);
        for value in row.values {
            let tag = match value {
                Value::Null => 0,
                Value::Boolean(b) => {
                    p.ints.push(i64::from(b));
                    1
                }
                Value::Int(n) => {
                    p.ints.push(n);
                    2
                }
                Value::Float(x) => {
                    p.floats.push(x);
                    3
                }
                Value::Text(text) => {
                    p.text_bytes.extend_from_slice(text.as_bytes());
                    p.text_ends.push(p.text_bytes.len() as u32);
                    4
                }
                Value::Money(d) => {
                    p.ints.push(d.units);
                    p.scales.push(d.scale);
                    5
                }
                Value::Time(t) => {
                    p.ints.push(t);
                    6
                }
            };
            p.tags.push(tag);
        }
    }
    p
}

/// A dictionary of a batch: strings back to back, read by index. The bytes
/// are checked as UTF-8 once, when the call starts, not at every read.
#[derive(Clone, Copy)]
struct Dict<'a> {
    bytes: &'a [u8],
    /// The whole dictionary as text, when it is valid UTF-8 (the host sends
    /// only valid text; otherwise each string is checked when read).
    text: Option<&'a str>,
    ends: &'a [u32],
}

impl<'a> Dict<'a> {
    fn new(bytes: &'a [u8], ends: &'a [u32]) -> Self {
        Self {
            bytes,
            text: std::str::from_utf8(bytes).ok(),
            ends,
        }
    }

    /// String `index` (empty when out of range or not text).
    fn get(&self, index: u32) -> &'a str {
        let i = index as usize;
        let Some(&end) = self.ends.get(i) else {
            return "";
        };
        let start = if i == 0 {
            0
        } else {
            self.ends.get(i - 1).copied().unwrap_or(0) as usize
        };
        let range = start..end as usize;
        match self.text {
            // `get` checks that both ends fall between characters.
            Some(text) => text.get(range),
            None => self
                .bytes
                .get(range)
                .and_then(|b| std::str::from_utf8(b).ok()),
        }
        .unwrap_or("")
    }
}

/// Events read column by column: a micro-batch, or the events a window
/// collected. Event indexes run from 0 to `len() - 1`.
pub struct Batch<'a> {
    b: &'a EventBatch,
    dict: Dict<'a>,
    start: usize,
    len: usize,
}

impl<'a> Batch<'a> {
    /// Every event of `b`.
    fn whole(b: &'a EventBatch) -> Self {
        Self {
            b,
            dict: Dict::new(&b.dict_bytes, &b.dict_ends),
            start: 0,
            len: b.ids.len(),
        }
    }
    /// Number of events.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Dictionary string `index`.
    pub fn dict(&self, index: u32) -> &'a str {
        self.dict.get(index)
    }
    /// Whether there are no events.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn text(&self, index: u32) -> &'a str {
        self.dict(index)
    }
    fn optional(&self, index: u32) -> Option<&'a str> {
        (index != 0).then(|| self.text(index))
    }
    /// Event `i`'s transaction id.
    pub fn id(&self, i: usize) -> &str {
        self.text(self.b.ids[self.start + i])
    }
    /// Event `i`'s customer.
    pub fn customer(&self, i: usize) -> &str {
        self.text(self.b.customers[self.start + i])
    }
    /// Event `i`'s account, if any.
    pub fn account(&self, i: usize) -> Option<&str> {
        self.optional(self.b.accounts[self.start + i])
    }
    /// Event `i`'s merchant, if any.
    pub fn merchant(&self, i: usize) -> Option<&str> {
        self.optional(self.b.merchants[self.start + i])
    }
    /// Event `i`'s kind.
    pub fn kind(&self, i: usize) -> TxnKind {
        self.b.kinds[self.start + i]
    }
    /// Event `i`'s status.
    pub fn status(&self, i: usize) -> TxnStatus {
        self.b.statuses[self.start + i]
    }
    /// Event `i`'s amount.
    pub fn amount(&self, i: usize) -> Decimal {
        Decimal::new(
            self.b.amounts[self.start + i],
            u32::from(self.b.money_scale),
        )
    }
    /// Event `i`'s fee.
    pub fn fee(&self, i: usize) -> Decimal {
        Decimal::new(self.b.fees[self.start + i], u32::from(self.b.money_scale))
    }
    /// Event `i`'s currency.
    pub fn currency(&self, i: usize) -> &str {
        self.text(self.b.currencies[self.start + i])
    }
    /// Event `i`'s channel, if known.
    pub fn channel(&self, i: usize) -> Option<&str> {
        self.optional(self.b.channels[self.start + i])
    }
    /// Event `i`'s device fingerprint, if known.
    pub fn device(&self, i: usize) -> Option<&str> {
        self.optional(self.b.devices[self.start + i])
    }
    /// Event `i`'s country, if known.
    pub fn country(&self, i: usize) -> Option<&str> {
        self.optional(self.b.countries[self.start + i])
    }
    /// Event `i`'s city, if known.
    pub fn city(&self, i: usize) -> Option<&str> {
        self.optional(self.b.cities[self.start + i])
    }
    /// Event `i`'s risk score in [0, 1], if given.
    pub fn risk_score(&self, i: usize) -> Option<f64> {
        self.b.risk_scores[self.start + i]
    }
    /// Event `i`'s risk level: the record's own, or graded from its score
    /// by the host; `None` when it has neither.
    pub fn risk_level(&self, i: usize) -> Option<RiskLevel> {
        self.b.risk_levels.get(self.start + i).copied().flatten()
    }
    /// Event `i`'s compliance flags.
    pub fn flags(&self, i: usize) -> impl Iterator<Item = &str> + '_ {
        let start = self.b.flag_starts[self.start + i] as usize;
        let end = self.b.flag_starts[self.start + i + 1] as usize;
        self.b.flag_ids[start..end].iter().map(|&f| self.text(f))
    }
    /// Event `i`'s event time (ms).
    pub fn event_time(&self, i: usize) -> i64 {
        self.b.event_times[self.start + i]
    }
    /// The names of the attributes the source maps (`[decode.attributes]`
    /// of the host's config), in name order: attribute `j` of an event is
    /// [`Batch::attribute_at`]`(i, j)`.
    pub fn attribute_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.b.attribute_names.iter().map(|&n| self.text(n))
    }
    /// The place of the attribute `name` among [`Batch::attribute_names`];
    /// `None` when the source does not map it.
    pub fn attribute_index(&self, name: &str) -> Option<usize> {
        self.attribute_names().position(|n| n == name)
    }
    /// Event `i`'s value of attribute `j` (see [`Batch::attribute_index`]),
    /// as text; `None` when the record has none.
    pub fn attribute_at(&self, i: usize, j: usize) -> Option<&str> {
        let n = self.b.attribute_names.len();
        if j >= n {
            return None;
        }
        let v = *self.b.attributes.get((self.start + i) * n + j)?;
        self.optional(v)
    }
    /// Event `i`'s value of the attribute `name`, as text; `None` when the
    /// record has none or the source does not map it.
    pub fn attribute(&self, i: usize, name: &str) -> Option<&str> {
        self.attribute_at(i, self.attribute_index(name)?)
    }
    /// Event `i`'s state slot: the index of its key in [`States`].
    pub fn slot(&self, i: usize) -> usize {
        self.b.key_slots.get(self.start + i).copied().unwrap_or(0) as usize
    }
    /// The key of a state slot.
    pub fn slot_key(&self, slot: usize) -> &str {
        self.text(self.b.state_keys[slot])
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
            risk_level: self.risk_level(i),
            compliance_flags: self.flags(i).map(str::to_string).collect(),
            attributes: (self.attribute_names().enumerate())
                .filter_map(|(j, name)| {
                    Some((name.to_string(), self.attribute_at(i, j)?.to_string()))
                })
                .collect(),
            event_time: self.event_time(i),
        }
    }
}

/// The keyed states of a batch, one slot per distinct key.
///
/// Changed states are written one after another into one buffer, which
/// crosses back to the host as it is: a state costs no allocation of its own.
pub struct States {
    blob: StateBlob,
    /// Where each slot's latest write is in `out`, if it was written.
    changed: Vec<Option<(u32, u32)>>,
    /// Changed states, in the order written.
    out: Writer,
    /// The slots written, in the order written (a slot may repeat).
    written: Vec<u32>,
}

impl States {
    fn new(blob: StateBlob) -> Self {
        Self {
            changed: vec![None; blob.ends.len()],
            blob,
            out: Writer::default(),
            written: Vec::new(),
        }
    }
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
        if let Some(Some((start, end))) = self.changed.get(slot) {
            return (start < end).then(|| &self.out.0[*start as usize..*end as usize]);
        }
        let end = *self.blob.ends.get(slot)? as usize;
        let start = if slot == 0 {
            0
        } else {
            self.blob.ends[slot - 1] as usize
        };
        self.blob.bytes.get(start..end).filter(|b| !b.is_empty())
    }
    /// Whether a slot was written in this call.
    fn written(&self, slot: usize) -> bool {
        matches!(self.changed.get(slot), Some(Some(_)))
    }
    /// Replaces a slot's state.
    pub fn set(&mut self, slot: usize, value: Vec<u8>) {
        self.write(slot, |w| w.0.extend_from_slice(&value));
    }
    /// Replaces a slot's state with what `encode` writes.
    pub fn write(&mut self, slot: usize, encode: impl FnOnce(&mut Writer)) {
        if slot >= self.changed.len() {
            return;
        }
        let start = self.out.0.len() as u32;
        encode(&mut self.out);
        self.changed[slot] = Some((start, self.out.0.len() as u32));
        self.written.push(slot as u32);
    }
    /// Deletes a slot's state.
    pub fn delete(&mut self, slot: usize) {
        self.write(slot, |_| {});
    }
    fn changed(self) -> (Vec<u32>, StateBlob) {
        let Self {
            changed,
            out,
            written,
            ..
        } = self;
        if written.len() == changed.iter().flatten().count() {
            // Every slot written once: the buffer is the blob.
            let ends = written
                .iter()
                .map(|&slot| changed[slot as usize].map_or(0, |(_, end)| end))
                .collect();
            return (written, StateBlob { bytes: out.0, ends });
        }
        let mut slots = Vec::new();
        let mut blob = StateBlob {
            bytes: Vec::new(),
            ends: Vec::new(),
        };
        for (slot, range) in changed.into_iter().enumerate() {
            if let Some((start, end)) = range {
                slots.push(slot as u32);
                blob.bytes
                    .extend_from_slice(&out.0[start as usize..end as usize]);
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
                states.write(slot, |w| state.encode(w));
            }
        }
    }
}

/// Writes state bytes (little-endian, length-prefixed strings).
pub struct Writer(pub Vec<u8>);

impl Default for Writer {
    /// Room for a typical state up front: growing from empty would copy it
    /// several times.
    fn default() -> Self {
        Self(Vec::with_capacity(128))
    }
}

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
    /// Reads `n` items with `item`, each taking at least `min_bytes`
    /// bytes (the capacity is bounded by what is left, whatever `n` says).
    pub fn items<T>(
        &mut self,
        n: u32,
        min_bytes: usize,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        let n = n as usize;
        if n > self.bytes.len() / min_bytes.max(1) {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Some(out)
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

/// A window that fired.
#[derive(Clone, Debug)]
pub struct Window {
    /// The window spec's name (shared by every window of a call).
    pub spec: std::rc::Rc<str>,
    /// The key's value (empty for `global`).
    pub key: String,
    /// Inclusive start (ms).
    pub start: i64,
    /// Exclusive end (ms).
    pub end: i64,
    /// How many times this window fired before (0 the first time; more when
    /// late events within the allowed lateness updated it).
    pub refire: u32,
}

/// The aggregates of a fired window, in the order the window spec declares them.
pub struct Aggregates<'a> {
    fired: &'a WindowBatch,
    dict: Dict<'a>,
    events_dict: Dict<'a>,
    first: usize,
    len: usize,
}

impl<'a> Aggregates<'a> {
    fn result(&self, i: usize) -> Option<(ResultKind, i64, u32, f64)> {
        if i >= self.len {
            return None;
        }
        let f = self.fired;
        let j = self.first + i;
        Some((
            *f.result_kinds.get(j)?,
            *f.result_ints.get(j)?,
            *f.result_extras.get(j)?,
            *f.result_numbers.get(j)?,
        ))
    }
    fn entries(&self, i: usize, kind: ResultKind) -> std::ops::Range<usize> {
        match self.result(i) {
            Some((k, first, n, _)) if k == kind => {
                let first = first.max(0) as usize;
                let end = (first + n as usize).min(self.fired.entry_labels.len());
                first.min(end)..end
            }
            _ => 0..0,
        }
    }
    /// Number of aggregates.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the spec declares no aggregates.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// A `count` or `distinct` result (0 if the aggregate is of another kind).
    pub fn count(&self, i: usize) -> u64 {
        match self.result(i) {
            Some((ResultKind::Count, n, _, _)) => n.max(0) as u64,
            _ => 0,
        }
    }
    /// A money result; `None` for an empty min/max/avg.
    pub fn money(&self, i: usize) -> Option<Decimal> {
        match self.result(i) {
            Some((ResultKind::Money, units, scale, _)) => Some(Decimal::new(units, scale.min(28))),
            _ => None,
        }
    }
    /// A number result; `None` for an empty min/max/avg.
    pub fn number(&self, i: usize) -> Option<f64> {
        match self.result(i) {
            Some((ResultKind::Number, _, _, x)) => Some(x),
            _ => None,
        }
    }
    /// A `count-by` or `count-by-band` result, largest first.
    pub fn counts(&self, i: usize) -> impl ExactSizeIterator<Item = (&'a str, u64)> + Clone + 'a {
        let (f, dict) = (self.fired, self.dict);
        self.entries(i, ResultKind::Counts)
            .map(move |e| (dict.get(f.entry_labels[e]), f.entry_ints[e].max(0) as u64))
    }
    /// A `sum-by` result, largest first.
    pub fn sums(&self, i: usize) -> impl ExactSizeIterator<Item = (&'a str, Decimal)> + Clone + 'a {
        let (f, dict) = (self.fired, self.dict);
        self.entries(i, ResultKind::Sums).map(move |e| {
            let scale = u32::from(f.entry_scales.get(e).copied().unwrap_or(0)).min(28);
            (
                dict.get(f.entry_labels[e]),
                Decimal::new(f.entry_ints[e], scale),
            )
        })
    }
    /// A `collect` result: the window's events (`None` when it collected
    /// none). A window holds at most `engine.max-collect-events` of them;
    /// [`Aggregates::collected`] says how many it had in all.
    pub fn events(&self, i: usize) -> Option<Batch<'a>> {
        match self.result(i) {
            Some((ResultKind::Events | ResultKind::EventsCut, first, n, _)) => {
                let b = &self.fired.events;
                let start = (first.max(0) as usize).min(b.ids.len());
                let len = (n as usize).min(b.ids.len() - start);
                Some(Batch {
                    b,
                    dict: self.events_dict,
                    start,
                    len,
                })
            }
            _ => None,
        }
    }
    /// How many events a `collect` result's window held in all: more than
    /// [`Aggregates::events`] gives when the host cut the list at
    /// `engine.max-collect-events`.
    pub fn collected(&self, i: usize) -> u64 {
        match self.result(i) {
            Some((ResultKind::Events, _, n, _)) => u64::from(n),
            Some((ResultKind::EventsCut, _, _, total)) => total as u64,
            _ => 0,
        }
    }
}

/// Dimension lookups, cached in the guest while the host's dimensions stay
/// the same (the host reports a version that changes with every update).
pub mod dims {
    use super::{host, Customer, Merchant};
    use rustc_hash::FxHashMap as HashMap;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Lookups by a 64-bit hash of the id, each with its id: a different id
    /// with the same hash takes the entry over (it is a cache), and ids are
    /// compared eight bytes at a time rather than by `memcmp`.
    type Lookups<T> = HashMap<u64, (Box<str>, Option<Rc<T>>)>;

    #[derive(Default)]
    struct Cache {
        version: Option<u64>,
        customers: Lookups<Customer>,
        merchants: Lookups<Merchant>,
    }

    thread_local! {
        static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    }

    /// Bounds the cache: past this many entries it starts over.
    const MAX_ENTRIES: usize = 200_000;

    /// Drops cached lookups if the host's dimensions changed (called by the
    /// SDK at the start of every call).
    pub fn refresh() {
        let version = host::dims_version();
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.version != Some(version) {
                c.customers.clear();
                c.merchants.clear();
                c.version = Some(version);
            }
        });
    }

    fn cached<T>(
        id: &str,
        map: impl Fn(&mut Cache) -> &mut Lookups<T>,
        lookup: impl Fn(&str) -> Option<T>,
    ) -> Option<Rc<T>> {
        use std::hash::BuildHasher;
        let hash = rustc_hash::FxBuildHasher.hash_one(id);
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let map = map(&mut c);
            if let Some((known, hit)) = map.get(&hash) {
                if super::same_text(known, id) {
                    return hit.clone();
                }
            }
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            let found = lookup(id).map(Rc::new);
            map.insert(hash, (id.into(), found.clone()));
            found
        })
    }

    /// The customer `id` from the customer dimension.
    pub fn customer(id: &str) -> Option<Rc<Customer>> {
        cached(id, |c| &mut c.customers, host::get_customer)
    }

    /// The merchant `id` from the merchant dimension.
    pub fn merchant(id: &str) -> Option<Rc<Merchant>> {
        cached(id, |c| &mut c.merchants, host::get_merchant)
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

/// The average of `count` amounts summing to `total`, rounded half-up to 2
/// places as the reference systems round it (zero when there are none).
pub fn average(total: Decimal, count: u64) -> Decimal {
    if count == 0 {
        Decimal::ZERO
    } else {
        round_half_up(total / Decimal::from(count), 2)
    }
}

/// `part / whole` rounded to 4 places, for shares and rates (`empty` when
/// `whole` is 0).
pub fn share(part: u64, whole: u64, empty: f64) -> f64 {
    if whole == 0 {
        empty
    } else {
        round4(part as f64 / whole as f64)
    }
}

/// A score or ratio rounded to 4 places.
pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
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
    // `<rule_set>.<kind in kebab-case>`, in one allocation.
    let mut rule = String::with_capacity(rule_set.len() + 1 + kind.len());
    rule.push_str(rule_set);
    rule.push('.');
    rule.extend(kind.chars().map(|c| match c {
        '_' => '-',
        c => c.to_ascii_lowercase(),
    }));
    Emit::Alert(Alert {
        rule,
        kind: kind.to_string(),
        severity,
        score: score.clamp(0.0, 1.0),
        transaction_id: Some(batch.id(i).to_string()),
        customer_id: Some(batch.customer(i).to_string()),
        reason,
        event_time: batch.event_time(i),
    })
}

/// Keeps, of the alerts `emits[from..]` raised for one event, only the
/// first of them in `order` (by kind): for a rule set configured to give
/// each event the first rule that matches, as the reference systems do.
pub fn keep_first_match(emits: &mut Vec<Emit>, from: usize, order: &[&str]) {
    if emits.len() < from + 2 {
        return;
    }
    let rank = |e: &Emit| match e {
        Emit::Alert(a) => order
            .iter()
            .position(|k| *k == a.kind)
            .unwrap_or(order.len()),
        Emit::Row(_) => usize::MAX,
    };
    let best = (from..emits.len())
        .min_by_key(|&i| rank(&emits[i]))
        .unwrap_or(from);
    let kept = emits.swap_remove(best);
    emits.truncate(from);
    emits.push(kept);
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

/// The source's attribute `name` (`[decode.attributes]` of the host's
/// config), as a field windows group by and sum.
pub fn attribute(name: &str) -> Field {
    Field::Attribute(name.to_string())
}

/// An aggregate over the events `filter` accepts.
pub fn filtered(name: &str, op: AggregateOp, filter: Filter) -> AggregateSpec {
    AggregateSpec {
        name: name.to_string(),
        op,
        filter: Some(filter),
    }
}

/// Events with status `status`.
pub fn with_status(status: TxnStatus) -> Filter {
    Filter {
        status_in: vec![status],
        kind_in: Vec::new(),
        flagged: false,
    }
}

/// Events of kind `kind`.
pub fn with_kind(kind: TxnKind) -> Filter {
    Filter {
        status_in: Vec::new(),
        kind_in: vec![kind],
        flagged: false,
    }
}

/// Events with at least one compliance flag.
pub fn flagged() -> Filter {
    Filter {
        status_in: Vec::new(),
        kind_in: Vec::new(),
        flagged: true,
    }
}

/// A tumbling window of `size_ms` keyed by `key`, with no allowed
/// lateness and no state delivered with it.
pub fn tumbling(
    name: &str,
    size_ms: i64,
    key: KeyBy,
    aggregates: Vec<AggregateSpec>,
) -> WindowSpec {
    WindowSpec {
        name: name.to_string(),
        kind: WindowKind::Tumbling(size_ms),
        key,
        allowed_lateness_ms: 0,
        with_state: false,
        aggregates,
    }
}

/// A table of window rows: its columns are `key` (none for a window keyed
/// `global`), `window_start`, `window_end`, then `more`; a row is
/// identified by its key and window start.
pub fn window_table(name: &str, key: Option<Column>, more: Vec<Column>) -> TableSpec {
    let mut columns: Vec<Column> = key.into_iter().collect();
    let mut keys: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    keys.push("window_start".into());
    columns.push(column(
        "window_start",
        ColumnType::Time,
        "Window start (inclusive).",
    ));
    columns.push(column(
        "window_end",
        ColumnType::Time,
        "Window end (exclusive).",
    ));
    columns.extend(more);
    TableSpec {
        name: name.to_string(),
        columns,
        key: keys,
    }
}

/// A value [`json_object`] writes: numbers as their digits, text as is.
pub trait JsonValue {
    /// Appends the value's text to `out`.
    fn write_text(&self, out: &mut String);
}

/// The decimal digits of `n`, at the end of `buf`; returns where they start.
/// (`u64` arithmetic when it fits: 128-bit division is a library call in
/// WebAssembly.)
fn digits_into(buf: &mut [u8; 40], n: u128) -> usize {
    // The same loop for either width.
    macro_rules! digits {
        ($n:expr) => {{
            let mut n = $n;
            let mut at = buf.len();
            loop {
                at -= 1;
                buf[at] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    return at;
                }
            }
        }};
    }
    match u64::try_from(n) {
        Ok(n) => digits!(n),
        Err(_) => digits!(n),
    }
}

/// Appends the decimal digits of `n`.
fn push_digits(out: &mut String, n: u128) {
    let mut buf = [0u8; 40];
    let at = digits_into(&mut buf, n);
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[at..]).unwrap_or("0"));
}

macro_rules! json_integers {
    ($($t:ty),*) => {$(
        impl JsonValue for $t {
            fn write_text(&self, out: &mut String) {
                if *self < 0 {
                    out.push('-');
                }
                push_digits(out, self.unsigned_abs() as u128);
            }
        }
    )*};
}
json_integers!(i32, i64);

macro_rules! json_unsigned {
    ($($t:ty),*) => {$(
        impl JsonValue for $t {
            fn write_text(&self, out: &mut String) {
                push_digits(out, *self as u128);
            }
        }
    )*};
}
json_unsigned!(u32, u64, usize);

impl JsonValue for Decimal {
    /// The same text as `Display`: every decimal place of the scale kept.
    fn write_text(&self, out: &mut String) {
        if self.is_sign_negative() {
            out.push('-');
        }
        let scale = self.scale() as usize;
        let mut buf = [0u8; 40];
        let at = if self.mantissa() == 0 {
            buf.len()
        } else {
            digits_into(&mut buf, self.mantissa().unsigned_abs())
        };
        // Only ASCII digits were written.
        let digits = std::str::from_utf8(&buf[at..]).unwrap_or("");
        if digits.len() <= scale {
            out.push('0');
            if scale > 0 {
                out.push('.');
                out.extend(std::iter::repeat_n('0', scale - digits.len()));
                out.push_str(digits);
            }
        } else {
            let (whole, fraction) = digits.split_at(digits.len() - scale);
            out.push_str(whole);
            if scale > 0 {
                out.push('.');
                out.push_str(fraction);
            }
        }
    }
}

impl JsonValue for f64 {
    fn write_text(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "{self}");
    }
}

impl JsonValue for str {
    fn write_text(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl JsonValue for String {
    fn write_text(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl<T: JsonValue + ?Sized> JsonValue for &T {
    fn write_text(&self, out: &mut String) {
        (**self).write_text(out);
    }
}

/// Writes `{"key": value, ...}` as JSON text, for `json` columns; with
/// `quote_values`, each value as a JSON string.
pub fn json_object<'a, V: JsonValue + 'a>(
    entries: impl IntoIterator<Item = (&'a str, V)>,
    quote_values: bool,
) -> String {
    let mut out = String::with_capacity(64);
    out.push('{');
    let mut text = String::new();
    for (n, (key, value)) in entries.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        json_string(&mut out, key);
        out.push(':');
        if quote_values {
            text.clear();
            value.write_text(&mut text);
            json_string(&mut out, &text);
        } else {
            value.write_text(&mut out);
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

/// Where the first byte of `s` that must be escaped in a JSON string is (a
/// quote, a backslash or a control character), looked for eight bytes at a
/// time.
fn first_to_escape(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = s.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let w = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        // The lowest flagged byte is the first zero byte (after the xor) or
        // the first below 0x20; flags above it may be false.
        let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
        let found = zero_byte(w ^ (ONES * u64::from(b'"')))
            | zero_byte(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let special = |&b: &u8| b == b'"' || b == b'\\' || b < 0x20;
    words.remainder().iter().position(special).map(|i| at + i)
}

fn json_string(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.reserve(s.len() + 2);
    out.push('"');
    let mut rest = s;
    // Runs without a character to escape are copied whole; the characters
    // escaped are ASCII, so every cut is at a character boundary.
    while let Some(i) = first_to_escape(rest.as_bytes()) {
        out.push_str(&rest[..i]);
        match rest.as_bytes()[i] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// Applies `[rules.<name>.config]` to a rule set's settings, each a whole
/// number kept in an atomic (`settings`: key and setting); an unknown key
/// or a value that is not a whole number refuses the load, naming the keys
/// known.
pub fn apply_settings(
    config: Vec<(String, String)>,
    settings: &[(&str, &core::sync::atomic::AtomicU32)],
) -> Result<(), String> {
    for (key, value) in config {
        let parsed: u32 = value
            .parse()
            .map_err(|_| format!("{key} must be a whole number, got {value:?}"))?;
        match settings.iter().find(|(name, _)| *name == key) {
            Some((_, setting)) => setting.store(parsed, core::sync::atomic::Ordering::Relaxed),
            None => {
                let known: Vec<&str> = settings.iter().map(|(name, _)| *name).collect();
                return Err(format!(
                    "unknown config key {key:?} (known: {})",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// The `f64` nearest to a decimal, for scores and statistics (never money):
/// the same value as parsing its text, without formatting it.
pub fn to_f64(d: Decimal) -> f64 {
    const POWERS: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    let (m, scale) = (d.mantissa(), d.scale() as usize);
    // Both operands are exact in f64, so one correctly rounded division
    // gives the nearest f64, as parsing does. (Converted from i64: from
    // i128 is a library call in WebAssembly.)
    if m.unsigned_abs() < 1 << 53 && scale < POWERS.len() {
        return m as i64 as f64 / POWERS[scale];
    }
    d.to_string().parse().unwrap_or(0.0)
}

/// Whether two strings are equal, compared eight bytes at a time (string
/// equality otherwise calls the C library's byte-by-byte `memcmp`): the
/// SDK's own lookups of tables and dimensions use it.
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    for (p, q) in x.by_ref().zip(y.by_ref()) {
        let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        if word(p) != word(q) {
            return false;
        }
    }
    x.remainder().iter().zip(y.remainder()).all(|(p, q)| p == q)
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

/// Rule sets allocate for every batch and window they handle: small blocks
/// are reused by size class ([`pool`]), and everything else comes from talc,
/// which takes fewer instructions per allocation than the default dlmalloc.
#[cfg(all(not(target_feature = "atomics"), target_family = "wasm"))]
#[global_allocator]
static ALLOCATOR: pool::Pool<talc::wasm::WasmDynamicTalc> =
    pool::Pool::new(talc::wasm::new_wasm_dynamic_allocator());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_read_as_display_writes_them() {
        for (units, scale) in [
            (0i64, 0u32),
            (0, 2),
            (5, 0),
            (5, 3),
            (1250, 2),
            (-1250, 2),
            (-5, 4),
            (123456789, 4),
            (i64::MAX, 10),
            (i64::MIN + 1, 0),
        ] {
            let d = Decimal::new(units, scale);
            let mut out = String::new();
            d.write_text(&mut out);
            assert_eq!(out, d.to_string(), "{units} scale {scale}");
        }
        // Mantissas past u64 take the 128-bit path.
        let wide = Decimal::from_i128_with_scale(79_228_162_514_264_337_593_543_950_335, 5);
        let mut out = String::new();
        wide.write_text(&mut out);
        assert_eq!(out, wide.to_string());
        let negative_zero = -Decimal::new(0, 2);
        let mut out = String::new();
        negative_zero.write_text(&mut out);
        assert_eq!(out, negative_zero.to_string());
        for n in [0u64, 7, 10, 99, u64::MAX] {
            let mut out = String::new();
            n.write_text(&mut out);
            assert_eq!(out, n.to_string());
        }
        for n in [0i64, -1, i64::MIN, i64::MAX] {
            let mut out = String::new();
            n.write_text(&mut out);
            assert_eq!(out, n.to_string());
        }
        assert_eq!(
            json_object(
                [("a\"b", Decimal::new(150, 2)), ("c", Decimal::new(-3, 0))],
                true
            ),
            r#"{"a\"b":"1.50","c":"-3"}"#
        );
        assert_eq!(json_object([("x", 3u64)], false), r#"{"x":3}"#);
    }

    #[test]
    fn state_items_read_back_and_refuse_impossible_counts() {
        let mut w = Writer::default();
        w.u32(3);
        for t in [7i64, -1, 42] {
            w.i64(t);
        }
        w.u32(2);
        w.str("DE");
        w.str("é");
        let mut r = Reader::new(&w.0);
        let n = r.u32().unwrap();
        assert_eq!(r.items(n, 8, Reader::i64), Some(vec![7, -1, 42]));
        let n = r.u32().unwrap();
        assert_eq!(
            r.items(n, 4, Reader::str),
            Some(vec!["DE".to_string(), "é".to_string()])
        );
        // A count the remaining bytes cannot hold is refused up front.
        let mut r = Reader::new(&w.0[4..]);
        assert_eq!(r.items(u32::MAX, 8, Reader::i64), None);
        let mut r = Reader::new(&w.0[4..12]);
        assert_eq!(r.items(2, 8, Reader::i64), None);
    }

    #[test]
    fn alerts_name_their_rule_in_kebab_case() {
        let batch = EventBatch {
            dict_bytes: b"t1c1".to_vec(),
            dict_ends: vec![0, 2, 4],
            ids: vec![1],
            customers: vec![2],
            accounts: vec![0],
            merchants: vec![0],
            kinds: vec![TxnKind::Purchase],
            statuses: vec![TxnStatus::Completed],
            money_scale: 2,
            amounts: vec![100],
            fees: vec![0],
            currencies: vec![0],
            channels: vec![0],
            devices: vec![0],
            countries: vec![0],
            cities: vec![0],
            risk_scores: vec![None],
            risk_levels: vec![None],
            flag_starts: vec![0, 0],
            flag_ids: vec![],
            attribute_names: vec![],
            attributes: vec![],
            event_times: vec![5],
            state_keys: vec![2],
            key_slots: vec![0],
        };
        let b = Batch::whole(&batch);
        let Emit::Alert(a) = alert(
            &b,
            0,
            "fraud",
            "RAPID_ORDERS",
            Severity::High,
            2.0,
            "r".into(),
        ) else {
            panic!("an alert");
        };
        assert_eq!(a.rule, "fraud.rapid-orders");
        assert_eq!(a.kind, "RAPID_ORDERS");
        assert_eq!(a.score, 1.0);
        assert_eq!(a.transaction_id.as_deref(), Some("t1"));
        assert_eq!(a.customer_id.as_deref(), Some("c1"));
        assert_eq!(a.event_time, 5);
    }

    #[test]
    fn attributes_are_read_by_name_and_place() {
        // Dictionary: "", t1, t2, c1, order_id, sku, O-1, A7.
        let words = ["t1", "t2", "c1", "order_id", "sku", "O-1", "A7"];
        let mut ends = vec![0];
        let mut bytes = Vec::new();
        for w in words {
            bytes.extend_from_slice(w.as_bytes());
            ends.push(bytes.len() as u32);
        }
        let batch = EventBatch {
            dict_bytes: bytes,
            dict_ends: ends,
            ids: vec![1, 2],
            customers: vec![3, 3],
            accounts: vec![0, 0],
            merchants: vec![0, 0],
            kinds: vec![TxnKind::Purchase; 2],
            statuses: vec![TxnStatus::Completed; 2],
            money_scale: 0,
            amounts: vec![1, 2],
            fees: vec![0, 0],
            currencies: vec![0, 0],
            channels: vec![0, 0],
            devices: vec![0, 0],
            countries: vec![0, 0],
            cities: vec![0, 0],
            risk_scores: vec![None; 2],
            risk_levels: vec![None; 2],
            flag_starts: vec![0, 0, 0],
            flag_ids: vec![],
            attribute_names: vec![4, 5],
            // Event 0: order O-1, sku A7; event 1: order O-1, no sku.
            attributes: vec![6, 7, 6, 0],
            event_times: vec![5, 6],
            state_keys: vec![],
            key_slots: vec![],
        };
        let b = Batch::whole(&batch);
        assert_eq!(b.attribute_names().collect::<Vec<_>>(), ["order_id", "sku"]);
        assert_eq!(b.attribute_index("sku"), Some(1));
        assert_eq!(b.attribute(0, "sku"), Some("A7"));
        assert_eq!(b.attribute(1, "sku"), None);
        assert_eq!(b.attribute(1, "order_id"), Some("O-1"));
        assert_eq!(b.attribute(0, "colour"), None);
        assert_eq!(b.attribute_at(0, 2), None);
        assert_eq!(
            b.transaction(1).attributes,
            vec![("order_id".to_string(), "O-1".to_string())]
        );
    }

    #[test]
    fn same_text_is_string_equality() {
        let texts = [
            "",
            "a",
            "dev-604c90f1a0a2",
            "dev-604c90f1a0a3",
            "dev-604c90f1a0a",
            "DE",
            "é",
            "e",
        ];
        for a in texts {
            for b in texts {
                assert_eq!(same_text(a, b), a == b, "{a:?} {b:?}");
            }
        }
        assert_eq!(to_f64(Decimal::new(-12345, 3)), -12.345);
    }

    #[test]
    fn a_window_sees_what_earlier_windows_of_its_key_wrote() {
        // Three windows; the first and the last have the same key.
        let mut states = States::new(StateBlob {
            bytes: b"aba".to_vec(),
            ends: vec![1, 2, 3],
        });
        let earlier = [None, None, Some(0)];
        fn state<'a>(
            w: usize,
            states: &'a mut States,
            earlier: &'a [Option<usize>],
        ) -> KeyState<'a> {
            KeyState {
                key: "",
                window: w,
                batch: Some((states, earlier)),
            }
        }
        assert_eq!(
            state(2, &mut states, &earlier).get(),
            Some(b"a".to_vec()),
            "the call's start"
        );
        state(0, &mut states, &earlier).write(&Count(7));
        assert_eq!(state(1, &mut states, &earlier).get(), Some(b"b".to_vec()));
        assert_eq!(state(2, &mut states, &earlier).read::<Count>(), Count(7));
        state(2, &mut states, &earlier).delete();
        assert_eq!(state(2, &mut states, &earlier).get(), None);
        let (windows, blob) = states.changed();
        assert_eq!(windows, [0, 2]);
        assert_eq!(blob.ends, [8, 8], "7 as eight bytes, then nothing");
    }

    #[derive(Debug, Default, PartialEq)]
    struct Count(i64);

    impl State for Count {
        fn encode(&self, w: &mut Writer) {
            w.i64(self.0);
        }
        fn decode(r: &mut Reader<'_>) -> Option<Self> {
            r.i64().map(Count)
        }
    }

    #[test]
    fn json_strings_escape_what_json_requires() {
        let mut out = String::new();
        json_string(&mut out, "plain é \"q\" back\\slash \n\u{1}end");
        assert_eq!(out, r#""plain é \"q\" back\\slash \u000a\u0001end""#);
        assert_eq!(json_array(["a", "b\"c"]), r#"["a","b\"c"]"#);
    }

    #[test]
    fn pack_moves_rows_in_order_and_leaves_alerts() {
        let alert = Emit::Alert(Alert {
            rule: "r.x".into(),
            kind: "X".into(),
            severity: Severity::Low,
            score: 0.5,
            transaction_id: None,
            customer_id: None,
            reason: "why".into(),
            event_time: 9,
        });
        let mut emits = vec![
            row("b", vec![text("é1"), Value::Int(-3), Value::Null]),
            alert,
            row(
                "a",
                vec![
                    Value::Money(WitDecimal {
                        units: 1999,
                        scale: 2,
                    }),
                    Value::Float(0.25),
                ],
            ),
            row("b", vec![Value::Boolean(true), Value::Time(7), text("")]),
        ];
        let p = pack(&mut emits);
        assert_eq!(emits.len(), 1);
        assert!(matches!(&emits[0], Emit::Alert(a) if a.reason == "why"));
        assert_eq!(p.tables, ["b", "a"]);
        assert_eq!(p.row_tables, [0, 1, 0]);
        assert_eq!(p.row_lengths, [3, 2, 3]);
        assert_eq!(p.tags, [4, 2, 0, 5, 3, 1, 6, 4]);
        assert_eq!(p.ints, [-3, 1999, 1, 7]);
        assert_eq!(p.scales, [2]);
        assert_eq!(p.floats, [0.25]);
        assert_eq!(p.text_bytes, "é1".as_bytes());
        assert_eq!(p.text_ends, [3, 3]);
        let mut none = vec![];
        assert!(pack(&mut none).tags.is_empty());
    }

    #[test]
    fn first_to_escape_finds_the_first_byte_json_escapes_wherever_it_is() {
        let plain = "abcdefghijklmnopé~\x7f !#[]";
        assert_eq!(first_to_escape(plain.as_bytes()), None);
        for special in (0u8..0x20).chain([b'"', b'\\']) {
            for at in 0..plain.len() {
                let mut bytes = plain.as_bytes().to_vec();
                bytes[at] = special;
                // A second one later must not hide the first.
                bytes.push(special);
                assert_eq!(first_to_escape(&bytes), Some(at), "{special:#x} at {at}");
            }
        }
    }
}
