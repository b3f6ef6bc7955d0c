//! A file of records: JSON lines, or CSV with a header line.

use super::{Poll, RecordBatch, Source};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

/// Reads a file line by line; positions are line numbers (from 1).
pub struct FileSource {
    name: String,
    reader: BufReader<File>,
    line: u64,
    csv: bool,
}

impl FileSource {
    /// Opens `path`.
    pub fn open(path: &Path, csv: bool) -> std::io::Result<Self> {
        let file = File::open(path)?;
        Ok(Self {
            name: format!("file:{}", path.display()),
            reader: BufReader::with_capacity(1 << 20, file),
            line: 0,
            csv,
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

    fn poll(
        &mut self,
        batch: &mut RecordBatch,
        max: usize,
        _timeout: Duration,
    ) -> std::io::Result<Poll> {
        let mut added = 0;
        while added < max {
            let buffer = batch.buffer();
            let start = buffer.len();
            let n = self.reader.read_until(b'\n', buffer)?;
            if n == 0 {
                return Ok(if added == 0 { Poll::Done } else { Poll::Ready });
            }
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
