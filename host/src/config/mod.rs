//! `edge.toml`: the schema, its defaults, `${VAR}` substitution and validation.
//!
//! Every key is optional; unknown keys are refused with their name. Command
//! line flags override the file. Strings may use `${VAR}` or
//! `${VAR:-default}` to read the environment.

use crate::model::Format;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A configuration error: which key, what is wrong, how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key.
        message: String,
    },
    /// A `${VAR}` without a value and without a default.
    #[error("config file {path}: environment variable {var} is not set (set it, or write ${{{var}:-default}})")]
    MissingVar {
        /// The file.
        path: PathBuf,
        /// The variable.
        var: String,
    },
    /// A value is out of range.
    #[error("invalid setting {key}: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// Where events come from.
    pub source: SourceConfig,
    /// The built-in traffic generator (the default source).
    pub generator: GeneratorConfig,
    /// Decoding and validation.
    pub decode: DecodeConfig,
    /// Micro-batches, event time, dedup, run bounds.
    pub engine: EngineConfig,
    /// Rule sets: which to load, their limits and their config.
    pub rules: RulesConfig,
    /// Where results go.
    pub output: OutputConfig,
    /// Dimension tables served to rule sets.
    pub dimensions: DimensionsConfig,
    /// The Kafka cluster used by Kafka sources, sinks and dimension topics.
    pub kafka: KafkaConfig,
    /// The PostgreSQL sink.
    pub postgres: PostgresConfig,
    /// The ClickHouse sink.
    pub clickhouse: ClickHouseConfig,
    /// The admin HTTP API.
    pub admin: AdminConfig,
    /// Checkpoints of the run's state.
    pub checkpoint: CheckpointConfig,
    /// Webhooks alerts are posted to (`[[webhooks]]`, one table each).
    pub webhooks: Vec<WebhookConfig>,
}

/// A webhook alerts are posted to: Slack, Discord or any service that takes
/// a JSON body. Posting runs beside the stream: a slow or failing webhook
/// never holds it up (alerts beyond `queue` are dropped and counted).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct WebhookConfig {
    /// Name in logs, metrics and the admin API (unset: `webhook-N`, from 1
    /// in file order).
    pub name: Option<String>,
    /// The URL posted to (`http://` or `https://`). It is a secret for
    /// Slack and Discord: logs show only its scheme and host.
    pub url: String,
    /// The body: `slack` (`{"text": ...}`), `discord` (`{"content": ...}`)
    /// or `json` (`{"source": "edge", "alerts": [...]}`, each alert as in
    /// `alerts.jsonl`).
    pub format: WebhookFormat,
    /// Only alerts of these rule sets (empty: every rule set).
    pub rules: Vec<String>,
    /// Only alerts of these kinds (`RAPID_ORDERS`, ...; empty: every kind).
    pub kinds: Vec<String>,
    /// Only alerts at least this severe: `low`, `medium`, `high`, `critical`.
    pub min_severity: SeverityName,
    /// Alerts per post at most.
    pub batch_max: usize,
    /// How long the first alert of a post waits for others, ms.
    pub batch_ms: u64,
    /// Posts per minute at most (evenly spaced); alerts wait meanwhile.
    pub max_per_minute: u32,
    /// Attempts after the first when a post fails (no answer, 429 or
    /// 5xx), with a backoff from `backoff-ms` doubling up to 30 s (a
    /// `Retry-After` is honoured). A 4xx other than 429 is not retried.
    pub retries: u32,
    /// The first backoff, ms.
    pub backoff_ms: u64,
    /// Time allowed for one post, ms.
    pub timeout_ms: u64,
    /// Alerts waiting to be posted at most; beyond, new ones are dropped
    /// and counted.
    pub queue: usize,
    /// Extra request headers (an `Authorization` for a generic endpoint).
    pub headers: BTreeMap<String, String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            name: None,
            url: String::new(),
            format: WebhookFormat::Json,
            rules: Vec::new(),
            kinds: Vec::new(),
            min_severity: SeverityName::Low,
            batch_max: 20,
            batch_ms: 1_000,
            max_per_minute: 60,
            retries: 5,
            backoff_ms: 500,
            timeout_ms: 5_000,
            queue: 10_000,
            headers: BTreeMap::new(),
        }
    }
}

/// A URL as logs show it: its scheme and host, not its path (where Slack
/// and Discord keep the webhook's secret).
pub fn shown_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return "(not a URL)".into();
    };
    let rest = &url[scheme_end + 3..];
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    let more = if rest.len() > host.len() { "/..." } else { "" };
    format!("{}{host}{more}", &url[..scheme_end + 3])
}

/// The body a webhook is posted.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookFormat {
    /// Slack incoming webhooks: `{"text": ...}` with Slack's markup.
    Slack,
    /// Discord webhooks: `{"content": ...}`, at most 2,000 characters.
    Discord,
    /// `{"source": "edge", "count": N, "alerts": [...]}`.
    Json,
}

/// An alert severity, as configs name it.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum SeverityName {
    /// Everything.
    Low,
    /// Medium and above.
    Medium,
    /// High and critical.
    High,
    /// Critical only.
    Critical,
}

/// Checkpoints: keyed state, open windows, watermark, dedup ids and the
/// source's position, taken at a batch boundary and written in the
/// background, so that a run killed at any moment and started again with
/// the same command resumes where the last one stood.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct CheckpointConfig {
    /// Directory of the checkpoint files (unset: `checkpoints` in
    /// `output.dir`).
    pub dir: Option<PathBuf>,
    /// How often a checkpoint is taken, ms; 0: never (a restart then
    /// re-reads what was not settled, with empty state).
    pub interval_ms: u64,
    /// How many of the newest checkpoints are kept.
    pub keep: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            dir: None,
            interval_ms: 5_000,
            keep: 3,
        }
    }
}

impl Config {
    /// The checkpoint directory, or `None` when checkpoints are off.
    pub fn checkpoint_dir(&self) -> Option<PathBuf> {
        (self.checkpoint.interval_ms > 0).then(|| {
            (self.checkpoint.dir.clone()).unwrap_or_else(|| self.output.dir.join("checkpoints"))
        })
    }
}

