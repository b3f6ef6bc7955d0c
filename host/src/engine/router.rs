//! Turns what rule sets emit into output records, checking rows against
//! their tables, and hands them to every sink.

use crate::config::{OutputConfig, SinkKind};
use crate::metrics::Metrics;
use crate::model::ids;
use crate::runtime::bindings::types::{Alert, Column, ColumnType, TableSpec, Value};
use crate::sink::{
    encode::{self, Encoder},
    AlertRecord, Record, Refused, RowRecord, Sink, SinkError, TableInfo,
};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The output side of the pipeline.
pub struct Router {
    sinks: Vec<Box<dyn Sink>>,
    /// Each sink's kind, when streams are routed (`[output.routes]`).
    kinds: Vec<SinkKind>,
    routes: Option<OutputConfig>,
    /// Sink indexes by stream, computed once per stream.
    by_stream: HashMap<String, Vec<usize>>,
    /// Records written to each sink.
    written: Vec<u64>,
    metrics: Arc<Metrics>,
    /// Dead letters of refused records emitted and not yet flushed.
    unflushed_refusals: bool,
    /// Where alerts are also posted.
    webhooks: Option<crate::sink::webhook::Webhooks>,
    /// The latest alerts since the metrics were last given them.
    recent_alerts: std::collections::VecDeque<crate::metrics::Recent>,
}

/// What the status page shows of an alert.
fn recent_alert(at_ms: i64, a: &AlertRecord) -> crate::metrics::Recent {
    let mut what = serde_json::Map::new();
    what.insert("rule_set".into(), a.rule_set.clone().into());
    what.insert("rule".into(), a.alert.rule.clone().into());
    what.insert("kind".into(), a.alert.kind.clone().into());
    what.insert(
        "severity".into(),
        crate::sink::severity(a.alert.severity).into(),
    );
    what.insert("score".into(), a.alert.score.into());
    what.insert(
        "transaction_id".into(),
        a.alert.transaction_id.clone().into(),
    );
    what.insert("customer_id".into(), a.alert.customer_id.clone().into());
    what.insert("reason".into(), a.alert.reason.clone().into());
    what.insert(
        "event_time".into(),
        crate::model::iso_time(a.alert.event_time).into(),
    );
    crate::metrics::Recent { at_ms, what }
}

/// Table infos of a manifest's tables.
pub fn tables(specs: &[TableSpec]) -> Vec<Arc<TableInfo>> {
    specs
        .iter()
        .map(|t| {
            Arc::new(TableInfo {
                name: t.name.clone(),
                key: t
                    .key
                    .iter()
                    .filter_map(|k| t.columns.iter().position(|c| &c.name == k))
                    .collect(),
                columns: t.columns.clone(),
            })
        })
        .collect()
}

fn check(value: &Value, column: &Column) -> Result<(), String> {
    let ok = match (value, &column.ty) {
        (Value::Null, _) => column.nullable,
        (Value::Boolean(_), ColumnType::Boolean) => true,
        (Value::Int(_), ColumnType::Int | ColumnType::Time | ColumnType::Float) => true,
        (Value::Float(_), ColumnType::Float) => true,
        (Value::Text(_), ColumnType::Text) => true,
        (Value::Text(s), ColumnType::Json) if crate::decode::json::is_plain(s) => true,
        (Value::Text(s), ColumnType::Json) => {
            return serde_json::from_str::<serde::de::IgnoredAny>(s)
                .map(|_| ())
                .map_err(|e| format!("column {} holds invalid JSON: {e}", column.name))
        }
        (Value::Money(d), ColumnType::Money(scale)) => {
            let exact = rust_decimal::Decimal::try_new(d.units, u32::from(d.scale))
                .map_err(|_| {
                    format!(
                        "column {} holds a money value of {} decimal places, more than 28",
                        column.name, d.scale
                    )
                })?
                .normalize();
            if exact.scale() > u32::from(*scale) {
                return Err(format!(
                    "column {} is money({scale}) but the value {exact} has {} decimal places; round it in the rule set",
                    column.name,
                    exact.scale()
                ));
            }
            true
        }
        (Value::Time(_), ColumnType::Time) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "column {} is {}{} but got {value:?}",
            column.name,
            crate::runtime::manifest::column_type(&column.ty),
            if column.nullable {
                ""
            } else {
                " (not nullable)"
            }
        ))
    }
}

