//! A file of records: JSON lines, or CSV with a header line.

use super::{Poll, Position, RecordBatch, Source};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

/// How many bytes of a line longer than the most a record may hold are
/// kept, for its dead letter (as many as a dead letter keeps by default).
const KEPT_OF_LONG_LINE: usize = 65_536;

/// Reads a file line by line; positions are line numbers (from 1).
pub struct FileSource {
    name: String,
    reader: BufReader<File>,
    /// The most bytes a line is read into memory for
    /// (`decode.max-record-bytes`): a longer one is skipped to its end,
    /// its first bytes kept.
    max_line: usize,
    line: u64,
    /// Bytes read.
    offset: u64,
    /// The file's size when it was opened.
    size: u64,
    csv: bool,
    /// Resuming a CSV file: its header line, given before the rest.
    header: Option<Vec<u8>>,
}

impl FileSource {
    /// Opens `path`.
    pub fn open(path: &Path, csv: bool) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let size = file.metadata().map_or(0, |m| m.len());
        Ok(Self {
            name: format!("file:{}", path.display()),
            reader: BufReader::with_capacity(1 << 20, file),
            max_line: usize::MAX,
            line: 0,
            offset: 0,
            size,
            csv,
            header: None,
        })
    }
}

impl FileSource {
    /// Lines longer than `max` bytes (without their line end) are not read
    /// into memory: only their first bytes, and their size.
    pub fn with_max_line(mut self, max: usize) -> Self {
        self.max_line = max;
        self
    }

    /// Reads a line into `buffer`, holding at most `max_line` bytes and
    /// its line end: its length read (0 at the end of the file), and, when
    /// it is longer than that without its line end, its size and SHA-256
    /// (only its first bytes are left in `buffer`).
    fn read_line(
        &mut self,
        buffer: &mut Vec<u8>,
    ) -> std::io::Result<(usize, Option<(u64, String)>)> {
        let start = buffer.len();
        let room = self.max_line.saturating_add(2);
        let mut read = 0;
        // Once the line is longer than `room`: its digest so far.
        let mut digest: Option<Digest> = None;
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                break;
            }
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            let chunk = &available[..take];
            let held = buffer.len() - start;
            match &mut digest {
                Some(d) => d.feed(chunk),
                None if held + take <= room => buffer.extend_from_slice(chunk),
                None => {
                    let mut d = Digest::default();
                    d.feed(&buffer[start..]);
                    d.feed(chunk);
                    buffer.extend_from_slice(&chunk[..room - held]);
                    digest = Some(d);
                }
            }
            self.reader.consume(take);
            read += take;
            if done {
                break;
            }
        }
        let Some(digest) = digest else {
            return Ok((read, None));
        };
        // More than `room` bytes: longer than `max_line` without its end.
        let (size, sha256) = digest.finish();
        buffer.truncate(start + KEPT_OF_LONG_LINE.min(self.max_line));
        Ok((read, Some((size, sha256))))
    }
}

/// The SHA-256 and size of a line's bytes without its line end, fed in
/// pieces: the last two bytes wait, in case they end the line.
#[derive(Default)]
struct Digest {
    hasher: sha2::Sha256,
    size: u64,
    waiting: Vec<u8>,
}

impl Digest {
    fn feed(&mut self, bytes: &[u8]) {
        use sha2::Digest as _;
        self.waiting.extend_from_slice(bytes);
        if self.waiting.len() > 2 {
            let ready = self.waiting.len() - 2;
            self.hasher.update(&self.waiting[..ready]);
            self.size += ready as u64;
            self.waiting.drain(..ready);
        }
    }

    /// The size and SHA-256 (hex) of what was fed, without its line end.
    fn finish(mut self) -> (u64, String) {
        use sha2::Digest as _;
        let ending = match self.waiting[..] {
            [.., b'\r', b'\n'] => 2,
            [.., b'\n' | b'\r'] => 1,
            _ => 0,
        };
        let rest = &self.waiting[..self.waiting.len() - ending];
        self.hasher.update(rest);
        self.size += rest.len() as u64;
        let hex = crate::model::ids::hex(&self.hasher.finalize());
        (self.size, hex)
    }
}

