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
    op: Op,
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

/// A field as a plan reads it: a canonical one, or an attribute of the
/// source by its place among its attributes (`decode.attributes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Of {
    Id,
    Customer,
    Account,
    Merchant,
    Kind,
    Status,
    Amount,
    Fee,
    Currency,
    Channel,
    Device,
    Country,
    City,
    RiskScore,
    RiskLevel,
    Flag,
    HourOfDay,
    /// The source's attribute at this place (`usize::MAX`: one the source
    /// does not map, which no event has).
    Attribute(usize),
}

impl Of {
    /// The field `f` as read from events carrying the attributes `attributes`.
    fn resolve(f: &Field, attributes: &[String]) -> Self {
        match f {
            Field::Id => Of::Id,
            Field::Customer => Of::Customer,
            Field::Account => Of::Account,
            Field::Merchant => Of::Merchant,
            Field::Kind => Of::Kind,
            Field::Status => Of::Status,
            Field::Amount => Of::Amount,
            Field::Fee => Of::Fee,
            Field::Currency => Of::Currency,
            Field::Channel => Of::Channel,
            Field::Device => Of::Device,
            Field::Country => Of::Country,
            Field::City => Of::City,
            Field::RiskScore => Of::RiskScore,
            Field::RiskLevel => Of::RiskLevel,
            Field::Flag => Of::Flag,
            Field::HourOfDay => Of::HourOfDay,
            Field::Attribute(name) => Of::Attribute(
                attributes
                    .iter()
                    .position(|a| a == name)
                    .unwrap_or(usize::MAX),
            ),
        }
    }

    /// Whether the field is summed as money (exactly).
    fn is_money(self) -> bool {
        matches!(self, Of::Amount | Of::Fee | Of::Attribute(_))
    }

    /// Whether its values are interned strings.
    fn interned(self) -> bool {
        matches!(
            self,
            Of::Customer
                | Of::Account
                | Of::Merchant
                | Of::Currency
                | Of::Channel
                | Of::Device
                | Of::Country
                | Of::City
                | Of::Flag
                | Of::Attribute(_)
        )
    }
}

/// An aggregate's operation, its fields resolved.
#[derive(Clone, Copy, Debug)]
enum Op {
    Count,
    Sum(Of),
    Min(Of),
    Max(Of),
    Avg(Of),
    Distinct(Of),
    CountBy(Of),
    SumBy(Of, Of),
    CountByBand(Of),
    SumByBand(Of),
    Collect,
}

/// An event's attribute at place `i`, if it has one.
fn attribute(t: &Txn, i: usize) -> Option<Sym> {
    t.attrs.get(i).copied().filter(|&s| s != NONE)
}

/// The exact value of a money field (an attribute's when it is a
/// number); `None` when the event has none.
fn money(f: Of, t: &Txn, strings: &Interner) -> Option<Decimal> {
    match f {
        Of::Fee => Some(t.fee),
        Of::Attribute(i) => crate::decode::parse_decimal(strings.resolve(attribute(t, i)?).trim()),
        _ => Some(t.amount),
    }
}

/// Calls `out` with each category value of field `f` (none for absent values).
fn categories(f: Of, t: &Txn, mut out: impl FnMut(u64)) {
    let sym = |s: u32| if s == NONE { None } else { Some(u64::from(s)) };
    let v = match f {
        Of::Id => Some(crate::model::ids::stable_hash(&[t.id.as_bytes()])),
        Of::Customer => sym(t.customer),
        Of::Account => sym(t.account),
        Of::Merchant => sym(t.merchant),
        Of::Kind => Some(t.kind as u64),
        Of::Status => Some(t.status as u64),
        Of::Currency => sym(t.currency),
        Of::Channel => sym(t.channel),
        Of::Device => sym(t.device),
        Of::Country => sym(t.country),
        Of::City => sym(t.city),
        Of::RiskLevel => Some(risk_category(t.risk_level)),
        Of::HourOfDay => Some(u64::from(crate::model::hour_of_day(t.event_time))),
        Of::Flag => {
            t.flags.iter().for_each(|f| out(u64::from(*f)));
            None
        }
        Of::Attribute(i) => attribute(t, i).map(u64::from),
        Of::Amount | Of::Fee | Of::RiskScore => None,
    };
    if let Some(v) = v {
        out(v);
    }
}

