//! Event-time watermarks with bounded out-of-orderness.
//!
//! The watermark trails the largest event time seen by the bound: it promises
//! that events older than it are not expected any more. A window `[start, end)`
//! fires when the watermark reaches `end`.
//!
//! With several input partitions (Kafka), each partition keeps its own
//! largest event time and the watermark is the smallest of them, so a
//! partition that is behind holds time back; a partition that has sent
//! nothing for the idle timeout (wall time), or whose mark says it is
//! idle, stops counting until it sends again, and one assigned to another
//! reader stops counting until it is assigned here again. The watermark
//! never goes back.
//!
//! For a live source the watermark also never runs ahead of the clock: an
//! event stamped later than the clock plus the bound is processed, but its
//! time does not count here, so one future-dated record cannot fire windows
//! early or make the events after it late.

use crate::codec::{self, Put, Reader};
use std::time::{Duration, Instant};

/// A watermark generator.
#[derive(Clone, Debug)]
pub struct Watermark {
    bound_ms: i64,
    /// Per partition: largest event time and when it last sent an event.
    parts: Vec<(i64, Instant)>,
    idle: Duration,
    emitted: i64,
    closed: bool,
    /// The latest event time that counts (the clock plus the bound, for a
    /// live source).
    ceiling: i64,
    /// Events whose time was past the ceiling.
    ahead: u64,
    /// Per partition: whether its last mark said it is idle.
    marked_idle: Vec<bool>,
    /// Per partition: whether it went to another reader (it does not
    /// count until assigned again).
    gone: Vec<bool>,
    /// Whether a partition that sent nothing for the idle timeout stops
    /// counting (off when marks say which are idle).
    wall_idle: bool,
}

impl Watermark {
    /// A watermark trailing the largest event time by `bound_ms`.
    pub fn new(bound_ms: i64) -> Self {
        Self::with_idle(bound_ms, Duration::from_secs(5))
    }

    /// A watermark over partitions that count as idle after `idle`.
    pub fn with_idle(bound_ms: i64, idle: Duration) -> Self {
        Self {
            bound_ms,
            parts: Vec::new(),
            idle,
            emitted: i64::MIN,
            closed: false,
            ceiling: i64::MAX,
            ahead: 0,
            marked_idle: Vec::new(),
            gone: Vec::new(),
            wall_idle: true,
        }
    }

    /// Partitions go idle only when a mark says so ([`Self::observe_mark`]),
    /// not after the idle timeout of wall time: a source whose marks say
    /// which partitions are idle (a repartition topic) gives the same
    /// watermark however fast it is read.
    pub fn marks_only(&mut self) {
        self.wall_idle = false;
    }

    /// Takes a mark of a partition into account: its largest event time,
    /// or `i64::MIN` when it is idle.
    pub fn observe_mark(&mut self, part: u32, time: i64, now: Instant) {
        let i = part as usize;
        if i >= self.marked_idle.len() {
            self.marked_idle.resize(i + 1, false);
        }
        self.marked_idle[i] = time == i64::MIN;
        if time != i64::MIN {
            self.observe_in(part, time, Some(now));
        }
    }

    /// For a live source, the clock's time as of this batch: events later
    /// than it plus the bound do not move the watermark. Call once per
    /// batch, before the batch's events are observed.
    pub fn set_clock(&mut self, now_ms: i64) {
        self.ceiling = now_ms.saturating_add(self.bound_ms);
    }

    /// Events seen so far whose time was ahead of the clock by more than
    /// the bound (they did not move the watermark).
    pub fn ahead_of_clock(&self) -> u64 {
        self.ahead
    }

