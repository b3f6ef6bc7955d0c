//! Settlement: which source positions can be committed. A batch's records
//! are settled once every sink has acknowledged what was written for them
//! and none of their events is in a window still open; a position is
//! committed per partition, up to the last batch settled for it.

use crate::source::Mark;
use std::collections::VecDeque;

/// A batch's place in the source, waiting to be settled.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The source's mark after the batch.
    pub mark: Mark,
    /// The newest event time of the batch per partition slot.
    pub newest: Vec<(u32, i64)>,
    /// Records written to each sink by then.
    pub written: Vec<u64>,
}

impl Pending {
    /// A batch of events `times` from partition slots `parts` (in step),
    /// ending at `mark`, after `written` records went to each sink.
    pub fn new(mark: Mark, times: impl IntoIterator<Item = (u32, i64)>, written: Vec<u64>) -> Self {
        let mut newest: Vec<(u32, i64)> = Vec::new();
        for (part, time) in times {
            match newest.iter_mut().find(|(p, _)| *p == part) {
                Some((_, n)) => *n = (*n).max(time),
                None => newest.push((part, time)),
            }
        }
        Self {
            mark,
            newest,
            written,
        }
    }
}

/// The positions each partition can resume from: for every partition, the
/// mark of the last batch before the first one holding an event of that
/// partition in an open window (one with events from `open_from` on), or,
/// with `acked` (records acknowledged by each sink), a record not yet
/// acknowledged by every sink. Also how many batches at the front are
/// settled for every partition (they can be forgotten).
pub fn settled(
    pending: &VecDeque<Pending>,
    open_from: i64,
    acked: Option<&[u64]>,
) -> (Option<Mark>, usize) {
    let mut blocked: Vec<u32> = Vec::new();
    let mut offsets: Vec<(u32, i64)> = Vec::new();
    let mut done = 0;
    for entry in pending {
        let durable = acked.is_none_or(|a| entry.written.iter().zip(a).all(|(w, a)| w <= a));
        if !durable {
            break;
        }
        for &(part, newest) in &entry.newest {
            if newest >= open_from && !blocked.contains(&part) {
                blocked.push(part);
            }
        }
        for &(part, next) in &entry.mark.0 {
            if blocked.contains(&part) {
                continue;
            }
            match offsets.iter_mut().find(|(p, _)| *p == part) {
                Some((_, n)) => *n = next,
                None => offsets.push((part, next)),
            }
        }
        if blocked.is_empty() {
            done += 1;
        }
    }
    ((!offsets.is_empty()).then_some(Mark(offsets)), done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of partition 0 and 1 events (times), ending at offsets
    /// `next` of each, after `written` records to one sink.
    fn batch(times: &[(u32, i64)], next: &[(u32, i64)], written: u64) -> Pending {
        Pending::new(Mark(next.to_vec()), times.iter().copied(), vec![written])
    }

    #[test]
    fn batches_whose_windows_closed_and_whose_output_landed_settle() {
        let pending = VecDeque::from([
            batch(&[(0, 100), (1, 150)], &[(0, 10), (1, 20)], 5),
            batch(&[(0, 200), (1, 250)], &[(0, 11), (1, 21)], 9),
        ]);
        // Every window closed, every record acknowledged: both settle.
        let (mark, done) = settled(&pending, i64::MAX, Some(&[9]));
        assert_eq!(mark, Some(Mark(vec![(0, 11), (1, 21)])));
        assert_eq!(done, 2);
        // The sink acknowledged only the first batch's records.
        let (mark, done) = settled(&pending, i64::MAX, Some(&[5]));
        assert_eq!(mark, Some(Mark(vec![(0, 10), (1, 20)])));
        assert_eq!(done, 1);
        // Nothing acknowledged: nothing settles.
        assert_eq!(settled(&pending, i64::MAX, Some(&[4])), (None, 0));
    }

    #[test]
    fn a_partition_with_an_event_in_an_open_window_holds_back_only_itself() {
        let pending = VecDeque::from([
            batch(&[(0, 100), (1, 150)], &[(0, 10), (1, 20)], 5),
            // Partition 1's event at 260 is in a window open from 250.
            batch(&[(0, 200), (1, 260)], &[(0, 11), (1, 21)], 9),
            batch(&[(0, 240)], &[(0, 12)], 12),
        ]);
        let (mark, done) = settled(&pending, 250, None);
        // Partition 0 settles to its newest batch; partition 1 stops
        // before the batch that holds the open window's event.
        assert_eq!(mark, Some(Mark(vec![(0, 12), (1, 20)])));
        // Only the first batch is settled for every partition.
        assert_eq!(done, 1);
    }

    #[test]
    fn a_batch_keeps_the_newest_time_of_each_partition() {
        let p = Pending::new(Mark(vec![(0, 3)]), [(0, 5), (1, 7), (0, 9), (1, 2)], vec![]);
        assert_eq!(p.newest, vec![(0, 9), (1, 7)]);
    }
}
