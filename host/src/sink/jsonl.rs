//! JSON lines files, one per output stream: `<table>.jsonl`, `alerts.jsonl`,
//! `dead_letter.jsonl` and `late.jsonl`. Files are recreated at start.

use super::{Record, Sink, SinkError};
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
    /// Creates `dir` and an empty file for each of `streams`.
    pub fn new(dir: &Path, streams: &[String]) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir).map_err(|e| SinkError {
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
        Ok(sink)
    }

    fn file(&mut self, stream: &str) -> Result<&mut BufWriter<File>, SinkError> {
        if !self.files.contains_key(stream) {
            let path = self.dir.join(format!("{stream}.jsonl"));
            let file = File::create(&path).map_err(|e| SinkError {
                sink: "jsonl".into(),
                message: format!("cannot create {}: {e}", path.display()),
            })?;
            self.files
                .insert(stream.to_string(), BufWriter::with_capacity(1 << 16, file));
        }
        self.files.get_mut(stream).ok_or_else(|| SinkError {
            sink: "jsonl".into(),
            message: format!("no file for {stream}"),
        })
    }
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
            sink: format!("jsonl ({})", self.dir.display()),
            message,
        })
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        for (stream, file) in &mut self.files {
            file.flush().map_err(|e| SinkError {
                sink: "jsonl".into(),
                message: format!("flushing {stream}.jsonl: {e}"),
            })?;
        }
        Ok(())
    }
}
