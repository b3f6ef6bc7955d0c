//! `edge gen`: generated payment records to a file, stdout or Kafka.

use crate::gen::Generator;
use crate::source::{GenSource, Source};
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;

/// What `edge gen` writes.
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// The generator's settings.
    pub generator: crate::config::GeneratorConfig,
    /// Number of records.
    pub events: u64,
    /// Output file (stdout when `None`).
    pub out: Option<PathBuf>,
    /// Customers file (JSON lines), if wanted.
    pub customers: Option<PathBuf>,
    /// Merchants file (JSON lines), if wanted.
    pub merchants: Option<PathBuf>,
    /// Produce to Kafka instead of a file: the cluster and the topic.
    pub to_kafka: Option<(crate::config::KafkaConfig, String)>,
    /// With `to_kafka`: the topics for customers and merchants.
    pub dimension_topics: Option<(String, String)>,
    /// Wrap records as Debezium change events (`precise` decimals).
    pub debezium: bool,
    /// Labels file: per planted fraud record, its transaction id, pattern
    /// and incident (JSON lines), for `edge eval`.
    pub labels: Option<PathBuf>,
}

/// A generated record as a Debezium change event with its schema: the
/// money columns as `precise` decimals (base64 bytes, scale in the schema).
/// A record that is not a JSON object is returned as it is.
pub fn debezium_event(bytes: &[u8], ts_ms: i64) -> Vec<u8> {
    use serde_json::{json, Value};
    let Ok(Value::Object(mut row)) = serde_json::from_slice::<Value>(bytes) else {
        return bytes.to_vec();
    };
    let mut fields = Vec::new();
    for (name, value) in row.iter_mut() {
        let text = match value {
            Value::String(s) if name.ends_with("amount") => Some(s.clone()),
            Value::Number(n) if name.ends_with("amount") => Some(n.to_string()),
            _ => None,
        };
        let decimal = text.and_then(|t| crate::decode::parse_decimal(&t));
        match decimal {
            Some(d) => {
                fields.push(json!({"field": name, "type": "bytes", "optional": true,
                    "name": "org.apache.kafka.connect.data.Decimal",
                    "parameters": {"scale": d.scale().to_string()}}));
                *value = Value::String(crate::decode::debezium::encode_precise(d));
            }
            None => {
                let ty = match value {
                    Value::Number(_) => "double",
                    Value::Bool(_) => "boolean",
                    _ => "string",
                };
                fields.push(json!({"field": name, "type": ty, "optional": true}));
            }
        }
    }
    let event = json!({
        "schema": {"type": "struct", "name": "fintech.public.transactions.Envelope", "fields": [
            {"field": "before", "type": "struct", "optional": true, "fields": fields.clone()},
            {"field": "after", "type": "struct", "optional": true, "fields": fields},
            {"field": "op", "type": "string"},
            {"field": "ts_ms", "type": "int64", "optional": true}
        ]},
        "payload": {"before": null, "after": row, "op": "c", "ts_ms": ts_ms,
            "source": {"connector": "postgresql", "db": "fintech", "schema": "public", "table": "transactions"}}
    });
    event.to_string().into_bytes()
}

fn message_key(bytes: &[u8], seq: u64) -> String {
    #[derive(serde::Deserialize)]
    struct Key {
        customer_id: Option<String>,
    }
    serde_json::from_slice::<Key>(bytes)
        .ok()
        .and_then(|k| k.customer_id)
        .unwrap_or_else(|| seq.to_string())
}

