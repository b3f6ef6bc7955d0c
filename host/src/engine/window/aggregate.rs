//! Native, incremental aggregates declared by manifests.
//!
//! Each event updates an accumulator in O(1) (O(flags) for `flag`); results
//! cross the Wasm boundary only when a window fires.

use crate::codec::{self, Put, Reader};
use crate::engine::key::Label;
use crate::model::{Interner, Kind, Marks, RiskLevel, Status, Sym, Txn, NONE};
use crate::runtime::bindings::types::{
    AggregateOp, AggregateSpec, Decimal as WitDecimal, Field, TxnKind, TxnStatus,
};
use crate::runtime::bindings::wit_decimal;
use crate::runtime::manifest::is_money;
use rust_decimal::{Decimal, RoundingStrategy};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// The result of one aggregate when its window fires.
#[derive(Clone, Debug)]
pub enum AggregateValue {
    /// `count` and `distinct`.
    Count(u64),
    /// `sum`, `min`, `max` or `avg` of a money field.
    Money(WitDecimal),
    /// `sum`, `min`, `max` or `avg` of a number field.
    Number(f64),
    /// `min`, `max` or `avg` over no values, or `collect` of no events.
    Empty,
    /// `count-by` and `count-by-band`: (label, count), largest first
    /// (bands in band order).
    Counts(Vec<(Label, u64)>),
    /// `sum-by` and `sum-by-band`: (label, sum), largest first (bands in
    /// band order).
    Sums(Vec<(Label, WitDecimal)>),
    /// `collect`: the window's events (at most the plan's bound), and how
    /// many the window held in all.
    Events(Vec<Txn>, u64),
}

/// A risk level's category value: its place in [`RiskLevel::ALL`], and
/// one past the last for an event without one.
fn risk_category(level: Option<RiskLevel>) -> u64 {
    level.map_or(RiskLevel::ALL.len(), |l| l as usize) as u64
}

fn kind_of(k: TxnKind) -> Kind {
    Kind::ALL[k as usize]
}

fn status_of(s: TxnStatus) -> Status {
    Status::ALL[s as usize]
}

#[derive(Clone, Debug)]
struct Filter {
    statuses: u8,
    kinds: u16,
    flagged: bool,
}

impl Filter {
    fn accepts(&self, t: &Txn) -> bool {
        (self.statuses == 0 || self.statuses & (1 << t.status as u8) != 0)
            && (self.kinds == 0 || self.kinds & (1 << t.kind as u16) != 0)
            && (!self.flagged || !t.flags.is_empty())
    }
}

/// A map that stays a short vector while it is small: most panes see one or
/// two events, and a hash table per pane per aggregate costs more than a scan.
/// Up to two entries are held in the accumulator itself, with no allocation.
#[derive(Clone, Debug)]
pub enum SmallMap<V> {
    /// Up to [`SMALL`] entries, scanned.
    Small(SmallVec<[(u64, V); 2]>),
    /// More, hashed.
    Large(FxHashMap<u64, V>),
}

const SMALL: usize = 16;

impl<V: Default> Default for SmallMap<V> {
    fn default() -> Self {
        SmallMap::Small(SmallVec::new())
    }
}

