//! The generator as a source, paced to a wall-clock rate.
//!
//! Its events happen in simulated time, which runs `rate / traffic` times
//! faster than the wall clock; that time is the source's clock, so a run
//! of any length sees its events as current.

use super::{Poll, RecordBatch, Source};
use crate::clock::{DrivenClock, SharedClock};
use crate::gen::Generator;
use crate::runtime::SharedDims;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Generated records at `rate` per second (0: as fast as possible).
pub struct GenSource {
    generator: Generator,
    rate: u64,
    started: Option<Instant>,
    emitted: u64,
    clock: Arc<DrivenClock>,
    /// The dimension table that follows the generator's churned customers.
    dims: Option<SharedDims>,
    /// When asked for: the planted fraud records polled since the last
    /// [`GenSource::take_labels`], as (position, pattern, incident).
    labels: Option<Vec<(u64, &'static str, u64)>>,
}

impl GenSource {
    /// A paced generator source.
    pub fn new(generator: Generator, rate: u64) -> Self {
        let clock = DrivenClock::at(generator.now_ms());
        Self {
            generator,
            rate,
            started: None,
            emitted: 0,
            clock,
            dims: None,
            labels: None,
        }
    }

    /// Keeps the labels of the planted fraud records (see
    /// [`GenSource::take_labels`]).
    pub fn with_labels(mut self) -> Self {
        self.labels = Some(Vec::new());
        self
    }

    /// The planted fraud records polled since the last call: (position,
    /// pattern, incident).
    pub fn take_labels(&mut self) -> Vec<(u64, &'static str, u64)> {
        self.labels.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Keeps `dims` up to date with the customers the generator replaces.
    pub fn with_dims(mut self, dims: SharedDims) -> Self {
        self.dims = Some(dims);
        self
    }

    /// The generator.
    pub fn generator(&self) -> &Generator {
        &self.generator
    }
}

impl Source for GenSource {
    fn name(&self) -> &str {
        "gen"
    }

    fn poll(
        &mut self,
        batch: &mut RecordBatch,
        max: usize,
        timeout: Duration,
    ) -> std::io::Result<Poll> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let mut n = max;
        if self.rate > 0 {
            // Wait until a full batch is due or the batch timeout passes, then
            // hand over what is due: full batches at high rates, a bounded
            // delay at low ones.
            let rate = self.rate as f64;
            let due = |at: Instant| (at.duration_since(started).as_secs_f64() * rate) as u64;
            let full_at =
                started + Duration::from_secs_f64((self.emitted + max as u64) as f64 / rate);
            std::thread::sleep(
                full_at
                    .saturating_duration_since(Instant::now())
                    .min(timeout),
            );
            n = n.min(due(Instant::now()).saturating_sub(self.emitted) as usize);
        }
        for _ in 0..n {
            let record = self.generator.next_record();
            self.emitted += 1;
            batch.push(&record.bytes, self.emitted);
            if let (Some(labels), Some((pattern, incident))) = (&mut self.labels, record.fraud) {
                labels.push((self.emitted, pattern, incident));
            }
        }
        self.clock.set(self.generator.now_ms());
        let churned = self.generator.take_churned();
        if let (false, Some(dims)) = (churned.is_empty(), &self.dims) {
            if let Ok(mut dims) = dims.write() {
                for (old, new) in churned {
                    dims.remove_customer(&old);
                    dims.put_customer(new);
                }
            }
        }
        Ok(Poll::Ready)
    }

    fn clock(&self) -> Option<SharedClock> {
        Some(self.clock.clone())
    }
}
