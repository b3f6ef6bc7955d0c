//! Settlement (a run without checkpoints): after each batch, the source
//! positions whose records are settled (acknowledged by every sink and in no open window, see
//! [`crate::engine::settle`]) are committed to the source, and with
//! `postgres.exactly-once` stored in the sinks with the results.

use super::ingest::Events;
use super::{Pipeline, PipelineError};
use crate::engine::settle::{self, Pending};
use crate::sink::SinkError;
use crate::source::Mark;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Source positions waiting to be settled.
pub(super) struct Settlement {
    /// Source marks after each batch, waiting to be committed.
    pending: VecDeque<Pending>,
    last_commit: Instant,
    interval: Duration,
    /// Whether the sinks store the source's offsets (`postgres.exactly-once`),
    /// and the last mark handed to them.
    offsets_in_sinks: bool,
    stored: Option<Mark>,
}

impl Settlement {
    /// Commits at most every `interval_ms`.
    pub fn new(interval_ms: u64) -> Self {
        Self {
            pending: VecDeque::new(),
            last_commit: Instant::now(),
            interval: Duration::from_millis(interval_ms.max(1)),
            offsets_in_sinks: false,
            stored: None,
        }
    }
}

impl Pipeline {
    /// What settlement needs of a batch of `events` polled: where the
    /// source stood right after it (`position`, taken when it was read: the
    /// next batch may have been read since), and its events' partitions
    /// and times (none when checkpoints commit the offsets they cover).
    pub(super) fn to_settle(
        &self,
        events: &Events,
        position: Option<Mark>,
    ) -> Option<(Mark, Vec<(u32, i64)>)> {
        if self.resumes() {
            return None;
        }
        let mark = position?;
        let times = (events.parts.iter().zip(&events.times)).map(|(&p, &t)| (p, t));
        Some((mark, times.collect()))
    }

    /// Notes where the source stood after a batch, and commits what is
    /// settled once the commit interval has passed.
    pub(super) fn settle(
        &mut self,
        batch: Option<(Mark, Vec<(u32, i64)>)>,
    ) -> Result<(), PipelineError> {
        let Some((mark, times)) = batch else {
            return Ok(());
        };
        let pending = Pending::new(mark, times, self.router.written());
        self.settlement.pending.push_back(pending);
        if self.settlement.last_commit.elapsed() >= self.settlement.interval {
            self.settlement.last_commit = Instant::now();
            self.commit_settled(false)?;
        }
        Ok(())
    }

    /// At the end of a run: stores the settled offsets in the sinks (if
    /// they keep them), flushes the sinks and commits.
    pub(super) fn settle_last(&mut self) -> Result<(), PipelineError> {
        if self.resumes() {
            self.router.flush()?;
            return Ok(());
        }
        if self.settlement.offsets_in_sinks {
            let open_from = self.open_from();
            self.store_settled(open_from)?;
        }
        self.router.flush()?;
        self.commit_settled(true)
    }

    /// Commits, per partition, the source's offsets up to the newest batch
    /// whose events of that partition are settled: acknowledged by every
    /// sink, and in no window that is still open. Does not wait for
    /// acknowledgements (`flushed`: everything written is known to be
    /// durable).
    fn commit_settled(&mut self, flushed: bool) -> Result<(), PipelineError> {
        let open_from = self.open_from();
        if self.settlement.offsets_in_sinks && !flushed {
            self.store_settled(open_from)?;
        }
        let acked = if flushed {
            None
        } else {
            Some(self.router.acknowledged()?)
        };
        let (mark, done) = settle::settled(&self.settlement.pending, open_from, acked.as_deref());
        self.settlement.pending.drain(..done);
        let Some(mark) = mark else {
            return Ok(());
        };
        if let Err(error) = self.source.commit(&mark) {
            // The next commit covers these offsets too.
            tracing::warn!(source = self.source.name(), "{error}");
        }
        Ok(())
    }

    /// The start of the oldest window still open on any worker
    /// (`i64::MAX`: none), as of the last batch.
    fn open_from(&self) -> i64 {
        self.open_from.iter().copied().min().unwrap_or(i64::MAX)
    }

    /// Has the sinks store, per partition, the offsets after the newest
    /// batch whose events are in no open window. They land after (or with)
    /// every record written before them, so a restart from them neither
    /// loses nor repeats a result.
    fn store_settled(&mut self, open_from: i64) -> Result<(), SinkError> {
        let (Some(mark), _) = settle::settled(&self.settlement.pending, open_from, None) else {
            return Ok(());
        };
        if self.settlement.stored.as_ref() == Some(&mark) {
            return Ok(());
        }
        let offsets = self.offsets_of(&mark);
        self.router
            .store_offsets(&offsets, self.watermark.current())?;
        self.settlement.stored = Some(mark);
        Ok(())
    }

    /// A mark's offsets as (topic, partition, next offset).
    pub(super) fn offsets_of(&self, mark: &Mark) -> Vec<(String, i32, i64)> {
        mark.0
            .iter()
            .filter_map(|&(part, next)| {
                self.source
                    .partition(part)
                    .map(|(topic, partition)| (topic.to_string(), partition, next))
            })
            .collect()
    }

    /// Offsets go to the sinks (which store them with the results and the
    /// watermark) as well as to the source.
    pub fn store_offsets_in_sinks(&mut self) {
        self.settlement.offsets_in_sinks = true;
    }
}
