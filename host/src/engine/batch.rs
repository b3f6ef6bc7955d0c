//! Builds the columnar `event-batch` that crosses into rule sets.
//!
//! Strings are dictionary-encoded per batch: a customer seen fifty times in a
//! batch crosses once. Amounts and fees share one scale per batch. The
//! buffers are reused from batch to batch.

use crate::engine::key::{key_label, key_of, Key, Label};
use crate::model::{Interner, Sym, Txn, NONE};
use crate::runtime::bindings::types::EventBatch;
use crate::runtime::bindings::{wit_kind, wit_risk_level, wit_status};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;

/// Reusable builder of event batches.
pub struct BatchBuilder {
    batch: EventBatch,
    /// Each symbol's dictionary index in the batch being built.
    syms: SymTable,
    keys: FxHashMap<u32, u32>,
    /// The distinct state keys of the last [`Self::set_state_keys`].
    key_labels: Vec<Label>,
    /// The earliest and the latest event time of each of those keys' events.
    key_times: Vec<(i64, i64)>,
    /// The names of the attributes events carry (`decode.attributes`).
    attribute_names: std::sync::Arc<[String]>,
}

fn empty_batch() -> EventBatch {
    EventBatch {
        dict_bytes: Vec::new(),
        dict_ends: Vec::new(),
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
        risk_levels: Vec::new(),
        flag_starts: Vec::new(),
        flag_ids: Vec::new(),
        attribute_names: Vec::new(),
        attributes: Vec::new(),
        event_times: Vec::new(),
        state_keys: Vec::new(),
        key_slots: Vec::new(),
    }
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self {
            batch: empty_batch(),
            syms: SymTable::default(),
            keys: FxHashMap::default(),
            key_labels: Vec::new(),
            key_times: Vec::new(),
            attribute_names: std::sync::Arc::from([]),
        }
    }
}

fn units(d: Decimal, scale: u32) -> i64 {
    let mut d = d;
    d.rescale(scale);
    i64::try_from(d.mantissa()).unwrap_or(i64::MAX)
}

/// Dictionary indexes of interned strings by symbol, for one batch or call
/// at a time: an entry is valid where its stamp is the current one, so a
/// new batch needs no clearing and a lookup no hashing.
#[derive(Default)]
pub(crate) struct SymTable {
    entries: Vec<(u32, u32)>,
    stamp: u32,
}

impl SymTable {
    /// Starts a new batch (`symbols` interned so far): every entry is stale.
    pub(crate) fn next(&mut self, symbols: usize) {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            // Stamps wrapped: no entry may look current.
            self.entries.iter_mut().for_each(|e| e.0 = 0);
            self.stamp = 1;
        }
        if self.entries.len() < symbols {
            self.entries.resize(symbols, (0, 0));
        }
    }

    /// The index of `sym` in this batch, added by `add` the first time.
    pub(crate) fn get_or_insert(&mut self, sym: Sym, add: impl FnOnce() -> u32) -> u32 {
        let at = sym as usize;
        if at >= self.entries.len() {
            self.entries.resize(at + 1, (0, 0));
        }
        let entry = &mut self.entries[at];
        if entry.0 != self.stamp {
            *entry = (self.stamp, add());
        }
        entry.1
    }
}

/// Appends a string to a dictionary (its bytes and where each string
/// ends); returns its index.
pub(crate) fn dict_push(bytes: &mut Vec<u8>, ends: &mut Vec<u32>, s: &str) -> u32 {
    bytes.extend_from_slice(s.as_bytes());
    ends.push(bytes.len() as u32);
    (ends.len() - 1) as u32
}

/// Appends a string to the batch's dictionary; returns its index.
fn push_dict(batch: &mut EventBatch, s: &str) -> u32 {
    dict_push(&mut batch.dict_bytes, &mut batch.dict_ends, s)
}

impl BatchBuilder {
    /// A builder of batches whose events carry the attributes `names`.
    pub fn with_attributes(names: std::sync::Arc<[String]>) -> Self {
        Self {
            attribute_names: names,
            ..Self::default()
        }
    }