impl<V: Default> SmallMap<V> {
    /// The value of `key`, inserted as default if absent.
    pub fn entry(&mut self, key: u64) -> &mut V {
        if let SmallMap::Small(v) = self {
            if v.len() >= SMALL && !v.iter().any(|(k, _)| *k == key) {
                *self = SmallMap::Large(std::mem::take(v).into_iter().collect());
            }
        }
        match self {
            SmallMap::Small(v) => {
                let at = match v.iter().position(|(k, _)| *k == key) {
                    Some(at) => at,
                    None => {
                        v.push((key, V::default()));
                        v.len() - 1
                    }
                };
                &mut v[at].1
            }
            SmallMap::Large(m) => m.entry(key).or_default(),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        match self {
            SmallMap::Small(v) => v.len(),
            SmallMap::Large(m) => m.len(),
        }
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with every entry, in no particular order.
    pub fn for_each(&self, mut f: impl FnMut(u64, &V)) {
        match self {
            SmallMap::Small(v) => v.iter().for_each(|(k, v)| f(*k, v)),
            SmallMap::Large(m) => m.iter().for_each(|(k, v)| f(*k, v)),
        }
    }

    /// Consumes the map into its entries.
    pub fn into_entries(self) -> Vec<(u64, V)> {
        match self {
            SmallMap::Small(v) => v.into_vec(),
            SmallMap::Large(m) => m.into_iter().collect(),
        }
    }
}

/// A compiled aggregate.
#[derive(Clone, Debug)]
pub struct Plan {
    op: AggregateOp,
    filter: Option<Filter>,
    bounds: Vec<Decimal>,
    band_labels: Vec<std::sync::Arc<str>>,
    /// The most events a `collect` keeps per window.
    max_collect: usize,
}

/// An accumulator.
#[derive(Clone, Debug)]
pub enum Acc {
    /// count
    Count(u64),
    /// sum/avg of money: (sum, n)
    Money(Decimal, u64),
    /// sum/avg of numbers: (sum, n)
    Number(f64, u64),
    /// min/max of money
    MoneyExtreme(Option<Decimal>),
    /// min/max of numbers
    NumberExtreme(Option<f64>),
    /// distinct values (the map's values are unused)
    Distinct(SmallMap<()>),
    /// counts by value
    CountBy(SmallMap<u64>),
    /// sums by value
    SumBy(SmallMap<Decimal>),
    /// counts by band
    Bands(SmallVec<[u64; 6]>),
    /// sums by band
    BandSums(SmallVec<[Decimal; 6]>),
    /// the events (at most the plan's bound), and how many there were
    Collect(Vec<Txn>, u64),
}

fn put_small<V>(out: &mut Vec<u8>, map: &SmallMap<V>, mut put: impl FnMut(&mut Vec<u8>, &V))
where
    V: Default,
{
    out.put_len(map.len());
    map.for_each(|k, v| {
        out.put_u64(k);
        put(out, v);
    });
}

fn read_small<V: Default>(
    r: &mut Reader<'_>,
    mut read: impl FnMut(&mut Reader<'_>) -> Result<V, codec::Error>,
) -> Result<SmallMap<V>, codec::Error> {
    let n = r.len(8)?;
    let mut map = SmallMap::default();
    for _ in 0..n {
        let k = r.u64()?;
        *map.entry(k) = read(r)?;
    }
    Ok(map)
}

impl Acc {
    /// Appends the accumulator in a checkpoint's form: a tag, then its values.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        let option = |out: &mut Vec<u8>, present: bool| out.put_u8(u8::from(present));
        match self {
            Acc::Count(n) => {
                out.put_u8(0);
                out.put_u64(*n);
            }
            Acc::Money(sum, n) => {
                out.put_u8(1);
                out.put_decimal(*sum);
                out.put_u64(*n);
            }
            Acc::Number(sum, n) => {
                out.put_u8(2);
                out.put_f64(*sum);
                out.put_u64(*n);
            }
            Acc::MoneyExtreme(m) => {
                out.put_u8(3);
                option(out, m.is_some());
                m.iter().for_each(|d| out.put_decimal(*d));
            }
            Acc::NumberExtreme(m) => {
                out.put_u8(4);
                option(out, m.is_some());
                m.iter().for_each(|x| out.put_f64(*x));
            }
            Acc::Distinct(map) => {
                out.put_u8(5);
                put_small(out, map, |_, _| {});
            }
            Acc::CountBy(map) => {
                out.put_u8(6);
                put_small(out, map, |out, n| out.put_u64(*n));
            }
            Acc::SumBy(map) => {
                out.put_u8(7);
                put_small(out, map, |out, d| out.put_decimal(*d));
            }
            Acc::Bands(counts) => {
                out.put_u8(8);
                out.put_len(counts.len());
                counts.iter().for_each(|n| out.put_u64(*n));
            }
            Acc::BandSums(sums) => {
                out.put_u8(10);
                out.put_len(sums.len());
                sums.iter().for_each(|d| out.put_decimal(*d));
            }
            Acc::Collect(events, total) => {
                out.put_u8(9);
                out.put_u64(*total);
                out.put_len(events.len());
                events.iter().for_each(|t| t.write_snapshot(out));
            }
        }
    }

    /// Reads an accumulator written by [`Self::write_snapshot`].
    pub fn read_snapshot(r: &mut Reader<'_>) -> Result<Self, codec::Error> {
        Ok(match r.u8()? {
            0 => Acc::Count(r.u64()?),
            1 => Acc::Money(r.decimal()?, r.u64()?),
            2 => Acc::Number(r.f64()?, r.u64()?),
            3 => Acc::MoneyExtreme(if r.u8()? == 1 {
                Some(r.decimal()?)
            } else {
                None
            }),
            4 => Acc::NumberExtreme(if r.u8()? == 1 { Some(r.f64()?) } else { None }),
            5 => Acc::Distinct(read_small(r, |_| Ok(()))?),
            6 => Acc::CountBy(read_small(r, |r| r.u64())?),
            7 => Acc::SumBy(read_small(r, |r| r.decimal())?),
            8 => {
                let n = r.len(8)?;
                Acc::Bands((0..n).map(|_| r.u64()).collect::<Result<_, _>>()?)
            }
            9 => {
                let total = r.u64()?;
                let n = r.len(8)?;
                let events = (0..n)
                    .map(|_| Txn::read_snapshot(r))
                    .collect::<Result<_, _>>()?;
                Acc::Collect(events, total)
            }
            10 => {
                let n = r.len(8)?;
                Acc::BandSums((0..n).map(|_| r.decimal()).collect::<Result<_, _>>()?)
            }
            tag => return Err(format!("unknown accumulator tag {tag}")),
        })
    }

    /// Whether the accumulator is of the kind `plan` makes.
    pub fn fits(&self, plan: &Plan) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(&plan.empty())
    }
}

fn money(f: Field, t: &Txn) -> Decimal {
    if f == Field::Fee {
        t.fee
    } else {
        t.amount
    }
}

/// Calls `out` with each category value of field `f` (none for absent values).
fn categories(f: Field, t: &Txn, mut out: impl FnMut(u64)) {
    let sym = |s: u32| if s == NONE { None } else { Some(u64::from(s)) };
    let v = match f {
        Field::Id => Some(crate::model::ids::stable_hash(&[t.id.as_bytes()])),
        Field::Customer => sym(t.customer),
        Field::Account => sym(t.account),
        Field::Merchant => sym(t.merchant),
        Field::Kind => Some(t.kind as u64),
        Field::Status => Some(t.status as u64),
        Field::Currency => sym(t.currency),
        Field::Channel => sym(t.channel),
        Field::Device => sym(t.device),
        Field::Country => sym(t.country),
        Field::City => sym(t.city),
        Field::RiskLevel => Some(risk_category(t.risk_level)),
        Field::HourOfDay => Some(u64::from(crate::model::hour_of_day(t.event_time))),
        Field::Flag => {
            t.flags.iter().for_each(|f| out(u64::from(*f)));
            None
        }
        Field::Amount | Field::Fee | Field::RiskScore => None,
    };
    if let Some(v) = v {
        out(v);
    }
}

fn category_label(f: Field, v: u64) -> Label {
    match f {
        Field::Kind => Label::Name(Kind::ALL.get(v as usize).map_or("other", |k| k.name())),
        Field::Status => Label::Name(Status::ALL.get(v as usize).map_or("pending", |s| s.name())),
        Field::RiskLevel => Label::Name(RiskLevel::label(RiskLevel::ALL.get(v as usize).copied())),
        Field::HourOfDay => Label::Text(format!("{v:02}")),
        Field::Id => Label::Text(crate::model::ids::hex_id(v)),
        _ => Label::Sym(v as u32),
    }
}

/// Entries sorted largest first, then by name, for deterministic output.
fn ordered<T: Ord + Copy + Default>(
    map: &SmallMap<T>,
    f: Field,
    strings: &Interner,
) -> Vec<(Label, T)> {
    let mut v: Vec<(Label, T)> = Vec::with_capacity(map.len());
    map.for_each(|k, n| v.push((category_label(f, k), *n)));
    v.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.text(strings).cmp(b.0.text(strings)))
    });
    v
}

