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
    /// Where the source stands, for a checkpoint (`None`: it cannot
    /// resume, as the generator cannot).
    fn position(&self) -> Option<Position> {
        None
    }
    /// Continues from a checkpoint's position, before the first poll.
    fn restore(&mut self, _position: &Position) -> std::io::Result<()> {
        Err(std::io::Error::other(format!(
            "{} cannot resume from a checkpoint",
            self.name()
        )))
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

/// Where a source stands, as a checkpoint holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    /// A file: the byte offset of the next line, and the lines read.
    File {
        /// Bytes read.
        offset: u64,
        /// Lines read.
        line: u64,
    },
    /// Kafka: per partition slot, in slot order, the topic, the partition
    /// and the next offset to read (-1: nothing read yet).
    Kafka(Vec<(String, i32, i64)>),
}

impl Position {
    /// Appends the position in a checkpoint's form.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        use crate::codec::Put;
        match self {
            Position::File { offset, line } => {
                out.put_u8(1);
                out.put_u64(*offset);
                out.put_u64(*line);
            }
            Position::Kafka(parts) => {
                out.put_u8(2);
                out.put_len(parts.len());
                for (topic, partition, next) in parts {
                    out.put_str(topic);
                    out.put_u32(*partition as u32);
                    out.put_i64(*next);
                }
            }
        }
    }

    /// Reads a position written by [`Self::write_snapshot`].
    pub fn read_snapshot(r: &mut crate::codec::Reader<'_>) -> Result<Self, crate::codec::Error> {
        r.reading("source position");
        Ok(match r.u8()? {
            1 => Position::File {
                offset: r.u64()?,
                line: r.u64()?,
            },
            2 => {
                let n = r.len(16)?;
                let mut parts = Vec::with_capacity(n);
                for _ in 0..n {
                    parts.push((r.str()?.to_string(), r.u32()? as i32, r.i64()?));
                }
                Position::Kafka(parts)
            }
            tag => return Err(format!("unknown source position kind {tag}")),
        })
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::File { offset, line } => write!(f, "line {line} (byte {offset})"),
            Position::Kafka(parts) => {
                let parts: Vec<String> = parts
                    .iter()
                    .map(|(t, p, next)| match next {
                        -1 => format!("{t}/{p}: nothing read"),
                        n => format!("{t}/{p}: next offset {n}"),
                    })
                    .collect();
                f.write_str(&parts.join(", "))
            }
        }
    }
}

/// The next offset of each partition slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mark(pub Vec<(u32, i64)>);