    fn sym(&mut self, s: Sym, strings: &Interner) -> u32 {
        if s == NONE {
            return 0;
        }
        let batch = &mut self.batch;
        self.syms
            .get_or_insert(s, || push_dict(batch, strings.resolve(s)))
    }

    /// Builds the batch of `txns` (without state keys).
    pub fn build(&mut self, txns: &[Txn], strings: &Interner) -> &EventBatch {
        let b = &mut self.batch;
        b.dict_bytes.clear();
        b.dict_ends.clear();
        push_dict(b, "");
        self.syms.next(strings.len());
        for v in [
            &mut b.ids,
            &mut b.customers,
            &mut b.accounts,
            &mut b.merchants,
            &mut b.currencies,
            &mut b.channels,
            &mut b.devices,
            &mut b.countries,
            &mut b.cities,
            &mut b.flag_starts,
            &mut b.flag_ids,
            &mut b.attribute_names,
            &mut b.attributes,
            &mut b.state_keys,
            &mut b.key_slots,
        ] {
            v.clear();
        }
        b.kinds.clear();
        b.statuses.clear();
        b.amounts.clear();
        b.fees.clear();
        b.risk_scores.clear();
        b.risk_levels.clear();
        b.event_times.clear();
        let scale = txns
            .iter()
            .map(|t| t.amount.scale().max(t.fee.scale()))
            .max()
            .unwrap_or(0);
        self.batch.money_scale = scale as u8;
        self.batch.flag_starts.push(0);
        let names = self.attribute_names.len();
        for name in self.attribute_names.iter() {
            let v = push_dict(&mut self.batch, name);
            self.batch.attribute_names.push(v);
        }
        for t in txns {
            let id = push_dict(&mut self.batch, &t.id);
            self.batch.ids.push(id);
            let v = self.sym(t.customer, strings);
            self.batch.customers.push(v);
            let v = self.sym(t.account, strings);
            self.batch.accounts.push(v);
            let v = self.sym(t.merchant, strings);
            self.batch.merchants.push(v);
            let v = self.sym(t.currency, strings);
            self.batch.currencies.push(v);
            let v = self.sym(t.channel, strings);
            self.batch.channels.push(v);
            let v = self.sym(t.device, strings);
            self.batch.devices.push(v);
            let v = self.sym(t.country, strings);
            self.batch.countries.push(v);
            let v = self.sym(t.city, strings);
            self.batch.cities.push(v);
            for f in t.flags.iter() {
                let v = self.sym(*f, strings);
                self.batch.flag_ids.push(v);
            }
            for j in 0..names {
                let v = self.sym(t.attrs.get(j).copied().unwrap_or(NONE), strings);
                self.batch.attributes.push(v);
            }
            let b = &mut self.batch;
            b.flag_starts.push(b.flag_ids.len() as u32);
            b.kinds.push(wit_kind(t.kind));
            b.statuses.push(wit_status(t.status));
            b.amounts.push(units(t.amount, scale));
            b.fees.push(units(t.fee, scale));
            b.risk_scores.push(t.risk_score);
            b.risk_levels.push(t.risk_level.map(wit_risk_level));
            b.event_times.push(t.event_time);
        }
        &self.batch
    }

    /// Sets the state keys of the last built batch for `key_by`; the distinct
    /// keys are left for [`Self::key_reads`], aligned with `state-keys`.
    pub fn set_state_keys(&mut self, txns: &[Txn], key_by: Key, strings: &Interner) -> &EventBatch {
        self.keys.clear();
        self.key_labels.clear();
        self.key_times.clear();
        self.batch.state_keys.clear();
        self.batch.key_slots.clear();
        for t in txns {
            let key = key_of(key_by, t).unwrap_or(u32::MAX);
            let slot = match self.keys.get(&key) {
                Some(slot) => *slot,
                None => {
                    let label = if key == u32::MAX {
                        Label::Name("")
                    } else {
                        key_label(key_by, key)
                    };
                    let dict_index = match key_by {
                        k if k.interned() && key != u32::MAX => self.sym(key, strings),
                        _ => push_dict(&mut self.batch, label.text(strings)),
                    };
                    let slot = self.batch.state_keys.len() as u32;
                    self.batch.state_keys.push(dict_index);
                    self.key_labels.push(label);
                    self.key_times.push((t.event_time, t.event_time));
                    self.keys.insert(key, slot);
                    slot
                }
            };
            if let Some((first, last)) = self.key_times.get_mut(slot as usize) {
                *first = (*first).min(t.event_time);
                *last = (*last).max(t.event_time);
            }
            self.batch.key_slots.push(slot);
        }
        &self.batch
    }