impl Plan {
    /// Compiles a validated aggregate spec; a `collect` keeps at most
    /// `max_collect` events per window.
    pub fn new(spec: &AggregateSpec, max_collect: usize) -> Self {
        let filter = spec.filter.as_ref().map(|f| Filter {
            statuses: f
                .status_in
                .iter()
                .fold(0, |m, s| m | 1 << status_of(*s) as u8),
            kinds: f.kind_in.iter().fold(0, |m, k| m | 1 << kind_of(*k) as u16),
            flagged: f.flagged,
        });
        let bounds = match &spec.op {
            AggregateOp::CountByBand(b) | AggregateOp::SumByBand(b) => b
                .bounds
                .iter()
                .map(|d| Decimal::new(d.units, u32::from(d.scale)))
                .collect(),
            _ => Vec::new(),
        };
        let mut plan = Self {
            op: spec.op.clone(),
            filter,
            bounds,
            band_labels: Vec::new(),
            max_collect,
        };
        if matches!(
            spec.op,
            AggregateOp::CountByBand(_) | AggregateOp::SumByBand(_)
        ) {
            plan.band_labels = (0..=plan.bounds.len())
                .map(|i| plan.band_label(i).into())
                .collect();
        }
        plan
    }

    /// A fresh accumulator.
    pub fn empty(&self) -> Acc {
        match &self.op {
            AggregateOp::Count => Acc::Count(0),
            AggregateOp::Sum(f) | AggregateOp::Avg(f) if is_money(*f) => {
                Acc::Money(Decimal::ZERO, 0)
            }
            AggregateOp::Sum(_) | AggregateOp::Avg(_) => Acc::Number(0.0, 0),
            AggregateOp::Min(f) | AggregateOp::Max(f) if is_money(*f) => Acc::MoneyExtreme(None),
            AggregateOp::Min(_) | AggregateOp::Max(_) => Acc::NumberExtreme(None),
            AggregateOp::Distinct(_) => Acc::Distinct(SmallMap::default()),
            AggregateOp::CountBy(_) => Acc::CountBy(SmallMap::default()),
            AggregateOp::SumBy(_) => Acc::SumBy(SmallMap::default()),
            AggregateOp::CountByBand(_) => {
                Acc::Bands(smallvec::smallvec![0; self.bounds.len() + 1])
            }
            AggregateOp::SumByBand(_) => {
                Acc::BandSums(smallvec::smallvec![Decimal::ZERO; self.bounds.len() + 1])
            }
            AggregateOp::Collect => Acc::Collect(Vec::new(), 0),
        }
    }