/// The admin HTTP API: health, rule sets (reload, disable, enable) and
/// Prometheus metrics.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct AdminConfig {
    /// Address to listen on, or `off`. Unset: 127.0.0.1:8787, and when that
    /// port is taken (another edge on the machine) edge runs without the
    /// API and says so; set explicitly, a taken port is an error.
    pub addr: Option<String>,
    /// Bearer token every endpoint but `/health` requires (write
    /// `${EDGE_ADMIN_TOKEN}` to keep it out of the file); empty: none.
    pub token: String,
    /// Host names the API answers to besides addresses and `localhost`
    /// (a request naming another host is refused: DNS rebinding), such as
    /// `edge` for a Prometheus in the same compose network.
    pub hosts: Vec<String>,
}

/// The admin API's address when none is configured.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:8787";

impl AdminConfig {
    /// The address to listen on (`None`: off) and whether it was chosen
    /// explicitly.
    pub fn listen(&self) -> Result<Option<(std::net::SocketAddr, bool)>, ConfigError> {
        let (text, explicit) = match self.addr.as_deref() {
            None => (DEFAULT_ADMIN_ADDR, false),
            Some(a) if a.eq_ignore_ascii_case("off") || a.is_empty() => return Ok(None),
            Some(a) => (a, true),
        };
        text.parse()
            .map(|a| Some((a, explicit)))
            .map_err(|_| ConfigError::Invalid {
                key: "admin.addr",
                message: format!(
                    "{text:?} is not an address; write HOST:PORT such as 127.0.0.1:8787, or off"
                ),
            })
    }
}

/// The ClickHouse sink.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ClickHouseConfig {
    /// HTTP interface URL, `http://host:8123`.
    pub url: String,
    /// Database of the tables (created if missing).
    pub database: String,
    /// User; empty for the server's default user.
    pub user: String,
    /// Password (write `${EDGE_CLICKHOUSE_PASSWORD}` to keep it out of the file).
    pub password: String,
    /// With an `https://` url: a PEM file of the certificate authority that
    /// signed the server's certificate, trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Rows per batch (one INSERT per table).
    pub batch_rows: usize,
    /// A partial batch is written once it is this old.
    pub flush_interval_ms: u64,
    /// Batches held while the server is unreachable; when they are all
    /// waiting, the source pauses (back-pressure) until the server is back.
    pub buffer_batches: usize,
    /// Fail the run when one batch could not be written for this long;
    /// 0 retries for ever.
    pub retry_max_secs: u64,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "edge".into(),
            user: String::new(),
            password: String::new(),
            ca_file: None,
            batch_rows: 20_000,
            flush_interval_ms: 1_000,
            buffer_batches: 64,
            retry_max_secs: 0,
        }
    }
}

/// The PostgreSQL sink.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct PostgresConfig {
    /// Connection URL, `postgres://user:password@host:port/database`.
    pub url: String,
    /// Schema of the tables (created if missing).
    pub schema: String,
    /// Rows per batch (one transaction).
    pub batch_rows: usize,
    /// A partial batch is written once it is this old.
    pub flush_interval_ms: u64,
    /// Batches held while the server is unreachable; when they are all
    /// waiting, the source pauses (back-pressure) until the server is back.
    pub buffer_batches: usize,
    /// Fail the run when one batch could not be written for this long;
    /// 0 retries for ever.
    pub retry_max_secs: u64,
    /// For Kafka-to-PostgreSQL pipelines: store the source offsets in the
    /// table `edge_offsets`, in the transactions that write the results,
    /// and resume from them at start, so that a crash neither loses nor
    /// repeats a result.
    pub exactly_once: bool,
    /// The longest a statement may run (the server's `statement_timeout`;
    /// the client gives up on a server that does not answer a little
    /// later): a hung write is retried like a lost connection.
    pub statement_timeout_ms: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            schema: "edge".into(),
            batch_rows: 5_000,
            flush_interval_ms: 1_000,
            buffer_batches: 64,
            retry_max_secs: 0,
            exactly_once: false,
            statement_timeout_ms: 30_000,
        }
    }
}

/// The Kafka cluster.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port]`.
    pub brokers: String,
    /// Extra librdkafka properties for every client (security, timeouts):
    /// `"security.protocol" = "SASL_SSL"`, ...
    pub options: BTreeMap<String, String>,
    /// Output topics (`{table}` is replaced by the table name).
    pub topics: KafkaTopics,
    /// Create missing output topics at start.
    pub create_topics: bool,
    /// Partitions of the topics edge creates.
    pub partitions: i32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            options: BTreeMap::new(),
            topics: KafkaTopics::default(),
            create_topics: true,
            partitions: 4,
        }
    }
}

/// Where each output stream goes on Kafka.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct KafkaTopics {
    /// Analytics tables; `{table}` is the table's name.
    pub tables: String,
    /// Alerts.
    pub alerts: String,
    /// Rejected records and failed rule calls.
    pub dead_letter: String,
    /// Events later than their windows' allowed lateness.
    pub late: String,
    /// Every record as received (when `raw` is routed to kafka).
    pub raw: String,
    /// Every validated event (when `clean` is routed to kafka).
    pub clean: String,
}

impl Default for KafkaTopics {
    fn default() -> Self {
        Self {
            tables: "fintech.analytics.{table}".into(),
            alerts: "fintech.alerts".into(),
            dead_letter: "dead_letter_queue".into(),
            late: "fintech.late".into(),
            raw: "fintech.transactions.raw".into(),
            clean: "fintech.transactions.clean".into(),
        }
    }
}

impl KafkaTopics {
    /// The topic of an output stream (a table name, `alerts`, `dead_letter`, `late`, `raw` or `clean`).
    pub fn topic(&self, stream: &str) -> String {
        match stream {
            "alerts" => self.alerts.clone(),
            "dead_letter" => self.dead_letter.clone(),
            "late" => self.late.clone(),
            "raw" => self.raw.clone(),
            "clean" => self.clean.clone(),
            table => self.tables.replace("{table}", table),
        }
    }
}

