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
//!
//! A server that refuses rows for good (a value out of range, a constraint)
//! does not stall the stream: the batch is split in halves until the rows it
//! refuses stand alone, the rest lands, and the refused rows are handed back
//! ([`Spool::take_refused`]) to become dead letters with the server's
//! message. A writer that panics fails the run with its message.

use super::{Refused, SinkError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Why a write failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The connection or the server failed (or timed out): the write is
    /// tried again with backoff.
    Transient(String),
    /// The server refused the data itself, and would again: the batch is
    /// split, and a row refused alone is dead-lettered.
    Refused(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Transient(m) | WriteError::Refused(m) => f.write_str(m),
        }
    }
}

/// Writes one batch to the server. Called again with the same rows after an
/// error, so a write must be all-or-nothing or idempotent.
pub trait BatchWriter: Send + 'static {
    /// A row in the writer's own form.
    type Row: Send + 'static;
    /// Writes the rows (table index, row) of one batch.
    fn write(&mut self, batch: &[(usize, Self::Row)]) -> Result<(), WriteError>;
    /// A row the server refused, as its stream's name and its JSON text.
    fn describe(&self, row: &(usize, Self::Row)) -> (String, String);
    /// Lands the dead letter of a refused row on this server itself, when
    /// the writer keeps dead letters in order with everything else
    /// (`postgres.exactly-once`): `Ok(true)` when done; `Ok(false)` hands it
    /// to the pipeline instead.
    fn land_refused(&mut self, _refused: &Refused) -> Result<bool, WriteError> {
        Ok(false)
    }
}

/// A batch on its way to the writer: rows to write, and rows the sink
/// refused before sending (a time the server cannot hold), in order.
struct Batch<R> {
    rows: Vec<(usize, R)>,
    refused: Vec<Refused>,
}

impl<R> Batch<R> {
    fn with_capacity(n: usize) -> Self {
        Self {
            rows: Vec::with_capacity(n),
            refused: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.rows.len() + self.refused.len()
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.refused.is_empty()
    }
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
    /// Rows written durably (or refused, and handed back), from the first.
    acked: AtomicU64,
    /// Rows the server refused for good, waiting to be dead-lettered;
    /// filled before `acked` counts them.
    refused: Mutex<Vec<Refused>>,
    /// Set when the writer gave up (or panicked).
    failed: Mutex<Option<SinkError>>,
    /// Notified on every acknowledgement and on failure.
    changed: Condvar,
    lock: Mutex<()>,
}

/// Rows on their way to one server.
pub struct Spool<R: Send + 'static> {
    name: String,
    config: SpoolConfig,
    sender: Option<SyncSender<Batch<R>>>,
    current: Batch<R>,
    started: Option<Instant>,
    sent: u64,
    progress: Arc<Progress>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl<R: Send + 'static> Spool<R> {
    /// Starts the writer thread. `name` names the sink and server (without
    /// credentials) in logs and errors.
    pub fn start<W: BatchWriter<Row = R>>(name: String, config: SpoolConfig, writer: W) -> Self {
        let (sender, receiver) = sync_channel::<Batch<R>>(config.buffer_batches.max(1));
        let progress = Arc::new(Progress::default());
        let shared = progress.clone();
        let label = name.clone();
        let retry_for = config.retry_for;
        let thread = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| {
                    let mut delivery = Delivery {
                        writer,
                        retry: Retry {
                            label: &label,
                            retry_for,
                            progress: &shared,
                        },
                    };
                    for batch in receiver {
                        if delivery.deliver(batch).is_err() {
                            return;
                        }
                    }
                });
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "no message".into());
                    let message = format!("the writer thread panicked: {what}");
                    shared.fail(SinkError::permanent(label.as_str(), message));
                }
            })
            .expect("spawning a sink writer thread");
        Self {
            name,
            current: Batch::with_capacity(config.batch_rows),
            config,
            sender: Some(sender),
            started: None,
            sent: 0,
            progress,
            thread: Some(thread),
        }
    }

    /// The writer has stopped: the error it stopped with.
    fn error(&self, message: String) -> SinkError {
        SinkError::permanent(self.name.as_str(), message)
    }

    fn check(&self) -> Result<(), SinkError> {
        match self.progress.failed.lock() {
            Ok(f) => match f.as_ref() {
                Some(e) => Err(SinkError {
                    sink: self.name.clone(),
                    kind: e.kind,
                    message: e.message.clone(),
                }),
                None => Ok(()),
            },
            Err(_) => Err(self.error("the writer thread panicked".into())),
        }
    }

    /// Adds a row for table `table`; sends the batch when it is full.
    pub fn push(&mut self, table: usize, row: R) -> Result<(), SinkError> {
        self.current.rows.push((table, row));
        self.added()
    }

    /// Adds a row the sink refuses before sending it (the server could not
    /// hold a value): it is handed back with the batch's refusals, in order.
    pub fn refuse(&mut self, refused: Refused) -> Result<(), SinkError> {
        self.current.refused.push(refused);
        self.added()
    }

    fn added(&mut self) -> Result<(), SinkError> {
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
        if self.current.len() >= self.config.batch_rows {
            self.send(true)?;
        }
        Ok(())
    }

    /// The rows the server refused for good since the last call, for the
    /// dead letters.
    pub fn take_refused(&mut self) -> Vec<Refused> {
        self.progress
            .refused
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
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
            Batch::with_capacity(self.config.batch_rows),
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
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return Err(self.error("the writer has stopped".into()));
            }
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