    /// Adds an event.
    pub fn update(&self, acc: &mut Acc, t: &Txn) {
        if let Some(filter) = &self.filter {
            if !filter.accepts(t) {
                return;
            }
        }
        match (&self.op, acc) {
            (AggregateOp::Count, Acc::Count(n)) => *n += 1,
            (AggregateOp::Sum(f) | AggregateOp::Avg(f), Acc::Money(sum, n)) => {
                *sum += money(*f, t);
                *n += 1;
            }
            (AggregateOp::Sum(_) | AggregateOp::Avg(_), Acc::Number(sum, n)) => {
                if let Some(x) = t.risk_score {
                    *sum += x;
                    *n += 1;
                }
            }
            (AggregateOp::Min(f), Acc::MoneyExtreme(m)) => {
                let x = money(*f, t);
                *m = Some(m.map_or(x, |m| m.min(x)));
            }
            (AggregateOp::Max(f), Acc::MoneyExtreme(m)) => {
                let x = money(*f, t);
                *m = Some(m.map_or(x, |m| m.max(x)));
            }
            (AggregateOp::Min(_), Acc::NumberExtreme(m)) => {
                if let Some(x) = t.risk_score {
                    *m = Some(m.map_or(x, |m| m.min(x)));
                }
            }
            (AggregateOp::Max(_), Acc::NumberExtreme(m)) => {
                if let Some(x) = t.risk_score {
                    *m = Some(m.map_or(x, |m| m.max(x)));
                }
            }
            (AggregateOp::Distinct(f), Acc::Distinct(set)) => categories(*f, t, |v| {
                set.entry(v);
            }),
            (AggregateOp::CountBy(f), Acc::CountBy(map)) => {
                categories(*f, t, |v| *map.entry(v) += 1)
            }
            (AggregateOp::SumBy((g, m)), Acc::SumBy(map)) => {
                let x = money(*m, t);
                categories(*g, t, |v| *map.entry(v) += x);
            }
            (AggregateOp::CountByBand(b), Acc::Bands(counts)) => {
                let x = money(b.field, t);
                let band = self.bounds.partition_point(|bound| *bound <= x);
                counts[band] += 1;
            }
            (AggregateOp::SumByBand(b), Acc::BandSums(sums)) => {
                let x = money(b.field, t);
                let band = self.bounds.partition_point(|bound| *bound <= x);
                sums[band] += x;
            }
            (AggregateOp::Collect, Acc::Collect(events, total)) => {
                *total += 1;
                if events.len() < self.max_collect {
                    events.push(t.clone());
                }
            }
            _ => {}
        }
    }