    /// Takes an event time of a partition into account (`now` for idleness;
    /// `None` reuses the partition's last time).
    pub fn observe_in(&mut self, part: u32, event_time: i64, now: Option<Instant>) {
        let i = part as usize;
        if i >= self.parts.len() {
            let at = now.unwrap_or_else(Instant::now);
            self.parts.resize(i + 1, (i64::MIN, at));
        }
        let p = &mut self.parts[i];
        if let Some(now) = now {
            p.1 = now;
        }
        if event_time > self.ceiling {
            self.ahead += 1;
            return;
        }
        p.0 = p.0.max(event_time);
    }

    /// Registers a partition the source was assigned: until it sends an
    /// event or goes idle, it holds the watermark back.
    pub fn assign(&mut self, part: u32, now: Instant) {
        let i = part as usize;
        if i >= self.parts.len() {
            self.parts.resize(i + 1, (i64::MIN, now));
        }
        if let Some(g) = self.gone.get_mut(i) {
            *g = false;
        }
    }

    /// The source's whole assignment after a rebalance: `parts` are
    /// assigned, and every other partition went to another reader, so
    /// that its last time (which no longer moves here) holds nothing back.
    pub fn assign_only(&mut self, parts: &[u32], now: Instant) {
        self.gone = (0..self.parts.len() as u32)
            .map(|p| !parts.contains(&p))
            .collect();
        parts.iter().for_each(|&p| self.assign(p, now));
    }

    /// Advances the watermark from the partitions' event times; call once
    /// per batch.
    pub fn advance(&mut self, now: Instant) {
        // An active partition that has sent nothing yet holds time back;
        // one gone to another reader does not count.
        let (idle, gone) = (&self.marked_idle, &self.gone);
        let here = |i: usize| !gone.get(i).copied().unwrap_or(false);
        let slowest_active = (self.parts.iter().enumerate())
            .filter(|(i, (_, seen))| {
                here(*i)
                    && !idle.get(*i).copied().unwrap_or(false)
                    && (!self.wall_idle || now.duration_since(*seen) < self.idle)
            })
            .map(|(_, (t, _))| *t)
            .min();
        // Every partition idle: the largest time seen stands.
        let candidate = slowest_active.unwrap_or_else(|| {
            (self.parts.iter().enumerate())
                .filter(|(i, _)| here(*i))
                .map(|(_, (t, _))| *t)
                .max()
                .unwrap_or(i64::MIN)
        });
        if candidate != i64::MIN {
            self.emitted = self.emitted.max(candidate.saturating_sub(self.bound_ms));
        }
    }

    /// The current watermark (`i64::MIN` before any event, `i64::MAX` once closed).
    pub fn current(&self) -> i64 {
        if self.closed {
            i64::MAX
        } else {
            self.emitted
        }
    }

    /// The watermark as it stood before [`Self::close`] (what the last
    /// events read are judged late against).
    pub fn last_open(&self) -> i64 {
        self.emitted
    }

