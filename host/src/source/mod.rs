//! Where raw records come from: the built-in generator or a file.
//!
//! A source fills a reusable [`RecordBatch`] (one byte buffer, record ends
//! and positions), so reading allocates nothing per record once warm.

pub mod dims;
mod file;
mod gen;
pub mod kafka;

pub use file::FileSource;
pub use gen::GenSource;
pub use kafka::KafkaSource;

/// Raw records with their positions in the source.
#[derive(Default, Debug)]
pub struct RecordBatch {
    data: Vec<u8>,
    ends: Vec<usize>,
    positions: Vec<u64>,
    /// For partitioned sources: each record's partition slot.
    parts: Vec<u32>,
}

impl RecordBatch {
    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.positions.clear();
        self.parts.clear();
    }

    /// Appends a record of a partition (its slot, see [`Source::partition`]);
    /// the position is its offset.
    pub fn push_in(&mut self, bytes: &[u8], part: u32, offset: u64) {
        self.push(bytes, offset);
        self.parts.push(part);
    }

    /// Record `i`'s partition slot (0 for sources without partitions).
    pub fn part(&self, i: usize) -> u32 {
        self.parts.get(i).copied().unwrap_or(0)
    }

    /// Whether the records come from a partitioned source.
    pub fn has_parts(&self) -> bool {
        !self.parts.is_empty()
    }

    /// Appends a record.
    pub fn push(&mut self, bytes: &[u8], position: u64) {
        self.data.extend_from_slice(bytes);
        self.ends.push(self.data.len());
        self.positions.push(position);
    }

    /// The buffer to write the next record into; finish it with [`Self::commit`].
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }

    /// Ends the record written into [`Self::buffer`] since the last one.
    pub fn commit(&mut self, position: u64) {
        self.ends.push(self.data.len());
        self.positions.push(position);
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Record `i`: its bytes and position.
    pub fn get(&self, i: usize) -> (&[u8], u64) {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        (&self.data[start..self.ends[i]], self.positions[i])
    }
}

/// What a poll of a source found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Records were added (possibly none yet; poll again).
    Ready,
    /// The source has no more records.
    Done,
}

/// A source of raw records.
pub trait Source: Send {
    /// A name for dead-letter positions and logs (`gen`, `file:PATH`).
    fn name(&self) -> &str;
    /// Adds up to `max` records to `batch`, waiting at most `timeout` for them.
    fn poll(
        &mut self,
        batch: &mut RecordBatch,
        max: usize,
        timeout: std::time::Duration,
    ) -> std::io::Result<Poll>;
    /// Whether the first record is a CSV header.
    fn has_header(&self) -> bool {
        false
    }
    /// The topic and partition of a partition slot.
    fn partition(&self, _part: u32) -> Option<(&str, i32)> {
        None
    }
    /// The partition slots assigned to this reader, when the assignment
    /// changed since the last call (empty otherwise).
    fn newly_assigned(&mut self) -> Vec<u32> {
        Vec::new()
    }
    /// How far the source has read: the next offset of every partition
    /// read so far (`None` for sources without offsets).
    fn mark(&self) -> Option<Mark> {
        None
    }
    /// Commits a mark: a restart resumes from there.
    fn commit(&mut self, _mark: &Mark) -> std::io::Result<()> {
        Ok(())
    }
    /// The clock the source's events happen by, when it is not the wall
    /// clock (the generator's simulated time).
    fn clock(&self) -> Option<crate::clock::SharedClock> {
        None
    }
    /// Whether events arrive as they happen (Kafka, the generator), so the
    /// watermark is held to the clock, rather than replayed from a file.
    fn is_live(&self) -> bool {
        true
    }
}

/// The next offset of each partition slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mark(pub Vec<(u32, i64)>);