    /// Merges `other` into `acc` (session windows).
    pub fn merge(&self, acc: &mut Acc, other: Acc) {
        let is_min = matches!(self.op, AggregateOp::Min(_));
        match (acc, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Money(a, n), Acc::Money(b, m)) => {
                *a += b;
                *n += m;
            }
            (Acc::Number(a, n), Acc::Number(b, m)) => {
                *a += b;
                *n += m;
            }
            (Acc::MoneyExtreme(a), Acc::MoneyExtreme(b)) => {
                *a = match (*a, b) {
                    (Some(x), Some(y)) => Some(if is_min { x.min(y) } else { x.max(y) }),
                    (x, y) => x.or(y),
                }
            }
            (Acc::NumberExtreme(a), Acc::NumberExtreme(b)) => {
                *a = match (*a, b) {
                    (Some(x), Some(y)) => Some(if is_min { x.min(y) } else { x.max(y) }),
                    (x, y) => x.or(y),
                }
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => {
                b.into_entries().into_iter().for_each(|(k, _)| {
                    a.entry(k);
                })
            }
            (Acc::CountBy(a), Acc::CountBy(b)) => b
                .into_entries()
                .into_iter()
                .for_each(|(k, v)| *a.entry(k) += v),
            (Acc::SumBy(a), Acc::SumBy(b)) => b
                .into_entries()
                .into_iter()
                .for_each(|(k, v)| *a.entry(k) += v),
            (Acc::Bands(a), Acc::Bands(b)) => a.iter_mut().zip(b).for_each(|(x, y)| *x += y),
            (Acc::BandSums(a), Acc::BandSums(b)) => a.iter_mut().zip(b).for_each(|(x, y)| *x += y),
            (Acc::Collect(a, n), Acc::Collect(b, m)) => {
                *n += m;
                let room = self.max_collect.saturating_sub(a.len());
                a.extend(b.into_iter().take(room));
            }
            _ => {}
        }
    }

    fn band_label(&self, i: usize) -> String {
        match (i.checked_sub(1).map(|j| self.bounds[j]), self.bounds.get(i)) {
            (None, Some(hi)) => format!("<{hi}"),
            (Some(lo), Some(hi)) => format!("{lo}-{hi}"),
            (Some(lo), None) => format!(">={lo}"),
            (None, None) => "all".into(),
        }
    }

    /// Whether `acc` groups by interned strings (its keys are symbols).
    fn groups_interned(&self) -> bool {
        let grouped_by = match &self.op {
            AggregateOp::Distinct(f) | AggregateOp::CountBy(f) => *f,
            AggregateOp::SumBy((g, _)) => *g,
            _ => Field::Id,
        };
        matches!(
            grouped_by,
            Field::Customer
                | Field::Account
                | Field::Merchant
                | Field::Currency
                | Field::Channel
                | Field::Device
                | Field::Country
                | Field::City
                | Field::Flag
        )
    }

    /// Replaces the symbols `acc` holds by `map` of them: the accumulator
    /// moves to another interner.
    pub fn map_strings(&self, acc: &mut Acc, map: &mut dyn FnMut(Sym) -> Sym) {
        fn remap<V: Default + Copy>(
            m: &SmallMap<V>,
            map: &mut dyn FnMut(Sym) -> Sym,
        ) -> SmallMap<V> {
            let mut out = SmallMap::default();
            m.for_each(|k, v| *out.entry(u64::from(map(k as Sym))) = *v);
            out
        }
        let interned = self.groups_interned();
        match acc {
            Acc::Distinct(m) if interned => *m = remap(m, map),
            Acc::CountBy(m) if interned => *m = remap(m, map),
            Acc::SumBy(m) if interned => *m = remap(m, map),
            Acc::Collect(events, _) => events.iter_mut().for_each(|t| t.map_syms(&mut *map)),
            _ => {}
        }
    }

