//! Batched delivery to a database, on a thread of its own, through outages.
//!
//! The pipeline hands rows to a [`Spool`]; they are grouped into batches
//! (by size, and by age at the next [`Spool::tick`]) and queued for a writer
//! thread. The writer retries a failed batch with exponential backoff until
//! it lands, reconnecting as needed, so an outage of the server delays rows
//! but loses none. The queue is bounded: when it is full, handing over the
//! next batch waits, which pauses the pipeline and with it the source
//! (back-pressure) instead of growing memory. A batch that lands is counted
//! as acknowledged, which is what lets the pipeline commit source offsets.

use super::SinkError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Writes one batch to the server. Called again with the same batch after an
/// error, so a write must be all-or-nothing or idempotent.
pub trait BatchWriter: Send + 'static {
    /// A row in the writer's own form.
    type Row: Send + 'static;
    /// Writes the rows (table index, row) of one batch.
    fn write(&mut self, batch: &[(usize, Self::Row)]) -> Result<(), String>;
}

/// How a spool batches and retries.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    /// Rows per batch.
    pub batch_rows: usize,
    /// A partial batch older than this is sent at the next tick.
    pub flush_interval: Duration,
    /// Batches queued for the writer before the pipeline waits.
    pub buffer_batches: usize,
    /// Give up (fail the run) after retrying one batch this long; zero
    /// retries forever.
    pub retry_for: Duration,
}

impl SpoolConfig {
    /// From the sinks' config keys (`batch-rows`, `flush-interval-ms`,
    /// `buffer-batches`, `retry-max-secs`).
    pub fn new(
        batch_rows: usize,
        flush_interval_ms: u64,
        buffer_batches: usize,
        retry_max_secs: u64,
    ) -> Self {
        Self {
            batch_rows: batch_rows.max(1),
            flush_interval: Duration::from_millis(flush_interval_ms),
            buffer_batches: buffer_batches.max(1),
            retry_for: Duration::from_secs(retry_max_secs),
        }
    }
}

#[derive(Default)]
struct Progress {
    /// Rows written durably, from the first.
    acked: AtomicU64,
    /// Set when the writer gave up.
    failed: Mutex<Option<String>>,
    /// Notified on every acknowledgement and on failure.
    changed: Condvar,
    lock: Mutex<()>,
}

