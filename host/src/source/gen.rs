//! The generator as a source, paced to a wall-clock rate.

use super::{Poll, RecordBatch, Source};
use crate::gen::Generator;
use std::time::{Duration, Instant};

/// Generated records at `rate` per second (0: as fast as possible).
pub struct GenSource {
    generator: Generator,
    rate: u64,
    started: Option<Instant>,
    emitted: u64,
}

impl GenSource {
    /// A paced generator source.
    pub fn new(generator: Generator, rate: u64) -> Self {
        Self {
            generator,
            rate,
            started: None,
            emitted: 0,
        }
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
            // How many records are due now; sleep (up to the timeout) until one is.
            let due =
                |at: Instant| (at.duration_since(started).as_secs_f64() * self.rate as f64) as u64;
            let mut allowed = due(Instant::now()).saturating_sub(self.emitted);
            if allowed == 0 {
                let next = Duration::from_secs_f64((self.emitted + 1) as f64 / self.rate as f64);
                let wait = (started + next)
                    .saturating_duration_since(Instant::now())
                    .min(timeout);
                std::thread::sleep(wait);
                allowed = due(Instant::now()).saturating_sub(self.emitted);
            }
            n = n.min(allowed as usize);
        }
        for _ in 0..n {
            let record = self.generator.next_record();
            self.emitted += 1;
            batch.push(&record.bytes, self.emitted);
        }
        Ok(Poll::Ready)
    }
}
