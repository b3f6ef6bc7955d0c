//! A file of records: JSON lines, or CSV with a header line.

use super::{Poll, Position, RecordBatch, Source};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

/// Reads a file line by line; positions are line numbers (from 1).
pub struct FileSource {
    name: String,
    reader: BufReader<File>,
    line: u64,
    /// Bytes read.
    offset: u64,
    csv: bool,
    /// Resuming a CSV file: its header line, given before the rest.
    header: Option<Vec<u8>>,
}

impl FileSource {
    /// Opens `path`.
    pub fn open(path: &Path, csv: bool) -> std::io::Result<Self> {
        let file = File::open(path)?;
        Ok(Self {
            name: format!("file:{}", path.display()),
            reader: BufReader::with_capacity(1 << 20, file),
            line: 0,
            offset: 0,
            csv,
            header: None,
        })
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
            let n = self.reader.read_until(b'\n', buffer)?;
            if n == 0 {
                return Ok(if added == 0 { Poll::Done } else { Poll::Ready });
            }
            self.offset += n as u64;
            self.line += 1;
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
