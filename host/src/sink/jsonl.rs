//! JSON lines files, one per output stream: `<table>.jsonl`, `alerts.jsonl`,
//! `dead_letter.jsonl` and `late.jsonl`.
//!
//! Files are appended to, never truncated: a restart (after a crash, or to
//! resume a Kafka stream whose committed records' results are already
//! written) keeps what earlier runs wrote. A last line left half-written by
//! a crash is cut off at start; its record is processed again, since its
//! offset was not committed. Records keep their deterministic `_id`, so a
//! reader that wants one row per id keeps the last line of each.

use super::{Record, Sink, SinkError, SinkErrorKind};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes each stream to `<dir>/<stream>.jsonl`.
pub struct JsonlSink {
    dir: PathBuf,
    files: BTreeMap<String, BufWriter<File>>,
    line: Vec<u8>,
}

impl JsonlSink {
    /// Creates `dir` and opens (or creates) the file of each of `streams`
    /// to append to.
    pub fn new(dir: &Path, streams: &[String]) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir).map_err(|e| SinkError {
            kind: SinkErrorKind::Permanent,
            sink: "jsonl".into(),
            message: format!("cannot create output directory {}: {e}", dir.display()),
        })?;
        let mut sink = Self {
            dir: dir.to_path_buf(),
            files: BTreeMap::new(),
            line: Vec::with_capacity(1024),
        };
        for stream in streams {
            sink.file(stream)?;
        }
        let kept: u64 = streams
            .iter()
            .filter_map(|s| std::fs::metadata(dir.join(format!("{s}.jsonl"))).ok())
            .map(|m| m.len())
            .sum();
        if kept > 0 {
            tracing::info!(
                "appending to the output in {} ({kept} bytes from earlier runs are kept)",
                dir.display()
            );
        }
        Ok(sink)
    }

    fn file(&mut self, stream: &str) -> Result<&mut BufWriter<File>, SinkError> {
        if !self.files.contains_key(stream) {
            let path = self.dir.join(format!("{stream}.jsonl"));
            let file = open_for_append(&path).map_err(|e| SinkError {
                kind: SinkErrorKind::Permanent,
                sink: "jsonl".into(),
                message: format!("cannot open {} to append to it: {e}", path.display()),
            })?;
            self.files
                .insert(stream.to_string(), BufWriter::with_capacity(1 << 16, file));
        }
        self.files.get_mut(stream).ok_or_else(|| SinkError {
            kind: SinkErrorKind::Permanent,
            sink: "jsonl".into(),
            message: format!("no file for {stream}"),
        })
    }
}

/// Opens `path` to append to, creating it; a last line without its newline
/// (a write cut short by a crash) is cut off first.
fn open_for_append(path: &Path) -> std::io::Result<File> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(file);
    }
    // Look back for the last newline, a block at a time.
    let mut end = len;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let complete = start + i as u64 + 1;
            if complete < len {
                tracing::warn!(
                    "{}: cut off a last line left half-written ({} bytes); its record is written again",
                    path.display(),
                    len - complete
                );
                file.set_len(complete)?;
            }
            return Ok(file);
        }
        end = start;
    }
    tracing::warn!(
        "{}: cut off a line left half-written ({len} bytes); its record is written again",
        path.display()
    );
    file.set_len(0)?;
    Ok(file)
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    fn write(&mut self, record: &Record) -> Result<(), SinkError> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        record.write_json(&mut line);
        line.push(b'\n');
        let result = self
            .file(record.stream())
            .map_err(|e| e.message)
            .and_then(|file| file.write_all(&line).map_err(|e| e.to_string()));
        self.line = line;
        result.map_err(|message| SinkError {
            kind: SinkErrorKind::Permanent,
            sink: format!("jsonl ({})", self.dir.display()),
            message,
        })
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        for (stream, file) in &mut self.files {
            file.flush().map_err(|e| SinkError {
                kind: SinkErrorKind::Permanent,
                sink: "jsonl".into(),
                message: format!("flushing {stream}.jsonl: {e}"),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_appended_to_and_a_half_written_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let file = open_for_append(&path).unwrap();
        drop(file);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        let mut file = open_for_append(&path).unwrap();
        file.write_all(b"{\"a\":3}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
        // A file that is one half-written line.
        std::fs::write(&path, "{\"a\"").unwrap();
        drop(open_for_append(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