/// Builds a row record, or says why the row does not fit its table.
pub fn row(table: &Arc<TableInfo>, rule: &str, values: Vec<Value>) -> Result<RowRecord, String> {
    if values.len() != table.columns.len() {
        return Err(format!(
            "table {} has {} columns but the row has {} values",
            table.name,
            table.columns.len(),
            values.len()
        ));
    }
    for (value, column) in values.iter().zip(&table.columns) {
        check(value, column).map_err(|e| format!("table {}: {e}", table.name))?;
    }
    // The key's values as JSON, back to back, then hashed part by part.
    let mut text = Vec::with_capacity(64);
    let mut ends = smallvec::SmallVec::<[usize; 4]>::new();
    for &i in &table.key {
        encode::Json.value(&mut text, &values[i], &table.columns[i].ty);
        ends.push(text.len());
    }
    let mut parts = smallvec::SmallVec::<[&[u8]; 5]>::new();
    parts.push(table.name.as_bytes());
    let mut start = 0;
    for &end in &ends {
        parts.push(&text[start..end]);
        start = end;
    }
    let id = ids::row(&parts);
    Ok(RowRecord {
        table: table.clone(),
        id,
        rule: rule.to_string(),
        values,
    })
}

/// Builds an alert record with its deterministic id.
pub fn alert(rule_set: &str, name: &str, alert: Alert) -> AlertRecord {
    let id = ids::alert(
        name,
        &alert.rule,
        &alert.kind,
        alert.transaction_id.as_deref().unwrap_or(""),
        alert.customer_id.as_deref().unwrap_or(""),
        alert.event_time,
    );
    AlertRecord {
        id,
        rule_set: rule_set.to_string(),
        alert,
    }
}

impl Router {
    /// A router writing every record to every one of `sinks`.
    pub fn new(sinks: Vec<Box<dyn Sink>>, metrics: Arc<Metrics>) -> Self {
        Self {
            written: vec![0; sinks.len()],
            sinks,
            kinds: Vec::new(),
            routes: None,
            by_stream: HashMap::new(),
            metrics,
            unflushed_refusals: false,
            webhooks: None,
            recent_alerts: std::collections::VecDeque::new(),
        }
    }

    /// A router sending each stream to the sinks `routes` names for it.
    pub fn routed(
        sinks: Vec<(SinkKind, Box<dyn Sink>)>,
        routes: OutputConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (kinds, sinks): (Vec<SinkKind>, Vec<Box<dyn Sink>>) = sinks.into_iter().unzip();
        Self {
            written: vec![0; sinks.len()],
            sinks,
            kinds,
            routes: Some(routes),
            by_stream: HashMap::new(),
            metrics,
            unflushed_refusals: false,
            webhooks: None,
            recent_alerts: std::collections::VecDeque::new(),
        }
    }

    /// Posts every alert to the webhooks that take it, too.
    pub fn with_webhooks(mut self, webhooks: crate::sink::webhook::Webhooks) -> Self {
        self.webhooks = (!webhooks.is_empty()).then_some(webhooks);
        self
    }

    /// How many bytes of a record a dead letter keeps (`output.max-raw-bytes`).
    pub fn max_raw_bytes(&self) -> usize {
        self.routes
            .as_ref()
            .map_or(OutputConfig::default().max_raw_bytes, |r| r.max_raw_bytes)
    }

    /// Dead-letters the records the sinks refused for good (`sink_refused`);
    /// returns how many. A refused dead letter is logged, not dead-lettered
    /// again.
    fn dead_letter_refused(&mut self) -> Result<usize, SinkError> {
        let refused: Vec<Refused> = self
            .sinks
            .iter_mut()
            .flat_map(|s| s.take_refused())
            .collect();
        let max_raw = self.max_raw_bytes();
        let mut emitted = 0;
        for r in refused {
            self.metrics.sink_refused.fetch_add(1, Ordering::Relaxed);
            if r.stream == "dead_letter" {
                tracing::error!(
                    sink = %r.sink,
                    "a dead letter was refused ({}); it was: {}",
                    r.message,
                    crate::model::preview(&r.row)
                );
                continue;
            }
            self.emit(&Record::DeadLetter(r.dead_letter(max_raw)))?;
            emitted += 1;
        }
        if emitted > 0 {
            self.unflushed_refusals = true;
        }
        Ok(emitted)
    }

    /// Writes records to every sink, keeping the latest alerts among them
    /// for the status page (only those: an alert is copied at most once).
    pub fn emit_all(&mut self, records: &[Record]) -> Result<(), SinkError> {
        records.iter().try_for_each(|r| self.emit(r))?;
        let latest = (records.iter().rev())
            .filter_map(|r| match r {
                Record::Alert(a) => Some(a),
                _ => None,
            })
            .take(crate::metrics::RECENT);
        let mut latest: Vec<&AlertRecord> = latest.collect();
        if latest.is_empty() {
            return Ok(());
        }
        latest.reverse();
        let now = crate::metrics::now_ms();
        let keep = crate::metrics::RECENT.saturating_sub(latest.len());
        while self.recent_alerts.len() > keep {
            self.recent_alerts.pop_front();
        }
        (self.recent_alerts).extend(latest.into_iter().map(|a| recent_alert(now, a)));
        Ok(())
    }