    /// Appends the watermark in a checkpoint's form: the watermark, then
    /// each partition slot's largest event time.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        out.put_i64(self.emitted);
        out.put_len(self.parts.len());
        self.parts.iter().for_each(|(t, _)| out.put_i64(*t));
    }

    /// Takes the watermark and partition times of a snapshot written by
    /// [`Self::write_snapshot`]; each partition counts as active from `now`.
    pub fn read_snapshot(&mut self, r: &mut Reader<'_>, now: Instant) -> Result<(), codec::Error> {
        r.reading("watermark");
        self.emitted = r.i64()?;
        let n = r.len(8)?;
        self.parts.clear();
        for _ in 0..n {
            self.parts.push((r.i64()?, now));
        }
        Ok(())
    }

    /// Starts over, before any event: a member rolled back to its
    /// partitions' checkpoints replays their marks.
    pub fn reset(&mut self) {
        self.parts.clear();
        self.marked_idle.clear();
        self.gone.clear();
        self.emitted = i64::MIN;
    }

    /// The input is over: everything may fire.
    pub fn close(&mut self) {
        self.closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_the_maximum_and_never_goes_back() {
        let mut w = Watermark::new(5_000);
        let now = Instant::now();
        assert_eq!(w.current(), i64::MIN);
        for (t, expect) in [(10_000, 5_000), (8_000, 5_000), (20_000, 15_000)] {
            w.observe_in(0, t, Some(now));
            w.advance(now);
            assert_eq!(w.current(), expect);
        }
        w.close();
        assert_eq!(w.current(), i64::MAX);
    }

    #[test]
    fn an_event_ahead_of_the_clock_does_not_move_the_watermark() {
        let day = 86_400_000;
        let now = Instant::now();
        let clock = 1_800_000_000_000;
        let mut w = Watermark::new(5_000);
        w.set_clock(clock);
        w.observe_in(0, clock - 1_000, Some(now));
        // A record a day ahead, then the stream goes on at the clock's time.
        w.observe_in(0, clock + day, Some(now));
        w.advance(now);
        assert_eq!(w.current(), clock - 6_000);
        assert!(w.current() <= clock);
        assert_eq!(w.ahead_of_clock(), 1);
        // Stamped within the bound of the clock, an event counts.
        w.set_clock(clock + 10_000);
        w.observe_in(0, clock + 12_000, Some(now));
        w.advance(now);
        assert_eq!(w.current(), clock + 7_000);
        // Without a clock (a replay), every time counts.
        let mut replay = Watermark::new(5_000);
        replay.observe_in(0, clock + day, Some(now));
        replay.advance(now);
        assert_eq!(replay.current(), clock + day - 5_000);
    }

    #[test]
    fn a_partition_gone_to_another_reader_holds_nothing_back() {
        let t0 = Instant::now();
        let mut w = Watermark::with_idle(0, Duration::from_secs(5));
        w.marks_only();
        w.observe_mark(0, 100_000, t0);
        w.observe_mark(1, 40_000, t0);
        w.advance(t0);
        assert_eq!(w.current(), 40_000);
        // Partition 1 goes to another member: its last time no longer
        // holds the watermark.
        w.assign_only(&[0], t0);
        w.observe_mark(0, 120_000, t0);
        w.advance(t0);
        assert_eq!(w.current(), 120_000);
        // Nor, when every partition left is idle, does it lead it.
        w.observe_mark(1, 500_000, t0);
        w.observe_mark(0, i64::MIN, t0);
        w.advance(t0);
        assert_eq!(w.current(), 120_000);
        // Given back, it holds again from where it stood.
        w.assign_only(&[0, 1], t0);
        w.observe_mark(0, 700_000, t0);
        w.advance(t0);
        assert_eq!(w.current(), 500_000);
    }

    #[test]
    fn the_slowest_active_partition_holds_time_and_idle_ones_do_not() {
        let mut w = Watermark::with_idle(0, Duration::from_secs(5));
        let t0 = Instant::now();
        w.observe_in(0, 100_000, Some(t0));
        w.observe_in(1, 40_000, Some(t0));
        w.advance(t0);
        assert_eq!(w.current(), 40_000);
        // Partition 1 goes quiet; after the idle timeout partition 0 leads.
        w.observe_in(0, 120_000, Some(t0 + Duration::from_secs(6)));
        w.advance(t0 + Duration::from_secs(6));
        assert_eq!(w.current(), 120_000);
        // An assigned partition that has sent nothing holds time until idle.
        let mut w2 = Watermark::with_idle(0, Duration::from_secs(5));
        w2.observe_in(0, 100_000, Some(t0));
        w2.assign(1, t0);
        w2.advance(t0);
        assert_eq!(w2.current(), i64::MIN);
        w2.advance(t0 + Duration::from_secs(6));
        assert_eq!(w2.current(), 100_000);
        // It comes back behind: the watermark does not go back.
        w.observe_in(1, 50_000, Some(t0 + Duration::from_secs(7)));
        w.advance(t0 + Duration::from_secs(7));
        assert_eq!(w.current(), 120_000);
    }
}