/// Where events come from.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SourceConfig {
    /// `gen` (the built-in generator), `file` or `kafka`.
    pub kind: SourceKind,
    /// For `file`: the path (JSON lines or CSV).
    pub path: Option<PathBuf>,
    /// Record format: `json`, `csv` or `debezium` (default: `csv` for
    /// `*.csv`, else `json`).
    pub format: Option<Format>,
    /// For `kafka`: the topics to read.
    pub topics: Vec<String>,
    /// For `kafka`: the consumer group (processes in one group share the
    /// partitions).
    pub group: String,
    /// For `kafka`: where a group without committed offsets starts,
    /// `earliest` or `latest`.
    pub start: KafkaStart,
    /// For `kafka`: scale out across processes. Each member copies the
    /// records it reads to the topic `<group>.repartition`, one copy per
    /// partition its keys belong to, and runs the rule sets on the
    /// partitions of that topic the group `<group>.keyed` gives it, so that
    /// the members' results are one process's whatever the source topic
    /// is keyed by.
    pub repartition: bool,
    /// Partitions of the repartition topic (the most members that share
    /// the keyed work); at most 128.
    pub repartition_partitions: i32,
    /// Fields to route by beside those the rule sets key by at start
    /// (`customer`, `merchant`, `account`, `country`, `kind`,
    /// `hour-of-day`, `global`), for rule sets loaded later.
    pub repartition_by: Vec<String>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            kind: SourceKind::Gen,
            path: None,
            format: None,
            topics: Vec::new(),
            group: "edge".into(),
            start: KafkaStart::Earliest,
            repartition: false,
            repartition_partitions: 16,
            repartition_by: Vec::new(),
        }
    }
}

/// Where a new consumer group starts reading.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaStart {
    /// The oldest retained record.
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// The kinds of source.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// The built-in generator.
    Gen,
    /// A file of records.
    File,
    /// Kafka topics, read in a consumer group.
    Kafka,
}

impl SourceConfig {
    /// Parses the `--source` shorthand, `gen`, `file:PATH` or
    /// `kafka://BROKERS/TOPIC[,TOPIC]`, over `self` (the file's settings):
    /// returns the brokers of a Kafka shorthand.
    pub fn apply_flag(&mut self, flag: &str) -> Result<Option<String>, String> {
        if flag == "gen" {
            self.kind = SourceKind::Gen;
            self.format = None;
            return Ok(None);
        }
        if let Some(path) = flag.strip_prefix("file:") {
            if path.is_empty() {
                return Err("--source file: needs a path, as in file:events.jsonl".into());
            }
            // The config's `format` stays: a flag overrides only what it
            // names (`--format` names the format).
            self.kind = SourceKind::File;
            self.path = Some(PathBuf::from(path));
            return Ok(None);
        }
        if let Some(rest) = flag.strip_prefix("kafka://") {
            let (brokers, topics) =
                parse_kafka_url(rest).map_err(|e| format!("--source {flag:?}: {e}"))?;
            self.kind = SourceKind::Kafka;
            self.topics = topics;
            return Ok(Some(brokers));
        }
        Err(format!(
            "--source {flag:?} is not understood; use `gen`, `file:PATH` or `kafka://BROKERS/TOPIC`"
        ))
    }

    /// The record format, from the setting or the file extension.
    pub fn format(&self) -> Format {
        self.format.unwrap_or_else(|| match &self.path {
            Some(p) if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) => Format::Csv,
            _ => Format::Json,
        })
    }
}

/// Splits `BROKERS/TOPIC[,TOPIC]` (the part after `kafka://`).
pub fn parse_kafka_url(rest: &str) -> Result<(String, Vec<String>), String> {
    let (brokers, topics) = rest.split_once('/').ok_or(
        "expected kafka://BROKERS/TOPIC[,TOPIC], as in kafka://127.0.0.1:9092/fintech.transactions",
    )?;
    let topics: Vec<String> = topics
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    if brokers.is_empty() || topics.is_empty() {
        return Err("expected kafka://BROKERS/TOPIC[,TOPIC], as in kafka://127.0.0.1:9092/fintech.transactions".into());
    }
    Ok((brokers.to_string(), topics))
}

/// The built-in generator of payment traffic.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct GeneratorConfig {
    /// Seed: the same seed gives the same events.
    pub seed: u64,
    /// Events emitted per second of wall time; 0 for as fast as possible.
    pub rate: u64,
    /// Average events per second of simulated event time (before the
    /// time-of-day multipliers). Event time runs `rate / traffic` times
    /// faster than the wall clock, so windows fire during a demo.
    pub traffic: u64,
    /// Event time of the first event (ISO-8601), or `now`: the wall clock
    /// when the generator starts (with `traffic` equal to `rate`, event time
    /// then follows the wall clock, as a live stream's does).
    pub start: String,
    /// Number of customers.
    pub customers: u32,
    /// Number of merchants.
    pub merchants: u32,
    /// Fraction of dirty records (malformed, missing fields, negative
    /// amounts, ...), in [0, 1].
    pub dirty: f64,
    /// Fraction of events that belong to planted fraud patterns.
    pub fraud: f64,
    /// Fraction of the customers replaced by new ones (new ids, accounts
    /// and devices) at each simulated midnight: the churn of a long run.
    pub customer_churn: f64,
    /// Fraction of the customers who get a new device at each simulated
    /// midnight (each keeps at most three).
    pub device_churn: f64,
}

impl GeneratorConfig {
    /// The event time of the first event, Unix ms (`now`: the wall clock,
    /// to the second).
    pub fn start_ms(&self) -> Option<i64> {
        if self.start.trim().eq_ignore_ascii_case("now") {
            return Some(crate::metrics::now_ms() / 1000 * 1000);
        }
        crate::model::parse_time(&self.start)
    }
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            rate: 10_000,
            traffic: 50,
            start: "2026-01-05T00:00:00Z".into(),
            customers: 5_000,
            merchants: 300,
            dirty: 0.01,
            fraud: 0.01,
            customer_churn: 0.0,
            device_churn: 0.0,
        }
    }
}

/// Decoding and validation.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct DecodeConfig {
    /// Records larger than this are rejected as `oversized`.
    pub max_record_bytes: usize,
    /// Text fields (ids, codes, names, each compliance flag) longer than
    /// this many bytes are rejected as `field_too_long`.
    pub max_field_bytes: usize,
    /// Amounts above this are rejected as `absurd_amount`.
    pub max_amount: Decimal,
    /// Event times before this (ms since the epoch) are rejected.
    pub min_event_time_ms: i64,
    /// Event times more than this ahead of the source's clock (the wall
    /// clock; the generator's own for `gen`) are rejected.
    pub max_future_ms: i64,
    /// Currency assumed when a record has none.
    pub default_currency: String,
    /// The scale incoming `risk_score`s are on: 100 (the reference
    /// systems', 0 to 100) or 1 (0 to 1). Scores are held in [0, 1]; one
    /// outside [0, scale] is rejected as `invalid_risk_score`.
    pub risk_score_scale: u32,
    /// Thresholds of the risk levels, on the scale of the scores; unset:
    /// the reference's 30, 60 and 80 (of 100).
    pub risk_levels: Option<RiskLevels>,
    /// Where to find fields in other shapes: canonical name -> dotted path,
    /// e.g. `customer_id = "user.id"`. Canonical names: transaction_id,
    /// customer_id, account_id, merchant_id, transaction_type, status, amount,
    /// fee_amount, currency, channel, device_fingerprint, location.country,
    /// location.city, risk_score, risk_level, compliance_flags, created_at.
    pub fields: BTreeMap<String, String>,
    /// Extra fields a source carries beside the canonical ones, read as
    /// text into named attributes that rule sets read (`event-batch`):
    /// name -> dotted path, e.g. `product_id = "item.product_id"`. Names
    /// are lowercase letters, digits and `_`; at most 16.
    pub attributes: BTreeMap<String, String>,
    /// How the rows of each table of a Debezium source are read, by the
    /// table the change event names (`source.table`, or an unwrapped
    /// row's `__table`): over the settings above. Rows of other tables are
    /// read with those.
    pub tables: BTreeMap<String, TableDecode>,
}

