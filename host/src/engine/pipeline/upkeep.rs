//! Upkeep between batches: what bounds memory in a long run (interned
//! strings released, keyed state held to its ceiling and expired, dedup
//! ids forgotten) and the gauges the metrics show.

use super::worker::{Gauges, Worker};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Keyed-state expiry walks every key, so it runs once per this many batches.
pub(super) const EXPIRE_EVERY: u64 = 64;

impl Worker {
    /// The upkeep after a batch, at `watermark`; with `expire`, keyed
    /// state past its time to live is dropped, and the per-rule-set
    /// gauges are returned.
    pub(super) fn upkeep(&mut self, watermark: i64, expire: bool) -> Gauges {
        self.sweep_strings();
        self.bound_states();
        if expire {
            self.expire_states(watermark)
        } else {
            Vec::new()
        }
    }

    /// Releases the interned strings no open window holds any more, once
    /// the interner has grown enough since the last sweep. Between
    /// batches: no event of a batch in flight holds a symbol then.
    fn sweep_strings(&mut self) {
        if self.strings.held() >= self.sweep_at {
            let mut marks = self.strings.marks();
            for w in self.slots.iter().flat_map(|s| s.windows.iter()) {
                w.mark_strings(&mut marks);
            }
            for t in self.held.iter().flatten() {
                t.mark_strings(&mut marks);
            }
            let released = self.strings.sweep(&marks);
            self.forget_released(&marks);
            self.sweep_at = super::worker::SWEEP_AT_LEAST.max(2 * self.strings.held());
            tracing::debug!(
                worker = self.me,
                released,
                held = self.strings.held(),
                "released interned strings no window holds"
            );
        }
    }

    /// Holds every rule set's keyed state to `engine.max-keyed-states`.
    fn bound_states(&mut self) {
        let max = self.config.max_keyed_states;
        for s in &mut self.slots {
            let shed = s.state.shed(max);
            if shed > 0 {
                self.metrics
                    .state_shed
                    .fetch_add(shed as u64, Ordering::Relaxed);
                if self
                    .warned_shed
                    .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
                {
                    self.warned_shed = Some(Instant::now());
                    tracing::warn!(
                        rule = %s.rule.name(),
                        "keyed state reached engine.max-keyed-states ({max} keys): dropped the \
                         {shed} keys written longest ago, as if their time to live had passed"
                    );
                }
            }
        }
    }

    /// Drops keyed state past its time to live; returns the per-rule-set
    /// gauges (keys, bytes, instance memory).
    fn expire_states(&mut self, watermark: i64) -> Gauges {
        let mut gauges = Vec::with_capacity(self.slots.len());
        for s in &mut self.slots {
            s.state.expire(watermark);
            gauges.push((
                s.rule.name().to_string(),
                s.rule.version().to_string(),
                s.state.len() as u64,
                s.state.bytes() as u64,
                s.rule.memory_bytes() as u64,
            ));
        }
        gauges
    }
}

impl Worker {
    /// Drops the keyed state and open windows (unfired) of the keys the
    /// partitions `gone` of a repartition topic of `partitions` own: the
    /// member they went to rebuilds them from the offsets committed.
    pub(super) fn drop_partitions(&mut self, gone: &[i32], partitions: usize) {
        use crate::engine::key::{event_owner, key_label, owner, FIELDS};
        let mine = |key_by, text: &str| !gone.contains(&(owner(key_by, text, partitions) as i32));
        let (mut keys, mut windows) = (0, 0);
        let strings = &self.strings;
        for (held, key_by) in self.held.iter_mut().zip(FIELDS) {
            held.retain(|t| !gone.contains(&(event_owner(key_by, t, strings, partitions) as i32)));
        }
        for s in &mut self.slots {
            if let Some(key_by) = s.state_field {
                keys += s.state.retain(|key| mine(key_by, key));
            }
            for op in &mut s.windows {
                let key_by = op.key_by();
                let strings = &self.strings;
                windows +=
                    op.retain_keys(&mut |key| mine(key_by, key_label(key_by, key).text(strings)));
            }
        }
        if keys + windows > 0 {
            tracing::debug!(
                worker = self.me,
                keys,
                windows,
                "dropped the state and open windows of partitions another member took"
            );
        }
    }

    /// Drops every key's state, open windows and held events, and a
    /// checkpoint part under way: the member goes back to its partitions'
    /// checkpoints.
    pub(super) fn roll_back(&mut self, every: &[i32], partitions: usize) {
        self.copy = None;
        self.drop_partitions(every, partitions);
    }
}