impl Progress {
    /// Records that the writer gave up, and wakes whoever waits.
    fn fail(&self, error: SinkError) {
        tracing::error!(sink = %error.sink, "{}", error.message);
        if let Ok(mut f) = self.failed.lock() {
            *f = Some(error);
        }
        let _guard = self.lock.lock();
        self.changed.notify_all();
    }
}

/// The writer thread's work: batches to the server, through outages and
/// refusals.
struct Delivery<'a, W> {
    writer: W,
    retry: Retry<'a>,
}

/// How the writer retries: for how long, and where it says it gave up.
struct Retry<'a> {
    label: &'a str,
    retry_for: Duration,
    progress: &'a Progress,
}

impl<W: BatchWriter> Delivery<'_, W> {
    /// Lands a batch: the rows the server takes, and the refused ones
    /// handed back; `Err` once the writer gave up.
    fn deliver(&mut self, batch: Batch<W::Row>) -> Result<(), ()> {
        let n = batch.len() as u64;
        let mut refused = Vec::new();
        for r in batch.refused {
            if !self.land(&r)? {
                refused.push(r);
            }
        }
        // Ranges still to write, the next one last.
        let mut todo = Vec::with_capacity(8);
        todo.push(0..batch.rows.len());
        let rows = &batch.rows;
        while let Some(range) = todo.pop() {
            if range.is_empty() {
                continue;
            }
            match self.write(&rows[range.clone()])? {
                None => {}
                Some(message) if range.len() == 1 => {
                    let (stream, row) = self.writer.describe(&rows[range.start]);
                    let r = Refused {
                        sink: self.retry.label.to_string(),
                        stream,
                        row,
                        message,
                    };
                    if !self.land(&r)? {
                        refused.push(r);
                    }
                }
                Some(_) => {
                    let mid = range.start + range.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
            }
        }
        if !refused.is_empty() {
            tracing::warn!(
                sink = %self.retry.label,
                "{} rows refused for good (first: {}); they go to the dead letters",
                refused.len(),
                refused[0].message
            );
            if let Ok(mut queue) = self.retry.progress.refused.lock() {
                queue.append(&mut refused);
            }
        }
        let progress = self.retry.progress;
        progress.acked.fetch_add(n, Ordering::Release);
        let _guard = progress.lock.lock();
        progress.changed.notify_all();
        Ok(())
    }

    /// Writes rows, retrying transient failures with backoff: `None` when
    /// they landed, the server's message when it refused them; `Err` once
    /// the retries ran out.
    fn write(&mut self, rows: &[(usize, W::Row)]) -> Result<Option<String>, ()> {
        let writer = &mut self.writer;
        self.retry.run(|| match writer.write(rows) {
            Ok(()) => Ok(None),
            Err(WriteError::Refused(m)) => Ok(Some(m)),
            Err(WriteError::Transient(m)) => Err(m),
        })
    }

    /// Lands a refused row's dead letter with the writer, where it keeps
    /// them itself.
    fn land(&mut self, refused: &Refused) -> Result<bool, ()> {
        let writer = &mut self.writer;
        self.retry.run(|| match writer.land_refused(refused) {
            Ok(done) => Ok(done),
            Err(WriteError::Refused(m)) => {
                tracing::error!(
                    "the dead letter of a refused row was refused too ({m}); the row was: {}",
                    refused.row
                );
                Ok(true)
            }
            Err(WriteError::Transient(m)) => Err(m),
        })
    }
}