    /// The state keys of the last batch, slot by slot, each with the time
    /// its state is read at (its earliest event's).
    pub fn key_reads<'a>(
        &'a self,
        strings: &'a Interner,
    ) -> impl Iterator<Item = (&'a str, Option<i64>)> + 'a {
        (self.key_labels.iter().zip(&self.key_times))
            .map(|(label, &(first, _))| (label.text(strings), Some(first)))
    }

    /// The state key in slot `slot` of the last batch and its latest event
    /// time (what a state written for it is stamped with); `None` for a
    /// slot the batch does not have.
    pub fn key_written<'a>(&'a self, slot: usize, strings: &'a Interner) -> Option<(&'a str, i64)> {
        let label = self.key_labels.get(slot)?;
        let &(_, last) = self.key_times.get(slot)?;
        Some((label.text(strings), last))
    }

    /// The text of the state key in slot `slot` of the last batch.
    pub fn key_text<'a>(&'a self, slot: usize, strings: &'a Interner) -> &'a str {
        self.key_labels.get(slot).map_or("", |l| l.text(strings))
    }

    /// The last built batch.
    pub fn batch(&self) -> &EventBatch {
        &self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, Status};

    #[test]
    fn strings_cross_once_and_money_shares_a_scale() {
        let mut s = Interner::default();
        let c = s.intern("cust");
        let t = |id: &str, cents: i64, scale: u32| Txn {
            id: id.into(),
            customer: c,
            account: NONE,
            merchant: NONE,
            kind: Kind::Refund,
            status: Status::Failed,
            amount: Decimal::new(cents, scale),
            fee: Decimal::ZERO,
            currency: NONE,
            channel: NONE,
            device: NONE,
            country: NONE,
            city: NONE,
            risk_score: None,
            risk_level: None,
            flags: Box::default(),
            attrs: Box::default(),
            event_time: 7,
        };
        let txns = vec![t("a", 150, 2), t("b", 1, 3)];
        let mut b = BatchBuilder::default();
        b.build(&txns, &s);
        b.set_state_keys(&txns, Key::Customer, &s);
        let batch = b.batch();
        assert_eq!(batch.dict_bytes, b"acustb");
        assert_eq!(batch.dict_ends, vec![0, 1, 5, 6]);
        assert_eq!(batch.customers, vec![2, 2]);
        assert_eq!(batch.money_scale, 3);
        assert_eq!(batch.amounts, vec![1500, 1]);
        assert_eq!(batch.state_keys, vec![2]);
        assert_eq!(batch.key_slots, vec![0, 0]);
        assert_eq!(b.key_text(0, &s), "cust");
        assert_eq!(batch.flag_starts, vec![0, 0, 0]);
    }

    #[test]
    fn symbol_indexes_hold_for_one_batch_only() {
        let mut t = SymTable::default();
        let mut added = 0;
        let mut add = || {
            added += 1;
            added
        };
        t.next(4);
        assert_eq!(t.get_or_insert(2, &mut add), 1);
        assert_eq!(t.get_or_insert(2, &mut add), 1);
        assert_eq!(t.get_or_insert(9, &mut add), 2, "a symbol past the size");
        t.next(4);
        assert_eq!(t.get_or_insert(2, &mut add), 3, "a new batch starts over");
        // After the stamps wrap, no entry from before looks current.
        t.stamp = u32::MAX;
        t.get_or_insert(5, &mut add);
        t.next(4);
        assert_eq!(t.stamp, 1);
        assert_eq!(t.get_or_insert(5, &mut add), 5);
    }
}