fn gen_kafka(
    options: &GenOptions,
    generator: Generator,
    kafka: &crate::config::KafkaConfig,
    topic: &str,
) -> anyhow::Result<u64> {
    use crate::sink::kafka::{flush_all, producer, send};
    let mut seq = 0usize;
    let mut topics = vec![topic.to_string()];
    if let Some((customers, merchants)) = &options.dimension_topics {
        topics.extend([customers.clone(), merchants.clone()]);
    }
    crate::source::kafka::ensure_topics(kafka, &topics, kafka.partitions)
        .map_err(anyhow::Error::msg)?;
    let producer = producer(kafka).map_err(anyhow::Error::msg)?;
    if let Some((customers, merchants)) = &options.dimension_topics {
        for (topic, lines, id) in [
            (customers, generator.customers_jsonl(), "customer_id"),
            (merchants, generator.merchants_jsonl(), "merchant_id"),
        ] {
            for line in lines.lines() {
                let key = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get(id).and_then(|k| k.as_str()).map(String::from))
                    .unwrap_or_default();
                send(&producer, seq, topic, key.as_bytes(), line.as_bytes(), None)
                    .map_err(|e| anyhow::Error::msg(e.to_string()))?;
                seq += 1;
            }
        }
    }
    let ts_ms = chrono::Utc::now().timestamp_millis();
    let written = each_record(options, generator, ts_ms, |record, payload, position| {
        // Keyed by the record's customer, so a customer's events keep their order.
        let key = message_key(record, position);
        send(&producer, seq, topic, key.as_bytes(), payload, None)
            .map_err(|e| anyhow::Error::msg(e.to_string()))?;
        seq += 1;
        Ok(())
    })?;
    flush_all(&producer).map_err(anyhow::Error::msg)?;
    Ok(written)
}

/// Feeds `options.events` generated records to `each` as (record, payload,
/// position), paced to the generator's rate: the payload is the record, or
/// with `--format debezium` its change event. With `options.labels`, writes
/// the label of each planted fraud record there.
fn each_record(
    options: &GenOptions,
    generator: Generator,
    ts_ms: i64,
    mut each: impl FnMut(&[u8], &[u8], u64) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut source = GenSource::new(generator, options.generator.rate);
    let mut labels = match &options.labels {
        Some(path) => {
            source = source.with_labels();
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Some(std::io::BufWriter::new(file))
        }
        None => None,
    };
    let mut batch = crate::source::RecordBatch::default();
    let mut written = 0u64;
    let progress = crate::progress::bar(options.events, "records");
    while written < options.events {
        batch.clear();
        let want = (options.events - written).min(4096) as usize;
        source.poll(&mut batch, want, std::time::Duration::from_millis(100))?;
        let mut planted = source.take_labels().into_iter().peekable();
        for i in 0..batch.len() {
            let (bytes, position) = batch.get(i);
            if options.debezium {
                each(bytes, &debezium_event(bytes, ts_ms), position)?;
            } else {
                each(bytes, bytes, position)?;
            }
            if let (Some(out), Some((_, pattern, incident))) =
                (&mut labels, planted.next_if(|l| l.0 == position))
            {
                write_label(out, bytes, pattern, incident)?;
            }
        }
        written += batch.len() as u64;
        progress.set_position(written);
    }
    progress.finish_and_clear();
    if let Some(mut out) = labels {
        out.flush()?;
    }
    Ok(written)
}

/// One line of the labels file.
fn write_label(
    out: &mut impl Write,
    record: &[u8],
    pattern: &str,
    incident: u64,
) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Id {
        transaction_id: String,
    }
    let id: Id = serde_json::from_slice(record).context("a planted record without its id")?;
    let label = serde_json::json!({
        "transaction_id": id.transaction_id,
        "pattern": pattern,
        "incident": incident,
    });
    writeln!(out, "{label}")?;
    Ok(())
}

/// Writes generated records as JSON lines, paced to the generator's rate.
pub fn gen(options: &GenOptions) -> anyhow::Result<u64> {
    let generator = Generator::new(&options.generator);
    if let Some(path) = &options.customers {
        std::fs::write(path, generator.customers_jsonl())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &options.merchants {
        std::fs::write(path, generator.merchants_jsonl())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some((kafka, topic)) = &options.to_kafka {
        return gen_kafka(options, generator, kafka, topic);
    }
    let mut out: Box<dyn Write> = match &options.out {
        Some(path) => Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let written = each_record(options, generator, 0, |_, payload, _| {
        out.write_all(payload)?;
        out.write_all(b"\n")?;
        Ok(())
    })?;
    out.flush()?;
    Ok(written)
}