impl Retry<'_> {
    /// Runs `attempt` until it succeeds, backing off between tries, for at
    /// most `retry_for` (zero: for ever).
    fn run<T>(&self, mut attempt: impl FnMut() -> Result<T, String>) -> Result<T, ()> {
        let first_try = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0u32;
        loop {
            match attempt() {
                Ok(done) => {
                    if attempts > 0 {
                        tracing::info!(
                            sink = %self.label,
                            "written after {attempts} retries ({:.1} s); catching up",
                            first_try.elapsed().as_secs_f64()
                        );
                    }
                    return Ok(done);
                }
                Err(e) => {
                    attempts += 1;
                    if !self.retry_for.is_zero() && first_try.elapsed() >= self.retry_for {
                        let message = format!(
                            "gave up after {attempts} attempts in {} s: {e}",
                            first_try.elapsed().as_secs()
                        );
                        (self.progress).fail(SinkError::transient(self.label, message));
                        return Err(());
                    }
                    if attempts == 1 || attempts.is_power_of_two() {
                        tracing::warn!(
                            sink = %self.label,
                            "write failed ({e}); retrying (attempt {attempts}), rows are kept"
                        );
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
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
        fn write(&mut self, batch: &[(usize, u32)]) -> Result<(), WriteError> {
            if self.failures.load(Ordering::SeqCst) > 0 {
                self.failures.fetch_sub(1, Ordering::SeqCst);
                return Err(WriteError::Transient("server away".into()));
            }
            // A server that refuses 13 and 77 for good, all or nothing per batch.
            if let Some((_, bad)) = batch.iter().find(|(_, r)| *r == 13 || *r == 77) {
                return Err(WriteError::Refused(format!("value {bad} out of range")));
            }
            if let Ok(mut rows) = self.rows.lock() {
                rows.extend(batch.iter().map(|(_, r)| *r));
            }
            Ok(())
        }

        fn describe(&self, row: &(usize, u32)) -> (String, String) {
            ("numbers".into(), format!("{{\"n\":{}}}", row.1))
        }
    }

    /// Panics at its first write.
    struct Panicky;

    impl BatchWriter for Panicky {
        type Row = u32;
        fn write(&mut self, _: &[(usize, u32)]) -> Result<(), WriteError> {
            panic!("index out of bounds in the writer");
        }

        fn describe(&self, _: &(usize, u32)) -> (String, String) {
            (String::new(), String::new())
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
        for i in (0..95).filter(|i| *i != 13 && *i != 77) {
            spool.push(0, i).unwrap();
        }
        for i in [13, 77] {
            spool.push(0, i).unwrap();
        }
        // Nine full batches are sent; five rows wait for the flush.
        assert!(spool.acknowledged().unwrap() <= 90);
        spool.flush().unwrap();
        assert_eq!(spool.acknowledged().unwrap(), 95);
        let want: Vec<u32> = (0..95).filter(|i| *i != 13 && *i != 77).collect();
        assert_eq!(*rows.lock().unwrap(), want);
        assert_eq!(failures.load(Ordering::SeqCst), 0);
        // The two rows refused for good come back for the dead letters,
        // each with the server's message; the rest of their batch landed.
        let refused = spool.take_refused();
        let got: Vec<(&str, &str)> = refused
            .iter()
            .map(|r| (r.row.as_str(), r.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("{\"n\":13}", "value 13 out of range"),
                ("{\"n\":77}", "value 77 out of range")
            ]
        );
        assert!(spool.take_refused().is_empty());
    }

    #[test]
    fn a_writer_that_panics_fails_the_flush_with_its_message() {
        let mut spool = Spool::start("test".into(), SpoolConfig::new(1, 0, 1, 0), Panicky);
        let _ = spool.push(0, 1);
        let err = spool.flush().unwrap_err().to_string();
        assert!(
            err.contains("panicked") && err.contains("index out of bounds in the writer"),
            "{err}"
        );
        assert!(spool.push(0, 2).is_err(), "a later write fails too");
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