    /// Writes a record to every sink.
    pub fn emit(&mut self, record: &Record) -> Result<(), SinkError> {
        let counter = match record {
            Record::Row(_) => Some(&self.metrics.rows),
            Record::Alert(_) => Some(&self.metrics.alerts),
            Record::DeadLetter(_) => Some(&self.metrics.dead_letters),
            Record::Late(_) => Some(&self.metrics.late),
            Record::Raw(_) | Record::Clean(_) => None,
        };
        if let Some(counter) = counter {
            Metrics::inc(counter);
        }
        if let Record::DeadLetter(d) = record {
            let mut reasons =
                (self.metrics.dead_letter_reasons.lock()).unwrap_or_else(|p| p.into_inner());
            match reasons.get_mut(&d.reason) {
                Some(n) => *n += 1,
                None => {
                    reasons.insert(d.reason.clone(), 1);
                }
            }
        }
        if let Some(webhooks) = &self.webhooks {
            webhooks.offer(record);
        }
        let Some(routes) = &self.routes else {
            for (sink, n) in self.sinks.iter_mut().zip(&mut self.written) {
                sink.write(record)?;
                *n += 1;
            }
            return Ok(());
        };
        let stream = record.stream();
        let indexes = match self.by_stream.get(stream) {
            Some(indexes) => indexes,
            None => {
                let wanted = routes.sinks_of(stream);
                let indexes = (0..self.sinks.len())
                    .filter(|&i| wanted.contains(&self.kinds[i]))
                    .collect();
                self.by_stream.entry(stream.to_string()).or_insert(indexes)
            }
        };
        for &i in indexes {
            self.sinks[i].write(record)?;
            self.written[i] += 1;
        }
        Ok(())
    }

    /// Whether some sink takes `stream`. `raw` and `clean` are taken only
    /// where routes name them.
    pub fn takes(&self, stream: &str) -> bool {
        match &self.routes {
            Some(routes) => !routes.sinks_of(stream).is_empty(),
            None => !matches!(stream, "raw" | "clean") && !self.sinks.is_empty(),
        }
    }

    /// The database sinks (postgres, clickhouse) `stream` goes to: their
    /// tables are created at start.
    pub fn databases_for(&self, stream: &str) -> Vec<SinkKind> {
        let Some(routes) = &self.routes else {
            return Vec::new();
        };
        routes
            .sinks_of(stream)
            .iter()
            .copied()
            .filter(|k| matches!(k, SinkKind::Postgres | SinkKind::Clickhouse))
            .collect()
    }

    /// How many records each sink has been given so far.
    pub fn written(&self) -> Vec<u64> {
        self.written.clone()
    }

    /// How many records (from the first) each sink holds durably now.
    /// A refused record counts once its dead letter is durable: refusals
    /// are dead-lettered and flushed before the counts are given.
    pub fn acknowledged(&mut self) -> Result<Vec<u64>, SinkError> {
        let acked = self
            .sinks
            .iter_mut()
            .zip(&self.written)
            .map(|(s, &n)| s.acknowledged(n))
            .collect::<Result<Vec<u64>, SinkError>>()?;
        if let Ok(mut pending) = self.metrics.sink_pending.lock() {
            for ((sink, &written), &acked) in self.sinks.iter().zip(&self.written).zip(&acked) {
                let n = written.saturating_sub(acked);
                match pending.get_mut(sink.name()) {
                    Some(p) => *p = n,
                    None => {
                        pending.insert(sink.name().to_string(), n);
                    }
                }
            }
        }
        // Every refusal counted above was handed over before it was
        // counted: its dead letter is emitted now (or was), and made
        // durable before the counts are used.
        self.dead_letter_refused()?;
        if std::mem::take(&mut self.unflushed_refusals) {
            self.sinks.iter_mut().try_for_each(|s| s.flush())?;
            self.dead_letter_refused()?;
            self.unflushed_refusals = false;
        }
        Ok(acked)
    }

    /// Hands the source's offsets to the sinks that store them.
    pub fn store_offsets(
        &mut self,
        offsets: &[(String, i32, i64)],
        watermark: i64,
    ) -> Result<(), SinkError> {
        self.sinks
            .iter_mut()
            .try_for_each(|s| s.store_offsets(offsets, watermark))
    }