impl Source for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn has_header(&self) -> bool {
        self.csv
    }

    /// A file is a replay: its events' times are history, not the clock's.
    fn is_live(&self) -> bool {
        false
    }

    fn progress(&self) -> Option<(u64, u64)> {
        Some((self.offset, self.size))
    }

    fn position(&self) -> Option<Position> {
        Some(Position::File {
            offset: self.offset,
            line: self.line,
        })
    }

    /// Continues at the checkpoint's byte offset (a CSV file's header line
    /// is read again first); a file now shorter than that offset was
    /// replaced, and is refused.
    fn restore(&mut self, position: &Position) -> std::io::Result<()> {
        let Position::File { offset, line } = *position else {
            return Err(std::io::Error::other(format!(
                "the checkpoint holds a Kafka position, not one in {}",
                self.name
            )));
        };
        let size = self.reader.get_ref().metadata()?.len();
        if size < offset {
            return Err(std::io::Error::other(format!(
                "{} has {size} bytes, fewer than the {offset} the checkpoint had read: \
                 it is another file now (remove the checkpoint directory to start over)",
                self.name
            )));
        }
        if self.csv && offset > 0 {
            let mut header = Vec::new();
            self.reader.read_until(b'\n', &mut header)?;
            while matches!(header.last(), Some(b'\n' | b'\r')) {
                header.pop();
            }
            self.header = Some(header);
        }
        self.reader.seek(SeekFrom::Start(offset))?;
        self.offset = offset;
        self.line = line;
        Ok(())
    }

    fn poll(
        &mut self,
        batch: &mut RecordBatch,
        max: usize,
        _timeout: Duration,
    ) -> std::io::Result<Poll> {
        let mut added = 0;
        if let Some(header) = self.header.take() {
            batch.push(&header, 1);
            added += 1;
        }
        while added < max {
            let buffer = batch.buffer();
            let start = buffer.len();
            let (n, cut) = self.read_line(buffer)?;
            if n == 0 {
                return Ok(if added == 0 { Poll::Done } else { Poll::Ready });
            }
            self.offset += n as u64;
            self.line += 1;
            if let Some((size, sha256)) = cut {
                batch.commit_cut(self.line, size, sha256);
                added += 1;
                continue;
            }
            while buffer.len() > start && matches!(buffer.last(), Some(b'\n' | b'\r')) {
                buffer.pop();
            }
            if buffer[start..].iter().all(u8::is_ascii_whitespace) {
                buffer.truncate(start);
                continue;
            }
            batch.commit(self.line);
            added += 1;
        }
        Ok(Poll::Ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(batch: &RecordBatch) -> Vec<(String, u64)> {
        (0..batch.len())
            .map(|i| {
                let (bytes, position) = batch.get(i);
                (String::from_utf8_lossy(bytes).into_owned(), position)
            })
            .collect()
    }

    #[test]
    fn a_file_resumes_at_its_position_and_a_csv_file_gives_its_header_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, "id,amount\r\na,1\n\nb,2\nc,3\n").unwrap();
        let mut first = FileSource::open(&path, true).unwrap();
        let mut batch = RecordBatch::default();
        first.poll(&mut batch, 3, Duration::ZERO).unwrap();
        assert_eq!(
            lines(&batch),
            [
                ("id,amount".into(), 1),
                ("a,1".into(), 2),
                ("b,2".into(), 4)
            ]
        );
        let position = first.position().unwrap();
        assert_eq!(
            position,
            Position::File {
                offset: 20,
                line: 4
            }
        );

        let mut again = FileSource::open(&path, true).unwrap();
        again.restore(&position).unwrap();
        batch.clear();
        again.poll(&mut batch, 10, Duration::ZERO).unwrap();
        assert_eq!(lines(&batch), [("id,amount".into(), 1), ("c,3".into(), 5)]);
        batch.clear();
        assert_eq!(
            again.poll(&mut batch, 10, Duration::ZERO).unwrap(),
            Poll::Done
        );

        // A line longer than the most a record may hold is not read into
        // memory: its first bytes, its size, and the lines after it.
        let long = dir.path().join("long.jsonl");
        let huge = "x".repeat(5_000);
        std::fs::write(&long, format!("a\n{huge}\r\nb\n{}\n", "y".repeat(100))).unwrap();
        let mut source = FileSource::open(&long, false).unwrap().with_max_line(100);
        batch.clear();
        source.poll(&mut batch, 10, Duration::ZERO).unwrap();
        assert_eq!(batch.len(), 4);
        assert_eq!(batch.get(1).0.len(), 100, "the first bytes only");
        let sha = crate::runtime::module_hash(huge.as_bytes());
        assert_eq!(batch.cut(1), Some((5_000, sha.as_str())));
        assert_eq!(lines(&batch)[2], ("b".into(), 3));
        // A line of exactly the most is whole.
        assert_eq!((batch.get(3).0.len(), batch.cut(3)), (100, None));
        assert_eq!(
            source.position(),
            Some(Position::File {
                offset: 2 + 5_002 + 2 + 101,
                line: 4
            })
        );

        // The file was replaced by a shorter one: refused.
        std::fs::write(&path, "id,amount\n").unwrap();
        let error = FileSource::open(&path, true)
            .unwrap()
            .restore(&position)
            .unwrap_err();
        assert!(
            error.to_string().contains("it is another file now"),
            "{error}"
        );
    }
}