    /// Marks the interned strings `acc` holds, so a sweep of the interner
    /// keeps them.
    pub fn mark_strings(&self, acc: &Acc, marks: &mut Marks) {
        let interned = self.groups_interned();
        match acc {
            Acc::Distinct(map) if interned => map.for_each(|k, _| marks.mark(k as Sym)),
            Acc::CountBy(map) if interned => map.for_each(|k, _| marks.mark(k as Sym)),
            Acc::SumBy(map) if interned => map.for_each(|k, _| marks.mark(k as Sym)),
            Acc::Collect(events, _) => events.iter().for_each(|t| t.mark_strings(marks)),
            _ => {}
        }
    }

    /// The result as it crosses to the rule set.
    pub fn finish(&self, acc: &Acc, strings: &Interner) -> AggregateValue {
        let field = |op: &AggregateOp| match op {
            AggregateOp::Distinct(f) | AggregateOp::CountBy(f) => *f,
            AggregateOp::SumBy((g, _)) => *g,
            _ => Field::Id,
        };
        match acc {
            Acc::Count(n) => AggregateValue::Count(*n),
            Acc::Money(sum, n) => match self.op {
                AggregateOp::Avg(_) if *n == 0 => AggregateValue::Empty,
                AggregateOp::Avg(_) => AggregateValue::Money(wit_decimal(
                    (*sum / Decimal::from(*n))
                        .round_dp_with_strategy(8, RoundingStrategy::MidpointAwayFromZero),
                )),
                _ => AggregateValue::Money(wit_decimal(*sum)),
            },
            Acc::Number(sum, n) => match self.op {
                AggregateOp::Avg(_) if *n == 0 => AggregateValue::Empty,
                AggregateOp::Avg(_) => AggregateValue::Number(sum / *n as f64),
                _ => AggregateValue::Number(*sum),
            },
            Acc::MoneyExtreme(m) => m.map_or(AggregateValue::Empty, |d| {
                AggregateValue::Money(wit_decimal(d))
            }),
            Acc::NumberExtreme(m) => m.map_or(AggregateValue::Empty, AggregateValue::Number),
            Acc::Distinct(set) => AggregateValue::Count(set.len() as u64),
            Acc::CountBy(map) => AggregateValue::Counts(ordered(map, field(&self.op), strings)),
            Acc::SumBy(map) => AggregateValue::Sums(
                ordered(map, field(&self.op), strings)
                    .into_iter()
                    .map(|(k, v)| (k, wit_decimal(v)))
                    .collect(),
            ),
            Acc::Bands(counts) => AggregateValue::Counts(
                counts
                    .iter()
                    .zip(&self.band_labels)
                    .map(|(n, label)| (Label::Shared(label.clone()), *n))
                    .collect(),
            ),
            Acc::BandSums(sums) => AggregateValue::Sums(
                sums.iter()
                    .zip(&self.band_labels)
                    .map(|(d, label)| (Label::Shared(label.clone()), wit_decimal(*d)))
                    .collect(),
            ),
            Acc::Collect(events, _) if events.is_empty() => AggregateValue::Empty,
            Acc::Collect(events, total) => AggregateValue::Events(events.clone(), *total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::types::{Bands, Filter as WitFilter};

    fn txn(strings: &mut Interner, customer: &str, amount: i64, flags: &[&str]) -> Txn {
        Txn {
            id: format!("t{amount}{customer}").into(),
            customer: strings.intern(customer),
            account: NONE,
            merchant: NONE,
            kind: Kind::Purchase,
            status: Status::Completed,
            amount: Decimal::new(amount, 2),
            fee: Decimal::ZERO,
            currency: strings.intern("USD"),
            channel: NONE,
            device: NONE,
            country: NONE,
            city: NONE,
            risk_score: Some(0.5),
            risk_level: None,
            flags: flags.iter().map(|f| strings.intern(f)).collect(),
            attrs: Box::default(),
            event_time: 0,
        }
    }

    fn spec(op: AggregateOp) -> AggregateSpec {
        AggregateSpec {
            name: "x".into(),
            op,
            filter: None,
        }
    }

    fn run(op: AggregateOp, events: &[Txn], strings: &Interner) -> AggregateValue {
        let plan = Plan::new(&spec(op), 10_000);
        let mut acc = plan.empty();
        events.iter().for_each(|t| plan.update(&mut acc, t));
        plan.finish(&acc, strings)
    }

    #[test]
    fn money_aggregates_are_exact() {
        let mut s = Interner::default();
        let events: Vec<Txn> = [10, 20, 30, 1]
            .iter()
            .map(|a| txn(&mut s, "c", *a, &[]))
            .collect();
        assert!(
            matches!(run(AggregateOp::Sum(Field::Amount), &events, &s), AggregateValue::Money(d) if d == WitDecimal { units: 61, scale: 2 })
        );
        let avg = run(AggregateOp::Avg(Field::Amount), &events, &s);
        assert!(
            matches!(avg, AggregateValue::Money(d) if d == WitDecimal { units: 1525, scale: 4 }),
            "{avg:?}"
        );
        assert!(
            matches!(run(AggregateOp::Min(Field::Amount), &events, &s), AggregateValue::Money(d) if d == WitDecimal { units: 1, scale: 2 })
        );
        assert!(
            matches!(run(AggregateOp::Max(Field::Amount), &events, &s), AggregateValue::Money(d) if d == WitDecimal { units: 30, scale: 2 })
        );
        assert!(matches!(
            run(AggregateOp::Min(Field::Amount), &[], &s),
            AggregateValue::Empty
        ));
    }

    #[test]
    fn collect_keeps_the_first_events_up_to_its_bound_and_counts_them_all() {
        let mut s = Interner::default();
        let plan = Plan::new(&spec(AggregateOp::Collect), 3);
        let (mut a, mut b) = (plan.empty(), plan.empty());
        for n in 0..5 {
            plan.update(&mut a, &txn(&mut s, &format!("c{n}"), n, &[]));
        }
        plan.update(&mut b, &txn(&mut s, "late", 9, &[]));
        plan.merge(&mut a, b);
        match plan.finish(&a, &s) {
            AggregateValue::Events(events, total) => {
                let kept: Vec<&str> = events.iter().map(|t| s.resolve(t.customer)).collect();
                assert_eq!(kept, ["c0", "c1", "c2"]);
                assert_eq!(total, 6);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn money_averages_round_half_up_at_the_midpoint() {
        let mut s = Interner::default();
        // (0.00000001 + 0) / 2 = 0.000000005: half-up gives 0.00000001,
        // banker's rounding would give 0.
        let mut events = vec![txn(&mut s, "c", 0, &[]), txn(&mut s, "c", 0, &[])];
        events[0].amount = Decimal::new(1, 8);
        let avg = run(AggregateOp::Avg(Field::Amount), &events, &s);
        assert!(
            matches!(avg, AggregateValue::Money(d) if Decimal::new(d.units, u32::from(d.scale)) == Decimal::new(1, 8)),
            "{avg:?}"
        );
        // Exact sums keep their scale: 0.10 + 0.20 is 0.30, not 0.3.
        let events = vec![txn(&mut s, "c", 10, &[]), txn(&mut s, "c", 20, &[])];
        assert!(matches!(
            run(AggregateOp::Sum(Field::Amount), &events, &s),
            AggregateValue::Money(WitDecimal {
                units: 30,
                scale: 2
            })
        ));
    }

    #[test]
    fn grouped_aggregates_count_each_flag() {
        let mut s = Interner::default();
        let events = vec![
            txn(&mut s, "a", 100, &["HIGH_RISK", "HIGH_VALUE"]),
            txn(&mut s, "b", 200, &["HIGH_RISK"]),
            txn(&mut s, "a", 300, &[]),
        ];
        match run(AggregateOp::CountBy(Field::Flag), &events, &s) {
            AggregateValue::Counts(c) => {
                let c: Vec<(&str, u64)> = c.iter().map(|(l, n)| (l.text(&s), *n)).collect();
                assert_eq!(c, vec![("HIGH_RISK", 2), ("HIGH_VALUE", 1)])
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(AggregateOp::Distinct(Field::Customer), &events, &s),
            AggregateValue::Count(2)
        ));
        match run(
            AggregateOp::SumBy((Field::Customer, Field::Amount)),
            &events,
            &s,
        ) {
            AggregateValue::Sums(v) => {
                assert_eq!(v[0].0.text(&s), "a");
                assert_eq!(
                    v[0].1,
                    WitDecimal {
                        units: 400,
                        scale: 2
                    }
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn grouped_aggregates_stay_exact_past_the_small_map() {
        let mut s = Interner::default();
        let events: Vec<Txn> = (0..100)
            .map(|n| txn(&mut s, &format!("c{}", n % 40), 100, &[]))
            .collect();
        match run(AggregateOp::CountBy(Field::Customer), &events, &s) {
            AggregateValue::Counts(c) => {
                assert_eq!(c.len(), 40);
                assert_eq!(c.iter().map(|(_, n)| n).sum::<u64>(), 100);
                assert_eq!(c[0].1, 3, "c0..c19 have 3 events each, listed first");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(AggregateOp::Distinct(Field::Customer), &events, &s),
            AggregateValue::Count(40)
        ));
        let plan = Plan::new(
            &spec(AggregateOp::SumBy((Field::Customer, Field::Amount))),
            10_000,
        );
        let (mut a, mut b) = (plan.empty(), plan.empty());
        events[..50].iter().for_each(|t| plan.update(&mut a, t));
        events[50..].iter().for_each(|t| plan.update(&mut b, t));
        plan.merge(&mut a, b);
        match plan.finish(&a, &s) {
            AggregateValue::Sums(v) => {
                assert_eq!(v.len(), 40);
                assert_eq!(v.iter().map(|(_, d)| d.units).sum::<i64>(), 100 * 100);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn filters_and_bands() {
        let mut s = Interner::default();
        let events = vec![
            txn(&mut s, "a", 500, &["X"]),
            txn(&mut s, "a", 5_000, &[]),
            txn(&mut s, "a", 50_000, &[]),
        ];
        let plan = Plan::new(
            &AggregateSpec {
                name: "flagged".into(),
                op: AggregateOp::Count,
                filter: Some(WitFilter {
                    status_in: vec![],
                    kind_in: vec![],
                    flagged: true,
                }),
            },
            10_000,
        );
        let mut acc = plan.empty();
        events.iter().for_each(|t| plan.update(&mut acc, t));
        assert!(matches!(acc, Acc::Count(1)));
        let bands = AggregateOp::CountByBand(Bands {
            field: Field::Amount,
            bounds: vec![
                WitDecimal {
                    units: 10,
                    scale: 0,
                },
                WitDecimal {
                    units: 100,
                    scale: 0,
                },
            ],
        });
        match run(bands, &events, &s) {
            AggregateValue::Counts(c) => assert_eq!(
                c.iter().map(|(l, n)| (l.text(&s), *n)).collect::<Vec<_>>(),
                vec![("<10", 1), ("10-100", 1), (">=100", 1)]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn band_sums_add_each_amount_to_its_band_in_band_order() {
        let mut s = Interner::default();
        let events = [
            txn(&mut s, "a", 500, &[]),
            txn(&mut s, "b", 5_000, &[]),
            txn(&mut s, "c", 700, &[]),
            txn(&mut s, "d", 50_000, &[]),
            txn(&mut s, "e", 1_000, &[]),
        ];
        let bounds = [10, 100].map(|units| WitDecimal { units, scale: 0 });
        let plan = spec(AggregateOp::SumByBand(Bands {
            field: Field::Amount,
            bounds: bounds.to_vec(),
        }));
        let plan = Plan::new(&plan, 10_000);
        // Two partials merged, then through a checkpoint's form.
        let (mut a, mut b) = (plan.empty(), plan.empty());
        events[..2].iter().for_each(|t| plan.update(&mut a, t));
        events[2..].iter().for_each(|t| plan.update(&mut b, t));
        plan.merge(&mut a, b);
        let mut bytes = Vec::new();
        a.write_snapshot(&mut bytes);
        let a = Acc::read_snapshot(&mut Reader::new(&bytes, "test")).unwrap();
        assert!(a.fits(&plan));
        match plan.finish(&a, &s) {
            AggregateValue::Sums(v) => assert_eq!(
                v.iter()
                    .map(|(l, d)| (l.text(&s), Decimal::new(d.units, u32::from(d.scale))))
                    .collect::<Vec<_>>(),
                vec![
                    ("<10", Decimal::new(1200, 2)),
                    ("10-100", Decimal::new(6000, 2)),
                    (">=100", Decimal::new(50000, 2)),
                ]
            ),
            other => panic!("{other:?}"),
        }
    }
}
