//! What windows and keyed state are keyed by: the key of an event, and the
//! label its key carries across the WIT boundary.

use crate::model::{Interner, Kind, Txn, NONE};
use crate::runtime::bindings::types::KeyBy;

/// A window key or a group's label, as text only when the window batch is
/// encoded: most are interned strings, and resolving them then costs no
/// allocation per window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Label {
    /// An interned string.
    Sym(u32),
    /// A fixed name (kinds, statuses, risk levels).
    Name(&'static str),
    /// A label shared by every window of a spec (amount bands).
    Shared(std::sync::Arc<str>),
    /// Any other text.
    Text(String),
}

impl Label {
    /// The label's text.
    pub fn text<'a>(&'a self, strings: &'a Interner) -> &'a str {
        match self {
            Label::Sym(s) => strings.resolve(*s),
            Label::Name(n) => n,
            Label::Shared(s) => s,
            Label::Text(t) => t,
        }
    }
}

impl From<&str> for Label {
    fn from(s: &str) -> Self {
        Label::Text(s.to_string())
    }
}

/// The key of an event, or `None` if it lacks the keyed field.
pub fn key_of(key_by: KeyBy, t: &Txn) -> Option<u32> {
    let present = |s: u32| (s != NONE).then_some(s);
    match key_by {
        KeyBy::Customer => present(t.customer),
        KeyBy::Merchant => present(t.merchant),
        KeyBy::Account => present(t.account),
        KeyBy::Country => present(t.country),
        KeyBy::Kind => Some(t.kind as u32),
        KeyBy::HourOfDay => Some(crate::model::hour_of_day(t.event_time)),
        KeyBy::Global => Some(0),
    }
}

/// The label of a key.
pub fn key_label(key_by: KeyBy, key: u32) -> Label {
    match key_by {
        KeyBy::Kind => Label::Name(Kind::ALL.get(key as usize).map_or("other", |k| k.name())),
        KeyBy::HourOfDay => Label::Text(format!("{key:02}")),
        KeyBy::Global => Label::Name(""),
        _ => Label::Sym(key),
    }
}
