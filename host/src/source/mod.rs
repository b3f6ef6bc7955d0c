//! Where raw records come from: the built-in generator or a file.
//!
//! A source fills a reusable [`RecordBatch`] (one byte buffer, record ends
//! and positions), so reading allocates nothing per record once warm.

pub mod dims;
mod file;
mod gen;
pub mod kafka;
pub mod repartition;

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
    /// For records read back from a repartition topic: each record's
    /// route (see [`Route`]) and the slot of the partition it was first
    /// read from (its position is its offset there).
    routes: Vec<Route>,
    origins: Vec<u32>,
    /// Watermark marks read with the batch (each after the records it
    /// covers, so it counts once the batch is in): (watermark slot,
    /// largest event time).
    marks: Vec<(u32, i64)>,
    /// Records the source cut short, each with its whole size and SHA-256
    /// (hex), in order of their index: only their first bytes are held.
    cuts: Vec<(usize, u64, String)>,
}

/// Which of an event's keyed work a copy of it carries, when a repartition
/// topic holds one copy per partition its keys belong to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// The fields (bits by their place in the engine's list of fields)
    /// whose keyed work this copy is for.
    pub fields: u8,
    /// Whether this is the record's primary copy: the one counted, landed
    /// as received, deduplicated with a dead letter and refused with one.
    pub primary: bool,
}

impl Route {
    /// Every field, primary: a record read straight from its source.
    pub const ALL: Route = Route {
        fields: u8::MAX,
        primary: true,
    };

    /// Whether this copy carries the keyed work of field `f`.
    pub fn has(self, f: usize) -> bool {
        f < 8 && self.fields & (1 << f) != 0
    }
}

