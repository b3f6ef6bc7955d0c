use super::*;
use crate::model::{Kind, Status, NONE};
use crate::runtime::bindings::types::KeyBy;
use crate::runtime::bindings::types::{AggregateOp, AggregateSpec, Field, SlidingWindow};
use rust_decimal::Decimal;

fn spec(kind: WindowKind, lateness: i64) -> WindowSpec {
    WindowSpec {
        name: "w".into(),
        kind,
        key: KeyBy::Customer,
        allowed_lateness_ms: lateness,
        with_state: false,
        aggregates: vec![
            AggregateSpec {
                name: "n".into(),
                op: AggregateOp::Count,
                filter: None,
            },
            AggregateSpec {
                name: "sum".into(),
                op: AggregateOp::Sum(Field::Amount),
                filter: None,
            },
        ],
    }
}

/// An event of `customer` at `time` for `cents` (for the engine's tests).
pub(crate) fn txn(s: &mut Interner, customer: &str, time: i64, cents: i64) -> Txn {
    Txn {
        id: format!("{customer}-{time}").into(),
        customer: s.intern(customer),
        account: NONE,
        merchant: NONE,
        kind: Kind::Purchase,
        status: Status::Completed,
        amount: Decimal::new(cents, 2),
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
        event_time: time,
    }
}

fn fire(op: &mut WindowOperator, wm: i64, s: &Interner) -> Vec<(String, i64, i64, u32, u64)> {
    let mut out = Vec::new();
    op.fire(wm, s, &mut out);
    out.into_iter()
        .map(|f| {
            let n = match f.values[0] {
                AggregateValue::Count(n) => n,
                _ => panic!(),
            };
            (f.key.text(s).to_string(), f.start, f.end, f.refire, n)
        })
        .collect()
}

#[test]
fn tumbling_windows_fire_when_the_watermark_passes_their_end() {
    let mut s = Interner::default();
    let mut op = WindowOperator::new(&spec(WindowKind::Tumbling(100), 0));
    for (c, t) in [("a", 10), ("a", 99), ("b", 50), ("a", 100)] {
        assert_eq!(op.add(&txn(&mut s, c, t, 100), i64::MIN, &s), Admit::Added);
    }
    assert!(fire(&mut op, 99, &s).is_empty());
    let fired = fire(&mut op, 100, &s);
    assert_eq!(
        fired,
        vec![("a".into(), 0, 100, 0, 2), ("b".into(), 0, 100, 0, 1)]
    );
    assert_eq!(op.len(), 1, "fired panes without lateness are purged");
    assert_eq!(
        fire(&mut op, i64::MAX, &s),
        vec![("a".into(), 100, 200, 0, 1)]
    );
}

#[test]
fn late_events_within_lateness_refire_and_beyond_are_counted() {
    let mut s = Interner::default();
    let mut op = WindowOperator::new(&spec(WindowKind::Tumbling(100), 50));
    op.add(&txn(&mut s, "a", 10, 100), i64::MIN, &s);
    assert_eq!(fire(&mut op, 120, &s), vec![("a".into(), 0, 100, 0, 1)]);
    assert_eq!(
        op.add(&txn(&mut s, "a", 20, 100), 120, &s),
        Admit::Added,
        "within lateness"
    );
    assert_eq!(fire(&mut op, 130, &s), vec![("a".into(), 0, 100, 1, 2)]);
    assert!(fire(&mut op, 150, &s).is_empty());
    assert_eq!(
        op.add(&txn(&mut s, "a", 30, 100), 150, &s),
        Admit::Late,
        "beyond lateness"
    );
    assert_eq!(op.late_events, 1);
    assert!(op.is_empty());
}

#[test]
fn sliding_windows_count_an_event_in_each_overlap() {
    let mut s = Interner::default();
    let kind = WindowKind::Sliding(SlidingWindow {
        size_ms: 30,
        slide_ms: 10,
    });
    let mut op = WindowOperator::new(&spec(kind, 0));
    op.add(&txn(&mut s, "a", 25, 100), i64::MIN, &s);
    let fired = fire(&mut op, i64::MAX, &s);
    let windows: Vec<(i64, i64)> = fired.iter().map(|f| (f.1, f.2)).collect();
    assert_eq!(windows, vec![(0, 30), (10, 40), (20, 50)]);
}