/// How the rows of one table of a Debezium source are read
/// (`[decode.tables.<table>]`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct TableDecode {
    /// Canonical field -> column (dotted path), over `decode.fields`.
    pub fields: BTreeMap<String, String>,
    /// Attribute -> column, over `decode.attributes`; the attributes of
    /// every table and of `decode.attributes` are one set of names.
    pub attributes: BTreeMap<String, String>,
    /// Canonical field -> the value of a row without it (a table with no
    /// `transaction_type`, say).
    pub values: BTreeMap<String, String>,
    /// Put before each row's transaction id, so that ids of two tables
    /// (an order and an order line both numbered 1) do not meet in
    /// deduplication.
    pub id_prefix: String,
    /// A column the amount is multiplied by (a line's quantity): the
    /// event's amount is then the line's total.
    pub amount_times: Option<String>,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        Self {
            max_record_bytes: 64 * 1024,
            max_field_bytes: 256,
            max_amount: Decimal::from(1_000_000_000),
            min_event_time_ms: 946_684_800_000,
            max_future_ms: 300_000,
            default_currency: "USD".into(),
            risk_score_scale: 100,
            risk_levels: None,
            fields: BTreeMap::new(),
            attributes: BTreeMap::new(),
            tables: BTreeMap::new(),
        }
    }
}

/// The risk level of a score without a `risk_level` of its own: above
/// `critical` CRITICAL, above `high` HIGH, above `medium` MEDIUM, else LOW.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RiskLevels {
    /// Scores above this are at least MEDIUM.
    pub medium: f64,
    /// Scores above this are at least HIGH.
    pub high: f64,
    /// Scores above this are CRITICAL.
    pub critical: f64,
}

impl DecodeConfig {
    /// The names of the attributes events carry: those of
    /// `decode.attributes` and of every table, in name order.
    pub fn attribute_names(&self) -> Vec<String> {
        let names: std::collections::BTreeSet<&String> = (self.attributes.keys())
            .chain(self.tables.values().flat_map(|t| t.attributes.keys()))
            .collect();
        names.into_iter().cloned().collect()
    }

    /// The risk levels' thresholds on the scores' scale: the configured
    /// ones, or the reference's (30, 60, 80 of 100) scaled to it.
    pub fn risk_levels(&self) -> RiskLevels {
        self.risk_levels.unwrap_or_else(|| {
            let scale = f64::from(self.risk_score_scale) / 100.0;
            RiskLevels {
                medium: 30.0 * scale,
                high: 60.0 * scale,
                critical: 80.0 * scale,
            }
        })
    }
}

/// The most workers: one per key group.
const KEY_GROUPS_MAX: usize = crate::model::KEY_GROUPS as usize;

/// Micro-batches, event time, dedup and run bounds.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct EngineConfig {
    /// Events per micro-batch (one rule call per batch). Large batches
    /// let a key's several events share one state read and write; a slow
    /// stream is still processed every `batch_timeout_ms`.
    pub batch_size: usize,
    /// A partial batch is processed after this long without filling up.
    pub batch_timeout_ms: u64,
    /// Bounded out-of-orderness of event time: the watermark trails the
    /// largest event time seen by this much.
    pub out_of_orderness_ms: i64,
    /// Transaction ids are remembered this long (event time) to drop duplicates.
    pub dedup_horizon_ms: i64,
    /// At most this many ids are remembered (the oldest are forgotten first).
    pub dedup_max_ids: usize,
    /// Stop after this many records (0: no limit).
    pub max_events: u64,
    /// Stop after this many seconds (0: no limit).
    pub duration_secs: u64,
    /// A source partition with no record for this long (wall time) stops
    /// holding the watermark back.
    pub idle_ms: u64,
    /// Without checkpoints (`checkpoint.interval-ms = 0`): how often the
    /// offsets of settled records are committed (Kafka). With checkpoints,
    /// offsets are committed as each checkpoint is written.
    pub commit_interval_ms: u64,
    /// Windows one window spec of a rule set keeps open at once. An event
    /// that would open one more is dead-lettered (`window_limit`) for that
    /// spec; the windows open go on as before.
    pub max_open_windows: usize,
    /// Keys of keyed state one rule set keeps. Past it, the keys written
    /// longest ago (in event time) are dropped, as if their time to live had
    /// passed, and counted (`edge_state_shed_total`).
    pub max_keyed_states: usize,
    /// Events a `collect` aggregate keeps per window (the first ones); a
    /// window that held more tells its rule set how many it held in all.
    pub max_collect_events: usize,
    /// Worker threads the rule sets run on, each owning the keys of a
    /// range of key groups (0: one per available core). Outputs do not
    /// depend on it; a checkpoint taken with one number of workers
    /// restores with any other. `max-open-windows` and `max-keyed-states`
    /// apply per worker.
    pub workers: usize,
    /// The order a key's events reach its rule sets and windows:
    /// `arrival` (as read; with several source partitions the order
    /// across them is the order they were fetched in), or `event-time`:
    /// each event is held until the watermark passes it, and a key's
    /// events are processed by event time (ties by transaction id), so
    /// that rule sets that depend on the order of events give the same
    /// results whatever the partitioning, the number of workers or of
    /// members; alerts come later by up to `out-of-orderness-ms`.
    pub order: Order,
    /// At start, how long to wait for servers that cannot be reached yet
    /// (Kafka, PostgreSQL, ClickHouse: a connection refused or timed out, a
    /// name that does not resolve yet), trying again with backoff; 0: refuse
    /// to start at once. Other errors (a table of another schema, a refused
    /// password) are refused at once either way.
    pub startup_wait_secs: u64,
}