impl RecordBatch {
    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.positions.clear();
        self.parts.clear();
        self.routes.clear();
        self.origins.clear();
        self.marks.clear();
        self.cuts.clear();
    }

    /// Appends a record read back from a repartition topic: its slot there,
    /// its route, the slot of the partition it was first read from and its
    /// offset in that partition.
    pub fn push_routed(&mut self, bytes: &[u8], part: u32, route: Route, origin: u32, offset: u64) {
        self.push_in(bytes, part, offset);
        self.routes.push(route);
        self.origins.push(origin);
    }

    /// A watermark mark: the largest event time of an input partition
    /// (its watermark slot) as of the records read so far.
    pub fn push_mark(&mut self, slot: u32, time: i64) {
        self.marks.push((slot, time));
    }

    /// The watermark marks read with the batch: (slot, largest event time).
    pub fn marks(&self) -> &[(u32, i64)] {
        &self.marks
    }

    /// Record `i`'s route ([`Route::ALL`] unless read from a repartition topic).
    pub fn route(&self, i: usize) -> Route {
        self.routes.get(i).copied().unwrap_or(Route::ALL)
    }

    /// Whether the records carry routes.
    pub fn has_routes(&self) -> bool {
        !self.routes.is_empty()
    }

    /// The slot of the partition record `i` was first read from (its own
    /// slot unless read from a repartition topic).
    pub fn origin(&self, i: usize) -> u32 {
        self.origins.get(i).copied().unwrap_or_else(|| self.part(i))
    }

    /// Keeps only the records whose partition slot `keep` picks (after a
    /// rebalance took some partitions away mid-batch).
    pub fn retain_parts(&mut self, keep: impl Fn(u32) -> bool) {
        if self.parts.is_empty() || self.parts.iter().all(|&p| keep(p)) {
            return;
        }
        let old = std::mem::take(self);
        for i in 0..old.len() {
            let part = old.part(i);
            if !keep(part) {
                continue;
            }
            let (bytes, position) = old.get(i);
            if old.has_routes() {
                self.push_routed(bytes, part, old.route(i), old.origin(i), position);
            } else {
                self.push_in(bytes, part, position);
            }
        }
        self.marks = old.marks;
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

    /// Ends the record written into [`Self::buffer`], the first bytes of
    /// one of `size` bytes in all (SHA-256 `sha256`, hex) that the source
    /// cut short.
    pub fn commit_cut(&mut self, position: u64, size: u64, sha256: String) {
        self.cuts.push((self.ends.len(), size, sha256));
        self.commit(position);
    }

    /// The whole size and SHA-256 of record `i`, if the source cut it short.
    pub fn cut(&self, i: usize) -> Option<(u64, &str)> {
        let at = self.cuts.binary_search_by_key(&i, |(j, _, _)| *j).ok()?;
        let (_, size, sha256) = &self.cuts[at];
        Some((*size, sha256))
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
    /// How far a bounded source has come: bytes read and its size in
    /// bytes (a file); none for a source without an end.
    fn progress(&self) -> Option<(u64, u64)> {
        None
    }
    /// Whether the first record is a CSV header.
    fn has_header(&self) -> bool {
        false
    }
    /// The topic and partition of a partition slot.
    fn partition(&self, _part: u32) -> Option<(&str, i32)> {
        None
    }
    /// The watermark inputs (partition slots, or for a repartition topic
    /// the slots of its marks) assigned to this reader, the whole
    /// assignment, when it changed since the last call (`Some` of an empty
    /// list when every partition went away).
    fn reassigned(&mut self) -> Option<Vec<u32>> {
        None
    }
    /// The partitions (numbers) taken from this reader by a rebalance since
    /// the last call, with the slots they had: those it had read from (one
    /// given and taken away before its first record is only missing from
    /// [`Source::reassigned`]).
    fn revoked(&mut self) -> Vec<(i32, u32)> {
        Vec::new()
    }
    /// The partition of the repartition topic a watermark slot of marks
    /// belongs to ([`Self::marks_time`]).
    fn mark_partition(&self, _slot: u32) -> Option<i32> {
        None
    }
    /// When a rebalance gave this reader partitions it did not hold and it
    /// rolled every partition assigned back to its newest checkpoint (see
    /// [`Handover`]): the partitions assigned and those checkpoints.
    fn rolled_back(&mut self) -> Option<RolledBack> {
        None
    }
    /// The topic and partition a record was first read from, by the slot
    /// [`RecordBatch::origin`] gives (the partition slot itself, unless the
    /// records are read back from a repartition topic).
    fn origin(&self, slot: u32) -> Option<(&str, i32)> {
        self.partition(slot)
    }
    /// Whether the watermark follows the marks read with the records (a
    /// repartition topic, whose partitions mix inputs) rather than the
    /// events' own times.
    fn marks_time(&self) -> bool {
        false
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

/// The newest checkpoint holding a partition: where it starts again, and
/// the checkpoint's payload (shared by the partitions it holds).
#[derive(Clone, Debug)]
pub struct Checkpointed {
    /// The partition.
    pub partition: i32,
    /// Its next offset in the checkpoint.
    pub next: i64,
    /// The checkpoint.
    pub payload: std::sync::Arc<Vec<u8>>,
}

/// Finds, for the partitions of an assignment, their newest checkpoints
/// (those none holds start at the group's committed offsets).
pub type Handover = Box<dyn Fn(&[i32]) -> Result<Vec<Checkpointed>, String> + Send + Sync>;

/// A reader rolled back to its partitions' checkpoints.
#[derive(Clone, Debug, Default)]
pub struct RolledBack {
    /// The partitions assigned.
    pub assigned: Vec<i32>,
    /// Their newest checkpoints.
    pub checkpoints: Vec<Checkpointed>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_partitions_taken_away_leave_the_batch_with_their_routes() {
        let mut batch = RecordBatch::default();
        let route = Route {
            fields: 0b10,
            primary: false,
        };
        batch.push_routed(b"one", 0, Route::ALL, 5, 100);
        batch.push_routed(b"two", 1, route, 6, 200);
        batch.push_mark(3, 42);
        batch.push_routed(b"three", 0, route, 5, 101);
        batch.retain_parts(|p| p != 1);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.get(1), (&b"three"[..], 101));
        assert_eq!(
            (batch.route(1), batch.origin(1), batch.part(1)),
            (route, 5, 0)
        );
        assert_eq!(batch.marks(), &[(3, 42)]);
        assert!(route.has(1) && !route.has(0));
        // Records read straight from a source carry every field.
        let mut plain = RecordBatch::default();
        plain.push_in(b"x", 2, 7);
        assert_eq!((plain.route(0), plain.origin(0)), (Route::ALL, 2));
    }
}