/// Rows on their way to one server.
pub struct Spool<R: Send + 'static> {
    name: String,
    config: SpoolConfig,
    sender: Option<SyncSender<Vec<(usize, R)>>>,
    current: Vec<(usize, R)>,
    started: Option<Instant>,
    sent: u64,
    progress: Arc<Progress>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl<R: Send + 'static> Spool<R> {
    /// Starts the writer thread. `name` names the sink and server (without
    /// credentials) in logs and errors.
    pub fn start<W: BatchWriter<Row = R>>(
        name: String,
        config: SpoolConfig,
        mut writer: W,
    ) -> Self {
        let (sender, receiver) = sync_channel::<Vec<(usize, R)>>(config.buffer_batches.max(1));
        let progress = Arc::new(Progress::default());
        let shared = progress.clone();
        let label = name.clone();
        let retry_for = config.retry_for;
        let thread = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                for batch in receiver {
                    let first_try = Instant::now();
                    let mut backoff = Duration::from_millis(100);
                    let mut attempts = 0u32;
                    loop {
                        match writer.write(&batch) {
                            Ok(()) => {
                                if attempts > 0 {
                                    tracing::info!(
                                        sink = %label,
                                        "written after {attempts} retries ({:.1} s); catching up",
                                        first_try.elapsed().as_secs_f64()
                                    );
                                }
                                shared.acked.fetch_add(batch.len() as u64, Ordering::Release);
                                break;
                            }
                            Err(e) => {
                                attempts += 1;
                                if !retry_for.is_zero() && first_try.elapsed() >= retry_for {
                                    let message = format!(
                                        "gave up after {attempts} attempts in {} s: {e}",
                                        first_try.elapsed().as_secs()
                                    );
                                    tracing::error!(sink = %label, "{message}");
                                    if let Ok(mut f) = shared.failed.lock() {
                                        *f = Some(message);
                                    }
                                    let _guard = shared.lock.lock();
                                    shared.changed.notify_all();
                                    return;
                                }
                                if attempts == 1 || attempts.is_power_of_two() {
                                    tracing::warn!(
                                        sink = %label,
                                        "write failed ({e}); retrying (attempt {attempts}), rows are kept"
                                    );
                                }
                                std::thread::sleep(backoff);
                                backoff = (backoff * 2).min(MAX_BACKOFF);
                            }
                        }
                    }
                    let _guard = shared.lock.lock();
                    shared.changed.notify_all();
                }
            })
            .expect("spawning a sink writer thread");
        Self {
            name,
            current: Vec::with_capacity(config.batch_rows),
            config,
            sender: Some(sender),
            started: None,
            sent: 0,
            progress,
            thread: Some(thread),
        }
    }

    fn error(&self, message: String) -> SinkError {
        SinkError {
            sink: self.name.clone(),
            message,
        }
    }

    fn check(&self) -> Result<(), SinkError> {
        match self.progress.failed.lock() {
            Ok(f) => match f.as_ref() {
                Some(m) => Err(self.error(m.clone())),
                None => Ok(()),
            },
            Err(_) => Err(self.error("the writer thread panicked".into())),
        }
    }

    /// Adds a row for table `table`; sends the batch when it is full.
    pub fn push(&mut self, table: usize, row: R) -> Result<(), SinkError> {
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
        self.current.push((table, row));
        if self.current.len() >= self.config.batch_rows {
            self.send(true)?;
        }
        Ok(())
    }

    /// Queues the current batch; waits for room when `wait`, otherwise
    /// keeps the batch when the queue is full.
    fn send(&mut self, wait: bool) -> Result<(), SinkError> {
        self.check()?;
        if self.current.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(
            &mut self.current,
            Vec::with_capacity(self.config.batch_rows),
        );
        let n = batch.len() as u64;
        let Some(sender) = &self.sender else {
            return Err(self.error("the writer has stopped".into()));
        };
        match sender.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(batch)) if !wait => {
                self.current = batch;
                return Ok(());
            }
            Err(TrySendError::Full(batch)) => {
                // Every batch slot is taken: wait (and with this the source)
                // until the writer has landed one.
                let waited = Instant::now();
                // A writer that gives up drops the queue, which ends the wait.
                if sender.send(batch).is_err() {
                    self.check()?;
                    return Err(self.error("the writer has stopped".into()));
                }
                if waited.elapsed() >= Duration::from_secs(1) {
                    tracing::warn!(
                        sink = %self.name,
                        "the source waited {:.1} s for {} buffered batches to land",
                        waited.elapsed().as_secs_f64(),
                        self.config.buffer_batches
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.check()?;
                return Err(self.error("the writer has stopped".into()));
            }
        }
        self.sent += n;
        self.started = None;
        Ok(())
    }

    /// Sends a partial batch that has waited longer than the flush interval.
    pub fn tick(&mut self) -> Result<(), SinkError> {
        match self.started {
            Some(t) if t.elapsed() >= self.config.flush_interval => self.send(false),
            _ => self.check(),
        }
    }

    /// Rows durably written so far, from the first; sends a stale batch.
    pub fn acknowledged(&mut self) -> Result<u64, SinkError> {
        self.tick()?;
        Ok(self.progress.acked.load(Ordering::Acquire))
    }

    /// Sends what is buffered and waits until all of it has landed (through
    /// an outage, as long as the retry limit allows).
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.send(true)?;
        let mut guard = self
            .progress
            .lock
            .lock()
            .map_err(|_| self.error("the writer thread panicked".into()))?;
        while self.progress.acked.load(Ordering::Acquire) < self.sent {
            self.check()?;
            guard = self
                .progress
                .changed
                .wait_timeout(guard, Duration::from_millis(200))
                .map_err(|_| self.error("the writer thread panicked".into()))?
                .0;
        }
        Ok(())
    }
}

impl<R: Send + 'static> Drop for Spool<R> {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has written what is
        // queued; a writer stuck in an outage is left to the process exit.
        self.sender = None;
        if self.progress.acked.load(Ordering::Acquire) >= self.sent {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Fails its first `failures` writes, then keeps every row it gets.
    struct Flaky {
        failures: Arc<AtomicU32>,
        rows: Arc<Mutex<Vec<u32>>>,
    }

    impl BatchWriter for Flaky {
        type Row = u32;
        fn write(&mut self, batch: &[(usize, u32)]) -> Result<(), String> {
            if self.failures.load(Ordering::SeqCst) > 0 {
                self.failures.fetch_sub(1, Ordering::SeqCst);
                return Err("server away".into());
            }
            if let Ok(mut rows) = self.rows.lock() {
                rows.extend(batch.iter().map(|(_, r)| *r));
            }
            Ok(())
        }
    }

    #[test]
    fn failed_batches_are_retried_in_order_and_flush_waits_for_them() {
        let rows = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicU32::new(3));
        let mut spool = Spool::start(
            "test".into(),
            SpoolConfig::new(10, 60_000, 2, 0),
            Flaky {
                failures: failures.clone(),
                rows: rows.clone(),
            },
        );
        for i in 0..95 {
            spool.push(0, i).unwrap();
        }
        // Nine full batches are sent; five rows wait for the flush.
        assert!(spool.acknowledged().unwrap() <= 90);
        spool.flush().unwrap();
        assert_eq!(spool.acknowledged().unwrap(), 95);
        assert_eq!(*rows.lock().unwrap(), (0..95).collect::<Vec<u32>>());
        assert_eq!(failures.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_writer_that_gives_up_fails_the_flush() {
        let mut spool = Spool::start(
            "test".into(),
            SpoolConfig::new(1, 0, 1, 1),
            Flaky {
                failures: Arc::new(AtomicU32::new(u32::MAX)),
                rows: Arc::default(),
            },
        );
        spool.push(0, 1).unwrap();
        let err = spool.flush().unwrap_err().to_string();
        assert!(
            err.contains("gave up") && err.contains("server away"),
            "{err}"
        );
    }
}