/// The order of a key's events, see [`EngineConfig::order`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// As read from the source.
    #[default]
    Arrival,
    /// By event time, once the watermark passes.
    EventTime,
}

impl EngineConfig {
    /// The number of workers: `workers`, or the available cores.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            batch_size: 16_384,
            batch_timeout_ms: 50,
            out_of_orderness_ms: 5_000,
            dedup_horizon_ms: 600_000,
            dedup_max_ids: 1_000_000,
            max_events: 0,
            duration_secs: 0,
            idle_ms: 5_000,
            commit_interval_ms: 1_000,
            max_open_windows: 1_000_000,
            max_keyed_states: 5_000_000,
            max_collect_events: 10_000,
            workers: 0,
            order: Order::Arrival,
            startup_wait_secs: 0,
        }
    }
}

/// Rule sets.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RulesConfig {
    /// Rule set files or globs (`guests/*.wasm`).
    pub paths: Vec<String>,
    /// Keep compiled rule sets in `edge/wasmtime` under `$XDG_CACHE_HOME`
    /// (or `~/.cache`), private to the user, so a restart with unchanged
    /// modules skips compilation.
    pub compile_cache: bool,
    /// Limits for every rule set, unless overridden per rule.
    pub limits: Limits,
    /// Per rule set (by manifest name): config and limits.
    pub rule: BTreeMap<String, RuleConfig>,
    /// Watch the rule set files and globs: a changed file is swapped in, a
    /// new one added, a deleted one removed, while the stream runs.
    pub watch: bool,
    /// How long a rule set file must be left unchanged before it is loaded,
    /// ms, so a file still being written is never loaded.
    pub watch_debounce_ms: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            compile_cache: true,
            limits: Limits::default(),
            rule: BTreeMap::new(),
            watch: true,
            watch_debounce_ms: 300,
        }
    }
}

/// Whether two rule set names (or file stems) name the same rule set: equal
/// once `_` is read as `-`.
pub fn same_rule_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (matches!(x, b'-' | b'_') && matches!(y, b'-' | b'_')))
}

impl RulesConfig {
    /// The `[rules.rule.<name>]` section of a rule set, by its name or the
    /// stem of its file; `-` and `_` are the same (cargo builds the crate
    /// `big-spender` into `big_spender.wasm`).
    pub fn section(&self, name: &str) -> Option<&RuleConfig> {
        self.rule.get(name).or_else(|| {
            self.rule
                .iter()
                .find(|(k, _)| same_rule_name(k, name))
                .map(|(_, r)| r)
        })
    }

    /// The settings of the rule set in a file with this stem (or manifest name).
    pub fn of(&self, name: &str) -> RuleConfig {
        self.section(name).cloned().unwrap_or_default()
    }

    /// The limits of the rule set named `name`.
    pub fn limits_of(&self, name: &str) -> Limits {
        self.section(name)
            .and_then(|r| r.limits.clone())
            .unwrap_or_else(|| self.limits.clone())
    }

    /// Whether any rule set has a fuel budget (the engine then meters fuel).
    pub fn uses_fuel(&self) -> bool {
        std::iter::once(&self.limits)
            .chain(self.rule.values().filter_map(|r| r.limits.as_ref()))
            .any(|l| l.fuel > 0)
    }
}

/// Sandbox limits of a rule set.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Limits {
    /// Linear memory cap, MiB.
    pub memory_mib: u64,
    /// Per-call deadline, ms (epoch interruption).
    pub deadline_ms: u64,
    /// Most rows and alerts one call may return.
    pub max_emits: usize,
    /// Most bytes of rows and alerts one call may return (text and JSON
    /// values counted by length, other values as 8 bytes).
    pub max_output_bytes: usize,
    /// Keyed state the rule set may hold, MiB, over all workers (each holds
    /// its share); a call that would take it past is a rule error
    /// (`rule_state_quota`) and its input is dead-lettered.
    pub state_mib: u64,
    /// Fuel (roughly, WebAssembly instructions) one call may burn; 0: no
    /// budget. A budget is deterministic where the deadline is not.
    pub fuel: u64,
    /// Consecutive failures before a rule set is quarantined.
    pub quarantine_after: u32,
    /// How long a quarantined rule set sits out before it is tried again, ms
    /// (0: until restart).
    pub quarantine_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: 64,
            deadline_ms: 100,
            max_emits: 100_000,
            max_output_bytes: 64 << 20,
            state_mib: 256,
            fuel: 0,
            quarantine_after: 3,
            quarantine_ms: 60_000,
        }
    }
}

/// Settings of one rule set.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RuleConfig {
    /// Passed to the rule set's `init` as key/value pairs.
    pub config: BTreeMap<String, String>,
    /// Overrides of the limits.
    pub limits: Option<Limits>,
    /// Load the file but do not run it.
    pub disabled: bool,
}

/// Where results go.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct OutputConfig {
    /// Directory of the JSON lines files (`<table>.jsonl`, `alerts.jsonl`,
    /// `dead_letter.jsonl`, `late.jsonl`).
    pub dir: PathBuf,
    /// The live console summary: `auto` (when stderr is a terminal), `always`, `never`.
    pub console: ConsoleMode,
    /// Which sinks each output stream goes to: a table name, `alerts`,
    /// `dead_letter` or `late`, mapped to a list of `jsonl` and `kafka`;
    /// `"*"` is every stream not named.
    pub routes: BTreeMap<String, Vec<SinkKind>>,
    /// A dead letter keeps at most this many bytes of its record's raw
    /// bytes; a longer record is cut, with its size and SHA-256 kept, so
    /// that every dead letter fits in a Kafka message.
    pub max_raw_bytes: usize,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("edge-out"),
            console: ConsoleMode::Auto,
            routes: BTreeMap::from([("*".to_string(), vec![SinkKind::Jsonl])]),
            max_raw_bytes: 65_536,
        }
    }
}

/// A kind of sink.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum SinkKind {
    /// JSON lines files in `output.dir`.
    Jsonl,
    /// Kafka topics (`[kafka.topics]`).
    Kafka,
    /// PostgreSQL tables (`[postgres]`), upserted by `_id`.
    Postgres,
    /// ClickHouse tables (`[clickhouse]`), `ReplacingMergeTree` by key.
    Clickhouse,
}