fn category_label(f: Of, v: u64) -> Label {
    match f {
        Of::Kind => Label::Name(Kind::ALL.get(v as usize).map_or("other", |k| k.name())),
        Of::Status => Label::Name(Status::ALL.get(v as usize).map_or("pending", |s| s.name())),
        Of::RiskLevel => Label::Name(RiskLevel::label(RiskLevel::ALL.get(v as usize).copied())),
        Of::HourOfDay => Label::Text(format!("{v:02}")),
        Of::Id => Label::Text(format!("{v:016x}")),
        _ => Label::Sym(v as u32),
    }
}

/// Entries sorted largest first, then by name, for deterministic output.
fn ordered<T: Ord + Copy + Default>(
    map: &SmallMap<T>,
    f: Of,
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
    /// Compiles a validated aggregate spec, for events carrying the
    /// attributes `attributes`; a `collect` keeps at most `max_collect`
    /// events per window.
    pub fn new(spec: &AggregateSpec, max_collect: usize, attributes: &[String]) -> Self {
        let filter = spec.filter.as_ref().map(|f| Filter {
            statuses: f
                .status_in
                .iter()
                .fold(0, |m, s| m | 1 << status_of(*s) as u8),
            kinds: f.kind_in.iter().fold(0, |m, k| m | 1 << kind_of(*k) as u16),
            flagged: f.flagged,
        });
        let of = |f: &Field| Of::resolve(f, attributes);
        let op = match &spec.op {
            AggregateOp::Count => Op::Count,
            AggregateOp::Sum(f) => Op::Sum(of(f)),
            AggregateOp::Min(f) => Op::Min(of(f)),
            AggregateOp::Max(f) => Op::Max(of(f)),
            AggregateOp::Avg(f) => Op::Avg(of(f)),
            AggregateOp::Distinct(f) => Op::Distinct(of(f)),
            AggregateOp::CountBy(f) => Op::CountBy(of(f)),
            AggregateOp::SumBy((g, v)) => Op::SumBy(of(g), of(v)),
            AggregateOp::CountByBand(b) => Op::CountByBand(of(&b.field)),
            AggregateOp::SumByBand(b) => Op::SumByBand(of(&b.field)),
            AggregateOp::Collect => Op::Collect,
        };
        let bounds = match &spec.op {
            AggregateOp::CountByBand(b) | AggregateOp::SumByBand(b) => b
                .bounds
                .iter()
                .map(|d| Decimal::new(d.units, u32::from(d.scale)))
                .collect(),
            _ => Vec::new(),
        };
        let mut plan = Self {
            op,
            filter,
            bounds,
            band_labels: Vec::new(),
            max_collect,
        };
        if matches!(op, Op::CountByBand(_) | Op::SumByBand(_)) {
            plan.band_labels = (0..=plan.bounds.len())
                .map(|i| plan.band_label(i).into())
                .collect();
        }
        plan
    }

    /// A fresh accumulator.
    pub fn empty(&self) -> Acc {
        match self.op {
            Op::Count => Acc::Count(0),
            Op::Sum(f) | Op::Avg(f) if f.is_money() => Acc::Money(Decimal::ZERO, 0),
            Op::Sum(_) | Op::Avg(_) => Acc::Number(0.0, 0),
            Op::Min(f) | Op::Max(f) if f.is_money() => Acc::MoneyExtreme(None),
            Op::Min(_) | Op::Max(_) => Acc::NumberExtreme(None),
            Op::Distinct(_) => Acc::Distinct(SmallMap::default()),
            Op::CountBy(_) => Acc::CountBy(SmallMap::default()),
            Op::SumBy(..) => Acc::SumBy(SmallMap::default()),
            Op::CountByBand(_) => Acc::Bands(smallvec::smallvec![0; self.bounds.len() + 1]),
            Op::SumByBand(_) => {
                Acc::BandSums(smallvec::smallvec![Decimal::ZERO; self.bounds.len() + 1])
            }
            Op::Collect => Acc::Collect(Vec::new(), 0),
        }
    }

    /// Adds an event (`strings`: what its symbols are, for attributes read
    /// as numbers).
    pub fn update(&self, acc: &mut Acc, t: &Txn, strings: &Interner) {
        if let Some(filter) = &self.filter {
            if !filter.accepts(t) {
                return;
            }
        }
        match (self.op, acc) {
            (Op::Count, Acc::Count(n)) => *n += 1,
            (Op::Sum(f) | Op::Avg(f), Acc::Money(sum, n)) => {
                if let Some(x) = money(f, t, strings) {
                    *sum += x;
                    *n += 1;
                }
            }
            (Op::Sum(_) | Op::Avg(_), Acc::Number(sum, n)) => {
                if let Some(x) = t.risk_score {
                    *sum += x;
                    *n += 1;
                }
            }
            (Op::Min(f), Acc::MoneyExtreme(m)) => {
                if let Some(x) = money(f, t, strings) {
                    *m = Some(m.map_or(x, |m| m.min(x)));
                }
            }
            (Op::Max(f), Acc::MoneyExtreme(m)) => {
                if let Some(x) = money(f, t, strings) {
                    *m = Some(m.map_or(x, |m| m.max(x)));
                }
            }
            (Op::Min(_), Acc::NumberExtreme(m)) => {
                if let Some(x) = t.risk_score {
                    *m = Some(m.map_or(x, |m| m.min(x)));
                }
            }
            (Op::Max(_), Acc::NumberExtreme(m)) => {
                if let Some(x) = t.risk_score {
                    *m = Some(m.map_or(x, |m| m.max(x)));
                }
            }
            (Op::Distinct(f), Acc::Distinct(set)) => categories(f, t, |v| {
                set.entry(v);
            }),
            (Op::CountBy(f), Acc::CountBy(map)) => categories(f, t, |v| *map.entry(v) += 1),
            (Op::SumBy(g, m), Acc::SumBy(map)) => {
                if let Some(x) = money(m, t, strings) {
                    categories(g, t, |v| *map.entry(v) += x);
                }
            }
            (Op::CountByBand(f), Acc::Bands(counts)) => {
                if let Some(x) = money(f, t, strings) {
                    let band = self.bounds.partition_point(|bound| *bound <= x);
                    counts[band] += 1;
                }
            }
            (Op::SumByBand(f), Acc::BandSums(sums)) => {
                if let Some(x) = money(f, t, strings) {
                    let band = self.bounds.partition_point(|bound| *bound <= x);
                    sums[band] += x;
                }
            }
            (Op::Collect, Acc::Collect(events, total)) => {
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
        let is_min = matches!(self.op, Op::Min(_));
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

    /// The field `acc` groups by, if it groups.
    fn grouped_by(&self) -> Option<Of> {
        match self.op {
            Op::Distinct(f) | Op::CountBy(f) | Op::SumBy(f, _) => Some(f),
            _ => None,
        }
    }

    /// Whether `acc` groups by interned strings (its keys are symbols).
    fn groups_interned(&self) -> bool {
        self.grouped_by().is_some_and(Of::interned)
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
        let field = self.grouped_by().unwrap_or(Of::Id);
        match acc {
            Acc::Count(n) => AggregateValue::Count(*n),
            Acc::Money(sum, n) => match self.op {
                Op::Avg(_) if *n == 0 => AggregateValue::Empty,
                Op::Avg(_) => AggregateValue::Money(wit_decimal(
                    (*sum / Decimal::from(*n))
                        .round_dp_with_strategy(8, RoundingStrategy::MidpointAwayFromZero),
                )),
                _ => AggregateValue::Money(wit_decimal(*sum)),
            },
            Acc::Number(sum, n) => match self.op {
                Op::Avg(_) if *n == 0 => AggregateValue::Empty,
                Op::Avg(_) => AggregateValue::Number(sum / *n as f64),
                _ => AggregateValue::Number(*sum),
            },
            Acc::MoneyExtreme(m) => m.map_or(AggregateValue::Empty, |d| {
                AggregateValue::Money(wit_decimal(d))
            }),
            Acc::NumberExtreme(m) => m.map_or(AggregateValue::Empty, AggregateValue::Number),
            Acc::Distinct(set) => AggregateValue::Count(set.len() as u64),
            Acc::CountBy(map) => AggregateValue::Counts(ordered(map, field, strings)),
            Acc::SumBy(map) => AggregateValue::Sums(
                ordered(map, field, strings)
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
        let plan = Plan::new(&spec(op), 10_000, &[]);
        let mut acc = plan.empty();
        events
            .iter()
            .for_each(|t| plan.update(&mut acc, t, strings));
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
        let plan = Plan::new(&spec(AggregateOp::Collect), 3, &[]);
        let (mut a, mut b) = (plan.empty(), plan.empty());
        for n in 0..5 {
            let t = txn(&mut s, &format!("c{n}"), n, &[]);
            plan.update(&mut a, &t, &s);
        }
        let t = txn(&mut s, "late", 9, &[]);
        plan.update(&mut b, &t, &s);
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
            &[],
        );
        let (mut a, mut b) = (plan.empty(), plan.empty());
        events[..50].iter().for_each(|t| plan.update(&mut a, t, &s));
        events[50..].iter().for_each(|t| plan.update(&mut b, t, &s));
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
            &[],
        );
        let mut acc = plan.empty();
        events.iter().for_each(|t| plan.update(&mut acc, t, &s));
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
    fn attributes_group_and_sum_as_exact_decimals() {
        let mut s = Interner::default();
        let attributes = ["product".to_string(), "quantity".to_string()];
        let mut with = |customer: &str, product: &str, quantity: &str| {
            let mut t = txn(&mut s, customer, 100, &[]);
            let mut sym = |v: &str| if v.is_empty() { NONE } else { s.intern(v) };
            t.attrs = vec![sym(product), sym(quantity)].into_boxed_slice();
            t
        };
        let events = [
            with("a", "P1", "2"),
            with("b", "P1", "1.5"),
            with("c", "P2", "3"),
            with("d", "P2", "many"),
            with("e", "", "4"),
        ];
        let attr = |name: &str| Field::Attribute(name.into());
        let run = |op: AggregateOp| {
            let plan = Plan::new(&spec(op), 10, &attributes);
            let mut acc = plan.empty();
            events.iter().for_each(|t| plan.update(&mut acc, t, &s));
            plan.finish(&acc, &s)
        };
        let texts = |v: AggregateValue| match v {
            AggregateValue::Sums(v) => v
                .iter()
                .map(|(l, d)| {
                    let d = Decimal::new(d.units, u32::from(d.scale));
                    format!("{}={d}", l.text(&s))
                })
                .collect::<Vec<_>>(),
            AggregateValue::Counts(v) => v
                .iter()
                .map(|(l, n)| format!("{}={n}", l.text(&s)))
                .collect(),
            other => panic!("{other:?}"),
        };
        // Quantity per product: "many" is not a number, and the event
        // without a product is in no group.
        assert_eq!(
            texts(run(AggregateOp::SumBy((attr("product"), attr("quantity"))))),
            ["P1=3.5", "P2=3"]
        );
        assert_eq!(
            texts(run(AggregateOp::CountBy(attr("product")))),
            ["P1=2", "P2=2"]
        );
        match run(AggregateOp::Sum(attr("quantity"))) {
            AggregateValue::Money(d) => assert_eq!(
                Decimal::new(d.units, u32::from(d.scale)),
                Decimal::new(105, 1)
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(AggregateOp::Distinct(attr("product"))),
            AggregateValue::Count(2)
        ));
        // An attribute the events do not carry groups nothing.
        assert!(texts(run(AggregateOp::CountBy(attr("colour")))).is_empty());
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
        let plan = Plan::new(&plan, 10_000, &[]);
        // Two partials merged, then through a checkpoint's form.
        let (mut a, mut b) = (plan.empty(), plan.empty());
        events[..2].iter().for_each(|t| plan.update(&mut a, t, &s));
        events[2..].iter().for_each(|t| plan.update(&mut b, t, &s));
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