    /// Hands a checkpoint to the sinks that keep it with the results;
    /// whether one does.
    pub fn store_checkpoint(
        &mut self,
        sequence: u64,
        payload: &[Vec<u8>],
    ) -> Result<bool, SinkError> {
        let mut kept = false;
        for sink in &mut self.sinks {
            kept |= sink.store_checkpoint(sequence, payload)?;
        }
        Ok(kept)
    }

    /// Lets every sink send what has waited too long, and dead-letters
    /// what they refused.
    pub fn tick(&mut self) -> Result<(), SinkError> {
        if !self.recent_alerts.is_empty() {
            let recent = self.recent_alerts.drain(..);
            crate::metrics::keep_recent(&self.metrics.recent_alerts, recent);
        }
        self.sinks.iter_mut().try_for_each(|s| s.tick())?;
        self.dead_letter_refused()?;
        Ok(())
    }

    /// Flushes every sink, with the dead letters of what they refused.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        loop {
            self.sinks.iter_mut().try_for_each(|s| s.flush())?;
            // A dead letter is never dead-lettered again, so this ends.
            if self.dead_letter_refused()? == 0 {
                self.unflushed_refusals = false;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::types::Decimal as Money;
    use crate::sink::column;

    fn merchant_table() -> Arc<TableInfo> {
        tables(&[TableSpec {
            name: "merchant_metrics".into(),
            columns: vec![
                column("merchant_id", ColumnType::Text, false),
                column("window_start", ColumnType::Time, false),
                column("revenue", ColumnType::Money(2), false),
                column("cities", ColumnType::Json, true),
            ],
            key: vec!["merchant_id".into(), "window_start".into()],
        }])
        .remove(0)
    }

    fn values(merchant: &str, start: i64, units: i64) -> Vec<Value> {
        vec![
            Value::Text(merchant.into()),
            Value::Time(start),
            Value::Money(Money { units, scale: 2 }),
            Value::Text(r#"{"Lagos":3}"#.into()),
        ]
    }

    #[test]
    fn a_rows_id_is_its_table_and_key_and_stays_the_same_across_versions() {
        let table = merchant_table();
        let a = row(
            &table,
            "merchant@1",
            values("MERCH_1", 1_767_571_200_000, 1000),
        )
        .unwrap();
        // Other values of the same key: the same id, so sinks upsert it.
        let b = row(
            &table,
            "merchant@2",
            values("MERCH_1", 1_767_571_200_000, 2500),
        )
        .unwrap();
        assert_eq!(a.id, b.id);
        // The id is part of what users store: it must not change between
        // releases (a changed id duplicates every upserted row).
        assert_eq!(a.id, "4d78a05db890b4eee61e45c75e1171db");
        let other_key = row(
            &table,
            "merchant@1",
            values("MERCH_1", 1_767_571_800_000, 1000),
        );
        let other_merchant = row(
            &table,
            "merchant@1",
            values("MERCH_2", 1_767_571_200_000, 1000),
        );
        assert_ne!(other_key.unwrap().id, a.id);
        assert_ne!(other_merchant.unwrap().id, a.id);
        assert_eq!(a.rule, "merchant@1");
    }

    #[test]
    fn a_row_that_does_not_fit_its_table_is_refused_with_the_reason() {
        let table = merchant_table();
        let refused = |values: Vec<Value>| row(&table, "r", values).unwrap_err();

        let mut short = values("M", 0, 1);
        short.pop();
        assert_eq!(
            refused(short),
            "table merchant_metrics has 4 columns but the row has 3 values"
        );
        let mut wrong = values("M", 0, 1);
        wrong[0] = Value::Int(7);
        let message = refused(wrong);
        assert!(
            message.contains("column merchant_id is text (not nullable) but got"),
            "{message}"
        );
        let mut null = values("M", 0, 1);
        null[1] = Value::Null;
        assert!(refused(null).contains("column window_start"));
        let mut precise = values("M", 0, 1);
        precise[2] = Value::Money(Money {
            units: 12345,
            scale: 3,
        });
        assert!(refused(precise).contains("has 3 decimal places; round it in the rule set"));
        // More places than a decimal holds: refused, not a panic in the host.
        let mut beyond = values("M", 0, 1);
        beyond[2] = Value::Money(Money {
            units: 1,
            scale: 73,
        });
        assert!(refused(beyond).contains("a money value of 73 decimal places, more than 28"));
        let mut json = values("M", 0, 1);
        json[3] = Value::Text("{not json".into());
        assert!(refused(json).contains("column cities holds invalid JSON"));

        // Nullable columns take null; money with fewer places fits.
        let mut fits = values("M", 0, 1);
        fits[3] = Value::Null;
        fits[2] = Value::Money(Money { units: 5, scale: 0 });
        assert!(row(&table, "r", fits).is_ok());
    }
}
