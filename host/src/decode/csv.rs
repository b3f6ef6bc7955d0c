//! CSV records: a header line names the columns; fields are looked up by
//! their dotted path (`location.country`) or its last segment (`country`).

use super::fields::{FieldValue, Record};
use super::{Reject, RejectCode};

/// The column names of a CSV source.
#[derive(Clone)]
pub struct Header {
    columns: Vec<String>,
}

fn parse_line(line: &str) -> Result<csv::StringRecord, Reject> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => Ok(record),
        Ok(false) => Err(Reject::new(RejectCode::MalformedCsv, "empty CSV line")),
        Err(e) => Err(Reject::new(
            RejectCode::MalformedCsv,
            format!("malformed CSV: {e}"),
        )),
    }
}

impl Header {
    /// Parses the header line.
    pub fn parse(line: &[u8]) -> Result<Self, Reject> {
        let text = std::str::from_utf8(line)
            .map_err(|_| Reject::new(RejectCode::InvalidUtf8, "CSV header is not UTF-8"))?;
        let record = parse_line(text)?;
        Ok(Self {
            columns: record.iter().map(|c| c.trim().to_string()).collect(),
        })
    }

    /// Splits a data line.
    pub fn row(&self, line: &str) -> Result<HeaderRow<'_>, Reject> {
        let cells = parse_line(line)?;
        if cells.len() != self.columns.len() {
            return Err(Reject::new(
                RejectCode::MalformedCsv,
                format!(
                    "CSV line has {} fields; the header has {}",
                    cells.len(),
                    self.columns.len()
                ),
            ));
        }
        Ok(HeaderRow {
            header: self,
            cells,
        })
    }
}

/// A data line with its header.
pub struct HeaderRow<'h> {
    header: &'h Header,
    cells: csv::StringRecord,
}

impl Record for HeaderRow<'_> {
    fn lookup(&self, path: &[String]) -> Option<FieldValue<'_>> {
        let joined = path.join(".");
        let last = path.last()?;
        let index = self
            .header
            .columns
            .iter()
            .position(|c| *c == joined)
            .or_else(|| self.header.columns.iter().position(|c| c == last))?;
        let cell = self.cells.get(index)?;
        Some(if cell.is_empty() {
            FieldValue::Null
        } else {
            FieldValue::Text(cell)
        })
    }
}