#[test]
fn sessions_merge_across_gaps() {
    let mut s = Interner::default();
    let mut op = WindowOperator::new(&spec(WindowKind::Session(10), 0));
    for t in [0, 5, 30, 12] {
        op.add(&txn(&mut s, "a", t, 100), i64::MIN, &s);
    }
    // 0, 5 and 12 chain into [0, 22); 30 stands alone.
    assert_eq!(
        fire(&mut op, i64::MAX, &s),
        vec![("a".into(), 0, 22, 0, 3), ("a".into(), 30, 40, 0, 1)]
    );
    // A bridging event merges two sessions.
    let mut op = WindowOperator::new(&spec(WindowKind::Session(10), 0));
    for t in [0, 15, 8] {
        op.add(&txn(&mut s, "b", t, 100), i64::MIN, &s);
    }
    assert_eq!(fire(&mut op, i64::MAX, &s), vec![("b".into(), 0, 25, 0, 3)]);
}

#[test]
fn a_window_batch_lays_every_result_out_once() {
    use crate::runtime::bindings::types::{Decimal as WitDecimal, ResultKind};
    let mut s = Interner::default();
    let a = txn(&mut s, "alice", 1_000, 250);
    let fired = vec![
        Fired {
            key: "alice".into(),
            start: 0,
            end: 60_000,
            refire: 0,
            values: vec![
                AggregateValue::Count(2),
                AggregateValue::Counts(vec![("web".into(), 2), ("pos".into(), 1)]),
                AggregateValue::Events(vec![a.clone()], 1),
            ],
        },
        Fired {
            key: "bob".into(),
            start: 0,
            end: 60_000,
            refire: 1,
            values: vec![
                AggregateValue::Money(WitDecimal {
                    units: 1234,
                    scale: 2,
                }),
                AggregateValue::Sums(vec![("web".into(), WitDecimal { units: 5, scale: 1 })]),
                AggregateValue::Empty,
            ],
        },
    ];
    let b = encode::WindowBatchBuilder::default().build("w", &fired, &s);
    let text = |i: u32| {
        let i = i as usize;
        let start = if i == 0 {
            0
        } else {
            b.dict_ends[i - 1] as usize
        };
        std::str::from_utf8(&b.dict_bytes[start..b.dict_ends[i] as usize]).unwrap()
    };
    assert_eq!(b.spec, "w");
    assert_eq!(
        b.keys.iter().map(|&k| text(k)).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert_eq!(b.refires, [0, 1]);
    assert_eq!(b.results_per_window, 3);
    assert_eq!(
        b.result_kinds,
        [
            ResultKind::Count,
            ResultKind::Counts,
            ResultKind::Events,
            ResultKind::Money,
            ResultKind::Sums,
            ResultKind::Empty
        ]
    );
    assert_eq!(b.result_ints, [2, 0, 0, 1234, 2, 0]);
    assert_eq!(b.result_extras, [0, 2, 1, 2, 1, 0]);
    // "web" crosses once, though two results name it.
    let labels: Vec<&str> = b.entry_labels.iter().map(|&l| text(l)).collect();
    assert_eq!(labels, ["web", "pos", "web"]);
    assert_eq!(b.entry_labels[0], b.entry_labels[2]);
    assert_eq!(b.entry_ints, [2, 1, 5]);
    assert_eq!(b.entry_scales, [0, 0, 1]);
    assert_eq!(b.events.ids.len(), 1);
    assert_eq!(b.events.amounts, [250]);
}

#[test]
fn windows_fired_before_a_restart_are_not_fired_again() {
    let mut s = Interner::default();
    let mut op = WindowOperator::new(&spec(WindowKind::Tumbling(60_000), 0));
    // Resumed with the watermark stored at 120 s: [0, 60) and [60, 120)
    // were fired whole before the stop.
    op.resume_after(120_000);
    for (time, cents) in [
        (59_000, 100),
        (119_999, 200),
        (120_000, 300),
        (130_000, 400),
    ] {
        assert_eq!(
            op.add(&txn(&mut s, "c1", time, cents), i64::MIN, &s),
            Admit::Added
        );
    }
    assert_eq!(op.len(), 1);
    assert_eq!(
        fire(&mut op, 200_000, &s),
        vec![("c1".to_string(), 120_000, 180_000, 0, 2)]
    );
}

#[test]
fn past_the_open_window_ceiling_an_event_is_refused_and_open_windows_go_on() {
    let mut s = Interner::default();
    let limits = WindowLimits {
        max_open: 2,
        max_collect: 10,
        attributes: std::sync::Arc::from([]),
    };
    let mut op = WindowOperator::with_limits(&spec(WindowKind::Tumbling(100), 0), &limits);
    assert_eq!(
        op.add(&txn(&mut s, "a", 10, 100), i64::MIN, &s),
        Admit::Added
    );
    assert_eq!(
        op.add(&txn(&mut s, "b", 10, 100), i64::MIN, &s),
        Admit::Added
    );
    let c = txn(&mut s, "c", 10, 100);
    assert_eq!(
        op.add(&c, i64::MIN, &s),
        Admit::Full {
            key: c.customer,
            start: 0
        }
    );
    assert_eq!(op.refused_events, 1);
    assert_eq!(
        op.add(&txn(&mut s, "a", 20, 100), i64::MIN, &s),
        Admit::Added
    );
    let fired = fire(&mut op, 100, &s);
    assert_eq!(fired.len(), 2);
    assert_eq!((fired[0].0.as_str(), fired[0].4), ("a", 2));
    // Fired and purged, they make room again.
    assert_eq!(op.add(&txn(&mut s, "c", 110, 100), 100, &s), Admit::Added);
    // Sessions are held to the ceiling too.
    let mut sessions = WindowOperator::with_limits(&spec(WindowKind::Session(10), 0), &limits);
    for (c, t) in [("a", 1), ("b", 1), ("a", 5)] {
        assert_eq!(
            sessions.add(&txn(&mut s, c, t, 1), i64::MIN, &s),
            Admit::Added
        );
    }
    assert!(matches!(
        sessions.add(&txn(&mut s, "c", 1, 1), i64::MIN, &s),
        Admit::Full { .. }
    ));
}

#[test]
fn a_sweep_of_the_interner_keeps_what_open_windows_hold() {
    let mut s = Interner::default();
    let mut op = WindowOperator::new(&spec(WindowKind::Tumbling(100), 0));
    for n in 0..1_000 {
        // Strings no window holds: other customers' ids, seen and gone.
        s.intern(&format!("gone-{n}"));
    }
    for c in ["alice", "bob"] {
        op.add(&txn(&mut s, c, 10, 100), i64::MIN, &s);
    }
    let mut marks = s.marks();
    op.mark_strings(&mut marks);
    assert!(s.sweep(&marks) >= 1_000);
    // New strings take the released symbols; the windows' keys stay theirs.
    for n in 0..1_000 {
        s.intern(&format!("new-{n}"));
    }
    let fired = fire(&mut op, 100, &s);
    let keys: Vec<&str> = fired.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(keys, ["alice", "bob"]);
}

#[test]
fn windows_restored_from_a_snapshot_fire_as_the_originals_would() {
    for kind in [
        WindowKind::Tumbling(60_000),
        WindowKind::Session(30_000),
        WindowKind::Sliding(SlidingWindow {
            size_ms: 60_000,
            slide_ms: 20_000,
        }),
    ] {
        let mut s = Interner::default();
        let mut op = WindowOperator::new(&spec(kind, 30_000));
        for (i, c) in ["a", "b", "a", "c", "a"].iter().enumerate() {
            op.add(&txn(&mut s, c, i as i64 * 25_000, 100), i64::MIN, &s);
        }
        // One window fired, then updated by a late event (it fires again).
        let first = fire(&mut op, 60_000, &s);
        op.add(&txn(&mut s, "a", 59_000, 100), 60_000, &s);
        let mut bytes = Vec::new();
        op.write_snapshot(&mut bytes);
        let mut back = WindowOperator::new(&spec(kind, 30_000));
        back.read_snapshot(
            &mut crate::codec::Reader::new(&bytes, "test"),
            &mut |_, s| Some(s),
        )
        .unwrap();
        assert_eq!(back.len(), op.len(), "{kind:?}");
        let more = txn(&mut s, "b", 130_000, 100);
        op.add(&more, 60_000, &s);
        back.add(&more, 60_000, &s);
        for watermark in [70_000, 200_000, i64::MAX] {
            assert_eq!(
                fire(&mut back, watermark, &s),
                fire(&mut op, watermark, &s),
                "{kind:?} at {watermark} (first fired {first:?})"
            );
        }
        assert!(back.is_empty());
    }
}

#[test]
fn retained_keys_keep_their_windows_and_the_others_leave_unfired() {
    let mut s = Interner::default();
    let mut op = WindowOperator::new(&spec(WindowKind::Tumbling(60_000), 0));
    for (who, t, c) in [("a", 1_000, 100), ("b", 2_000, 200), ("a", 3_000, 300)] {
        op.add(&txn(&mut s, who, t, c), i64::MIN, &s);
    }
    let b = s.intern("b");
    assert_eq!(op.retain_keys(&mut |key| key != b), 1);
    assert_eq!(op.len(), 1);
    // The kept window fires whole; the dropped one never does.
    assert_eq!(
        fire(&mut op, 60_000, &s),
        vec![("a".into(), 0, 60_000, 0, 2)]
    );
}