impl OutputConfig {
    /// The sinks of a stream. `raw` and `clean` go only where they are
    /// named: `"*"` does not include them.
    pub fn sinks_of(&self, stream: &str) -> &[SinkKind] {
        self.routes
            .get(stream)
            .or_else(|| {
                (!matches!(stream, "raw" | "clean"))
                    .then(|| self.routes.get("*"))
                    .flatten()
            })
            .map_or(&[], Vec::as_slice)
    }

    /// Every sink some stream goes to.
    pub fn used_sinks(&self) -> Vec<SinkKind> {
        let mut all: Vec<SinkKind> = self.routes.values().flatten().copied().collect();
        all.sort();
        all.dedup();
        all
    }
}

/// When to show the live console summary.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ConsoleMode {
    /// When stderr is a terminal; a line every 5 s otherwise.
    #[default]
    Auto,
    /// Always redraw in place.
    Always,
    /// Only the final summary.
    Never,
}

/// Dimension tables.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct DimensionsConfig {
    /// JSON lines of customers (`customer_id`, `tier`, `segment`,
    /// `signup_date`, `country`, `city`).
    pub customers: Option<PathBuf>,
    /// JSON lines of merchants (`merchant_id`, `name`, `category`, `country`, `city`).
    pub merchants: Option<PathBuf>,
    /// A Kafka topic of customers (plain JSON rows or Debezium change
    /// events), read from the beginning and followed while edge runs.
    pub customers_topic: Option<String>,
    /// A Kafka topic of merchants, like `customers-topic`.
    pub merchants_topic: Option<String>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        // Substitute the environment in string values only (not in comments).
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
        substitute_table(&mut table).map_err(|var| ConfigError::MissingVar {
            path: path.to_path_buf(),
            var,
        })?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_string(),
            })
        };
        if self.checkpoint.keep == 0 {
            return invalid(
                "checkpoint.keep",
                "must be at least 1 (to turn checkpoints off, set checkpoint.interval-ms = 0)",
            );
        }
        if self.engine.workers > KEY_GROUPS_MAX {
            return invalid(
                "engine.workers",
                "must be at most 128 (the number of key groups); 0 uses every core",
            );
        }
        if self.source.repartition {
            if self.source.kind != SourceKind::Kafka {
                return invalid(
                    "source.repartition",
                    "needs a Kafka source (kind = \"kafka\"): members share a consumer group",
                );
            }
            if !(1..=KEY_GROUPS_MAX as i32).contains(&self.source.repartition_partitions) {
                return invalid("source.repartition-partitions", "must be between 1 and 128");
            }
        }
        if self.source.repartition && self.postgres.exactly_once {
            return invalid(
                "postgres.exactly-once",
                "cannot be used with source.repartition: the members of a repartitioned group \
                 keep their checkpoints in checkpoint.dir, where a member taking over \
                 partitions finds them; turn exactly-once off (rows upserted by _id land once)",
            );
        }
        let cooperative = (self.kafka.options.iter())
            .any(|(k, v)| k == "partition.assignment.strategy" && v.contains("cooperative"));
        if self.source.repartition && cooperative {
            return invalid(
                "kafka.options",
                "partition.assignment.strategy cannot be cooperative with source.repartition: a \
                 member given partitions rolls all of its own back to their checkpoints, which \
                 needs the eager protocol (range or roundrobin, the default)",
            );
        }
        for hook in &self.webhooks {
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                return invalid(
                    "webhooks.url",
                    &format!(
                        "{:?} is not an http:// or https:// URL",
                        shown_url(&hook.url)
                    ),
                );
            }
            if hook.batch_max == 0 || hook.queue == 0 || hook.max_per_minute == 0 {
                return invalid(
                    "webhooks.batch-max",
                    "batch-max, queue and max-per-minute must be at least 1",
                );
            }
        }
        if self.engine.batch_size == 0 || self.engine.batch_size > 65_536 {
            return invalid("engine.batch-size", "must be between 1 and 65536");
        }
        if self.engine.max_open_windows == 0
            || self.engine.max_keyed_states == 0
            || self.engine.max_collect_events == 0
        {
            return invalid(
                "engine.max-open-windows",
                "max-open-windows, max-keyed-states and max-collect-events must be at least 1",
            );
        }
        if self.engine.out_of_orderness_ms < 0 {
            return invalid("engine.out-of-orderness-ms", "must not be negative");
        }
        if !(0.0..=1.0).contains(&self.generator.dirty) {
            return invalid("generator.dirty", "must be a fraction between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.generator.fraud) {
            return invalid("generator.fraud", "must be a fraction between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.generator.customer_churn)
            || !(0.0..=1.0).contains(&self.generator.device_churn)
        {
            return invalid(
                "generator.customer-churn",
                "customer-churn and device-churn must be fractions between 0 and 1",
            );
        }
        if self.generator.customers == 0 || self.generator.merchants == 0 {
            return invalid(
                "generator.customers",
                "customers and merchants must be at least 1",
            );
        }
        if self.generator.traffic == 0 {
            return invalid(
                "generator.traffic",
                "must be at least 1 event per simulated second",
            );
        }
        if self.generator.start_ms().is_none() {
            return invalid(
                "generator.start",
                "must be an ISO-8601 time such as 2026-01-05T00:00:00Z, or now",
            );
        }
        if !matches!(self.decode.risk_score_scale, 1 | 100) {
            return invalid(
                "decode.risk-score-scale",
                "must be 100 (scores from 0 to 100, as the reference systems send) or 1 (from 0 to 1)",
            );
        }
        let levels = self.decode.risk_levels();
        let scale = f64::from(self.decode.risk_score_scale);
        if !(0.0 <= levels.medium
            && levels.medium <= levels.high
            && levels.high <= levels.critical
            && levels.critical <= scale)
        {
            return invalid(
                "decode.risk-levels",
                &format!(
                    "thresholds must rise from medium to high to critical within [0, {scale}] \
                     (decode.risk-score-scale); the reference uses medium = 30, high = 60, critical = 80"
                ),
            );
        }
        if !(1..=262_144).contains(&self.output.max_raw_bytes) {
            return invalid(
                "output.max-raw-bytes",
                "must be between 1 and 262144, so that a dead letter fits in a Kafka message",
            );
        }
        if self.decode.max_field_bytes == 0 {
            return invalid("decode.max-field-bytes", "must be at least 1");
        }
        // The clean stream holds amounts as money with 8 places in 64 bits.
        if !self.output.sinks_of("clean").is_empty()
            && self.decode.max_amount > Decimal::from(92_000_000_000u64)
        {
            return invalid(
                "decode.max-amount",
                "must be at most 92000000000 when the clean stream is routed \
                 (its amounts are stored exactly with 8 decimal places)",
            );
        }
        if self.postgres.exactly_once {
            if self.source.kind != SourceKind::Kafka {
                return invalid(
                    "postgres.exactly-once",
                    "needs a kafka source (offsets are what it stores); turn it off for gen and file sources",
                );
            }
            if self.output.used_sinks() != [SinkKind::Postgres] {
                return invalid(
                    "postgres.exactly-once",
                    "needs every stream routed to postgres only (set [output.routes] \"*\" = [\"postgres\"]); \
                     other sinks would repeat records after a restart",
                );
            }
        }
        if self.source.kind == SourceKind::Kafka && self.source.topics.is_empty() {
            return invalid(
                "source.topics",
                "a kafka source needs topics (or use --source kafka://BROKERS/TOPIC)",
            );
        }
        if self.source.kind == SourceKind::Kafka && self.kafka.brokers.trim().is_empty() {
            return invalid(
                "kafka.brokers",
                "set the bootstrap brokers, as in 127.0.0.1:9092",
            );
        }
        if self.source.kind == SourceKind::File && self.source.path.is_none() {
            return invalid(
                "source.path",
                "a file source needs a path (or use --source file:PATH)",
            );
        }
        let names: Vec<&String> = self.rules.rule.keys().collect();
        for (i, a) in names.iter().enumerate() {
            if let Some(b) = names[i + 1..].iter().find(|b| same_rule_name(a, b)) {
                return invalid(
                    "rules.rule",
                    &format!(
                        "[rules.rule.{a}] and [rules.rule.{b}] name the same rule set ('-' and '_' \
                         are the same in rule set names); merge them into one"
                    ),
                );
            }
        }
        let limits = std::iter::once(&self.rules.limits)
            .chain(self.rules.rule.values().filter_map(|r| r.limits.as_ref()));
        for l in limits {
            if l.memory_mib == 0
                || l.deadline_ms == 0
                || l.max_output_bytes == 0
                || l.state_mib == 0
            {
                return invalid(
                    "rules.limits",
                    "memory-mib, deadline-ms, max-output-bytes and state-mib must be at least 1",
                );
            }
        }
        self.admin.listen()?;
        Ok(())
    }
}

fn substitute_table(table: &mut toml::Table) -> Result<(), String> {
    for (_, value) in table.iter_mut() {
        substitute_value(value)?;
    }
    Ok(())
}

fn substitute_value(value: &mut toml::Value) -> Result<(), String> {
    match value {
        toml::Value::String(s) => *s = substitute_env(s, |v| std::env::var(v).ok())?,
        toml::Value::Array(items) => items.iter_mut().try_for_each(substitute_value)?,
        toml::Value::Table(t) => substitute_table(t)?,
        _ => {}
    }
    Ok(())
}

/// Replaces `${VAR}` and `${VAR:-default}`; `Err(var)` names a missing variable.
pub fn substitute_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let (var, default) = match inner.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (inner, None),
        };
        match lookup(var)
            .filter(|v| !v.is_empty())
            .or(default.map(str::to_string))
        {
            Some(value) => out.push_str(&value),
            None => return Err(var.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configs_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files: Vec<_> = std::fs::read_dir(root.join("examples"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.push(root.join("docker/edge.toml"));
        assert!(files.len() >= 5);
        for file in files {
            let config = Config::load(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            config
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
        let compose = Config::load(&root.join("docker/edge.toml")).unwrap();
        assert_eq!(compose.admin.hosts, ["edge"]);
        assert!(compose.engine.startup_wait_secs > 0);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = toml::from_str::<Config>("[engine]\nbatch-sise = 5\n").unwrap_err();
        assert!(err.to_string().contains("batch-sise"), "{err}");
    }

    #[test]
    fn settings_that_cannot_work_together_are_refused_by_key() {
        let key = |c: &Config| match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        let mut c = Config::default();
        c.postgres.exactly_once = true;
        assert_eq!(key(&c), "postgres.exactly-once");
        c.source.kind = SourceKind::Kafka;
        c.source.topics = vec!["t".into()];
        // Still routed to jsonl (the default).
        assert_eq!(key(&c), "postgres.exactly-once");
        c.output.routes = BTreeMap::from([("*".into(), vec![SinkKind::Postgres])]);
        c.validate().unwrap();

        let mut c = Config::default();
        c.decode.max_amount = Decimal::from(100_000_000_000u64);
        c.validate().unwrap();
        c.output
            .routes
            .insert("clean".into(), vec![SinkKind::Jsonl]);
        assert_eq!(key(&c), "decode.max-amount");
    }

    #[test]
    fn webhooks_are_read_and_a_bad_one_is_refused_without_its_secret() {
        let text = "[[webhooks]]\nurl = \"https://hooks.slack.com/services/T/B/secret\"\n\
                    format = \"slack\"\nkinds = [\"RAPID_ORDERS\"]\nmin-severity = \"high\"\n";
        let c: Config = toml::from_str(text).unwrap();
        c.validate().unwrap();
        let hook = &c.webhooks[0];
        assert_eq!(hook.format, WebhookFormat::Slack);
        assert_eq!(hook.min_severity, SeverityName::High);
        assert_eq!((hook.batch_max, hook.retries), (20, 5));
        let bad: Config =
            toml::from_str("[[webhooks]]\nurl = \"hooks.slack.com/T/secret\"\n").unwrap();
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("webhooks.url") && !err.contains("secret"),
            "{err}"
        );
        let err =
            toml::from_str::<Config>("[[webhooks]]\nurl = \"http://x\"\nformat = \"teams\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("slack") && err.contains("discord"), "{err}");
    }

    #[test]
    fn repartitioning_is_refused_where_it_cannot_work() {
        let refusal = |c: &Config| match c.validate() {
            Err(ConfigError::Invalid { key, message }) => format!("{key}: {message}"),
            other => panic!("{other:?}"),
        };
        let mut c = Config::default();
        c.source.repartition = true;
        assert!(
            refusal(&c).contains("needs a Kafka source"),
            "{}",
            refusal(&c)
        );
        c.source.kind = SourceKind::Kafka;
        c.source.topics = vec!["t".into()];
        c.validate().unwrap();
        c.source.repartition_partitions = 129;
        assert!(refusal(&c).starts_with("source.repartition-partitions"));

        c.source.repartition_partitions = 16;
        c.postgres.exactly_once = true;
        assert!(refusal(&c).starts_with("postgres.exactly-once"));
        c.postgres.exactly_once = false;
        (c.kafka.options).insert(
            "partition.assignment.strategy".into(),
            "cooperative-sticky".into(),
        );
        assert!(refusal(&c).contains("eager protocol"), "{}", refusal(&c));

        // Checkpoints carry held events: event-time order goes with them.
        let mut c = Config::default();
        c.engine.order = Order::EventTime;
        c.validate().unwrap();
        c.source.kind = SourceKind::Kafka;
        c.source.topics = vec!["t".into()];
        c.validate().unwrap();
        let parsed: Config = toml::from_str("[engine]\norder = \"event-time\"\n").unwrap();
        assert_eq!(parsed.engine.order, Order::EventTime);
    }

    #[test]
    fn a_full_file_parses() {
        let c: Config = toml::from_str(
            r#"
            [source]
            kind = "file"
            path = "events.csv"
            [engine]
            batch-size = 256
            [rules]
            paths = ["guests/*.wasm"]
            [rules.limits]
            deadline-ms = 50
            [rules.rule.fraud.config]
            rapid-orders-limit = "7"
            [decode.fields]
            customer_id = "user.id"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.source.format(), Format::Csv);
        assert_eq!(c.engine.batch_size, 256);
        assert_eq!(c.rules.limits.deadline_ms, 50);
        assert_eq!(c.rules.limits.memory_mib, 64);
        assert_eq!(c.rules.rule["fraud"].config["rapid-orders-limit"], "7");
    }

    #[test]
    fn the_documented_example_is_valid_and_matches_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/edge.toml");
        let c = Config::load(&path).unwrap();
        let d = Config::default();
        assert_eq!(c.generator, d.generator);
        assert_eq!(c.decode, d.decode);
        assert_eq!(c.engine, d.engine);
        assert_eq!(c.rules.limits, d.rules.limits);
        assert_eq!(c.output, d.output);
        assert_eq!(c.kafka, d.kafka);
        assert_eq!(c.postgres, d.postgres);
        assert_eq!(c.clickhouse, d.clickhouse);
        assert_eq!(c.source, d.source);
        assert_eq!(c.dimensions, d.dimensions);
        assert_eq!(c.checkpoint, d.checkpoint);
        assert_eq!(c.rules.compile_cache, d.rules.compile_cache);
        let docker = Config::load(&path.with_file_name("../docker/edge.toml")).unwrap();
        assert_eq!(
            docker.checkpoint_dir(),
            Some(PathBuf::from("/var/lib/edge/checkpoints"))
        );
        let both = Config::load(&path.with_file_name("clickhouse-postgres.toml")).unwrap();
        both.validate().unwrap();
        for stream in ["merchant_metrics", "alerts", "dead_letter", "clean"] {
            assert_eq!(
                both.output.sinks_of(stream),
                [SinkKind::Clickhouse, SinkKind::Postgres]
            );
        }
        assert_eq!(both.output.sinks_of("raw"), [SinkKind::Postgres]);
        let kafka = Config::load(&path.with_file_name("kafka.toml")).unwrap();
        assert_eq!(kafka.source.kind, SourceKind::Kafka);
        assert_eq!(kafka.output.sinks_of("merchant_metrics"), [SinkKind::Kafka]);
    }

    #[test]
    fn env_substitution() {
        let env = |v: &str| (v == "BROKERS").then(|| "127.0.0.1:9092".to_string());
        assert_eq!(
            substitute_env("a=${BROKERS}", env).unwrap(),
            "a=127.0.0.1:9092"
        );
        assert_eq!(substitute_env("a=${NOPE:-x}", env).unwrap(), "a=x");
        assert_eq!(substitute_env("a=${NOPE}", env).unwrap_err(), "NOPE");
    }

    #[test]
    fn out_of_range_values_are_named() {
        let mut c = Config::default();
        c.engine.batch_size = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("engine.batch-size"));
    }

    #[test]
    fn source_flag() {
        let mut s = SourceConfig::default();
        assert_eq!(s.apply_flag("gen"), Ok(None));
        assert_eq!(s.kind, SourceKind::Gen);
        assert_eq!(s.apply_flag("file:x.jsonl"), Ok(None));
        assert_eq!(s.path.clone().unwrap(), PathBuf::from("x.jsonl"));
        // A file named by the flag keeps the config's format.
        s.format = Some(Format::Debezium);
        assert_eq!(s.apply_flag("file:changes.jsonl"), Ok(None));
        assert_eq!(s.format(), Format::Debezium);
        assert!(s.apply_flag("kafka").is_err());
        let brokers = s.apply_flag("kafka://h1:9092,h2:9092/a.b, c").unwrap();
        assert_eq!(brokers.as_deref(), Some("h1:9092,h2:9092"));
        assert_eq!(
            (s.kind, s.topics.clone()),
            (SourceKind::Kafka, vec!["a.b".to_string(), "c".to_string()])
        );
        assert!(s.apply_flag("kafka://h1:9092").is_err());
        assert!(s.apply_flag("kafka://h1:9092/").is_err());
    }

    #[test]
    fn routes_default_to_jsonl_and_name_streams() {
        let mut o = OutputConfig::default();
        assert_eq!(o.sinks_of("merchant_metrics"), [SinkKind::Jsonl]);
        o.routes
            .insert("alerts".into(), vec![SinkKind::Jsonl, SinkKind::Kafka]);
        assert_eq!(o.sinks_of("alerts"), [SinkKind::Jsonl, SinkKind::Kafka]);
        assert_eq!(o.used_sinks(), [SinkKind::Jsonl, SinkKind::Kafka]);
        assert_eq!(
            KafkaTopics::default().topic("merchant_metrics"),
            "fintech.analytics.merchant_metrics"
        );
        assert_eq!(
            KafkaTopics::default().topic("dead_letter"),
            "dead_letter_queue"
        );
    }

    #[test]
    fn a_rule_sets_section_is_found_by_its_name_or_its_file_stem() {
        let c: Config =
            toml::from_str("[rules.rule.big-spender.config]\nfactor = \"4\"\n").unwrap();
        for name in ["big-spender", "big_spender"] {
            assert_eq!(c.rules.of(name).config["factor"], "4", "{name}");
        }
        assert!(c.rules.section("bigspender").is_none());
        assert!(c.rules.section("big-spender2").is_none());
        let both: Config =
            toml::from_str("[rules.rule.big-spender]\n[rules.rule.big_spender]\n").unwrap();
        let error = both.validate().unwrap_err().to_string();
        assert!(error.contains("name the same rule set"), "{error}");
    }
}
