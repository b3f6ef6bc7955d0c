//! The `edge` command line: parses, sets up logging, calls the library.

use clap::{Args, Parser, Subcommand, ValueEnum};
use edge::config::ConsoleMode;
use std::path::PathBuf;
use std::process::ExitCode;

/// The pipeline allocates many small, short-lived strings and maps; mimalloc
/// serves them markedly faster than the system allocator. Built without its
/// transparent-huge-page advice (`no_thp`): a huge page is zeroed whole when
/// first touched, which cost more than the TLB misses it saves.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Real-time payments analytics: events in, sandboxed WebAssembly rule sets,
/// event-time windows and keyed state, results out.
///
/// With nothing configured, `edge run --rules guests/*.wasm` generates
/// realistic payment traffic, runs the rule sets, shows a live summary and
/// writes JSON lines to ./edge-out/.
#[derive(Parser)]
#[command(name = "edge", version, propagate_version = true)]
struct Cli {
    /// Log filter (tracing syntax: info, warn, edge=debug, ...).
    #[arg(long, global = true, env = "EDGE_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run rule sets over a stream of payment events.
    ///
    /// Output files in --out-dir are appended to, never truncated. Ctrl-C or
    /// SIGTERM stops the run and flushes every sink; a second one exits at
    /// once, saying what may be lost. Reading a file or Kafka, the run
    /// checkpoints its state (see --checkpoint-dir): started again with the
    /// same command after a stop or a crash, it resumes from there.
    Run(RunArgs),
    /// Generate realistic payment traffic: JSON lines to a file or standard
    /// output, or records (plain or Debezium change events) to a Kafka topic.
    Gen(GenArgs),
    /// Score a run's alerts against the fraud the generator planted
    /// (`edge gen --labels`): per alert kind the alerts, alerts per 1,000
    /// events and precision (the share raised on a planted transaction);
    /// per planted pattern the incidents, those found by an alert on any
    /// of their transactions (recall), and which kinds found them.
    Eval {
        /// The run's alerts (alerts.jsonl in its output directory).
        #[arg(long, value_name = "FILE")]
        alerts: PathBuf,
        /// The labels `edge gen --labels` wrote for the run's input.
        #[arg(long, value_name = "FILE")]
        labels: PathBuf,
        /// Events the run processed (its summary's `events`).
        #[arg(long, value_name = "N")]
        events: u64,
    },
    /// Inspect rule set components.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Inspect the checkpoints a run keeps to resume after a crash or a stop.
    Checkpoint {
        #[command(subcommand)]
        command: CheckpointCommand,
    },
}

#[derive(Subcommand)]
enum CheckpointCommand {
    /// Show what each checkpoint in DIR holds (per rule set: keys, bytes,
    /// open windows; the source's position; the watermark; the rule set
    /// versions), or why it cannot be used; the newest usable one is where
    /// the next `edge run` resumes.
    Inspect {
        /// The checkpoint directory (checkpoint.dir; by default
        /// `checkpoints` in the output directory).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Print each component's manifest and imports, or exactly why it is not a valid rule set.
    Check {
        /// Rule set files or globs.
        #[arg(required = true, value_name = "WASM")]
        paths: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Console {
    Auto,
    Always,
    Never,
}

#[derive(Args)]
struct RunArgs {
    /// Rule set components: paths or globs (quoted globs are expanded too).
    /// They are watched while edge runs: a changed file is compiled,
    /// validated and swapped in between two batches (keyed state and open
    /// windows carried over), a new file is added, a deleted one removed; a
    /// file that is not a valid rule set is refused and the running version
    /// kept.
    #[arg(long, num_args = 1.., value_name = "PATH|GLOB")]
    rules: Vec<String>,
    /// Config file (edge.toml; examples/edge.toml lists every key): the
    /// source, limits, and where each output stream goes ([output.routes]
    /// to jsonl, kafka, postgres, clickhouse; e.g.
    /// examples/clickhouse-postgres.toml). Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Event source: `gen` (built-in generator, the default), `file:PATH`
    /// (JSON lines or .csv) or `kafka://BROKERS/TOPIC[,TOPIC]` (a consumer
    /// group; group and other settings in `[source]` of the config).
    #[arg(long, value_name = "gen|file:PATH|kafka://BROKERS/TOPIC")]
    source: Option<String>,
    /// The records' format (`[source] format`): `json`, `csv` or
    /// `debezium`. Without it, the config's, else `csv` for a .csv file
    /// and `json` otherwise.
    #[arg(long, value_enum)]
    format: Option<edge::model::Format>,
    /// Directory for the JSON lines output (default ./edge-out); files are
    /// appended to.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Stop after this many records, then fire every open window and flush.
    #[arg(long, value_name = "N")]
    max_events: Option<u64>,
    /// Stop after this many seconds, then fire every open window and flush.
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Generator: events per second (0: as fast as possible; default 10000).
    #[arg(long, value_name = "N")]
    rate: Option<u64>,
    /// Generator: seed (the same seed gives the same events).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Generator: fraction of dirty records (default 0.01).
    #[arg(long, value_name = "FRACTION")]
    dirty: Option<f64>,
    /// Events per micro-batch (default 16384; a slower stream is processed
    /// every batch-timeout-ms).
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Worker threads for the rule sets (default: one per core). Each owns
    /// the keys of a range of 128 key groups, and every event reaches the
    /// workers owning its customer, merchant and other keys: the outputs
    /// are the same for any number. A checkpoint restores with any number.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// The order a key's events reach the rule sets: as read (arrival), or
    /// by event time once the watermark passes them (event-time: the same
    /// results whatever the partitioning or the number of members, alerts
    /// later by up to the out-of-orderness bound).
    #[arg(long, value_enum)]
    order: Option<edge::config::Order>,
    /// Live console summary.
    #[arg(long, value_enum)]
    console: Option<Console>,
    /// Address of the status page (http://ADDR/) and the admin HTTP API
    /// (GET /status, /health, /rules, /metrics; POST
    /// /rules/NAME/reload|disable|enable), or `off`. Default 127.0.0.1:8787.
    #[arg(long, value_name = "ADDR|off")]
    admin: Option<String>,
    /// Bearer token the admin API requires (all endpoints but /health).
    #[arg(
        long,
        env = "EDGE_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    admin_token: Option<String>,
    /// Do not watch the rule set files: changes take effect at the next
    /// start (or through POST /rules/NAME/reload).
    #[arg(long)]
    no_watch: bool,
    /// Checkpoint directory (default: `checkpoints` in --out-dir). A run
    /// reading a file or Kafka checkpoints its state there every
    /// checkpoint.interval-ms (default 5000) and when stopped; started
    /// again with the same command after a crash or a stop, it resumes
    /// from the newest checkpoint. A run that reaches the end of its
    /// input (or --max-events, --duration) removes its checkpoints.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// How often to checkpoint, ms; 0 turns checkpoints off (a restart
    /// then starts with empty state).
    #[arg(long, value_name = "MS")]
    checkpoint_interval: Option<u64>,
}

#[derive(Args)]
struct GenArgs {
    /// Output file (default: standard output).
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Number of records.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    events: u64,
    /// Records per second (0: as fast as possible).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    rate: u64,
    /// Event time of the first record: an ISO-8601 time, or `now` (a live
    /// stream: with `--traffic` equal to `--rate`, event time then keeps
    /// pace with the wall clock).
    #[arg(long, default_value = "2026-01-05T00:00:00Z", value_name = "TIME")]
    start: String,
    /// Average records per second of event time; event time runs
    /// `rate / traffic` times faster than the wall clock.
    #[arg(long, default_value_t = 50, value_name = "N")]
    traffic: u64,
    /// Seed (the same seed gives the same records).
    #[arg(long, default_value_t = 42, value_name = "N")]
    seed: u64,
    /// Fraction of dirty records (malformed, missing fields, negative amounts, ...).
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    dirty: f64,
    /// Fraction of events in planted fraud patterns.
    #[arg(long, default_value_t = 0.01, value_name = "FRACTION")]
    fraud: f64,
    /// Number of customers.
    #[arg(long, default_value_t = 5_000, value_name = "N")]
    customers: u32,
    /// Also write the customers (JSON lines) for `[dimensions] customers`.
    #[arg(long, value_name = "PATH")]
    customers_out: Option<PathBuf>,
    /// Also write the merchants (JSON lines) for `[dimensions] merchants`.
    #[arg(long, value_name = "PATH")]
    merchants_out: Option<PathBuf>,
    /// Produce to Kafka instead: `kafka://BROKERS/TOPIC`. Customers and
    /// merchants go to their topics first (`--customers-topic`, `--merchants-topic`).
    /// Exits with an error if a record was not delivered or was refused by
    /// the cluster (larger than a message may be, say).
    #[arg(long, value_name = "kafka://BROKERS/TOPIC", conflicts_with = "out")]
    to: Option<String>,
    /// With `--to`: partitions of topics that do not exist yet.
    #[arg(long, default_value_t = 4, value_name = "N")]
    partitions: i32,
    /// With `--to`: the customers topic.
    #[arg(long, default_value = "fintech.customers", value_name = "TOPIC")]
    customers_topic: String,
    /// With `--to`: the merchants topic.
    #[arg(long, default_value = "fintech.merchants", value_name = "TOPIC")]
    merchants_topic: String,
    /// With `--to`: the Kafka client settings of this config file's
    /// `[kafka]` (its `options`: TLS, SASL, ...); the URL names the brokers.
    #[arg(long, value_name = "PATH", requires = "to")]
    config: Option<PathBuf>,
    /// Record format: `json` (the reference shape) or `debezium` (change
    /// events with the schema, money as `precise` decimals).
    #[arg(long, value_enum, default_value = "json")]
    format: GenFormat,
    /// Also write, per planted fraud record, its transaction id, pattern
    /// (`burst`, `far_location`, `amount_spike`) and incident number, as
    /// JSON lines: what `edge eval --labels` scores alerts against.
    #[arg(long, value_name = "PATH")]
    labels: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum GenFormat {
    Json,
    Debezium,
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = edge::app::load_config(args.config.as_deref())?;
    if !args.rules.is_empty() {
        config.rules.paths = args.rules;
    }
    if let Some(source) = &args.source {
        if let Some(brokers) = config
            .source
            .apply_flag(source)
            .map_err(anyhow::Error::msg)?
        {
            config.kafka.brokers = brokers;
        }
    }
    if let Some(format) = args.format {
        config.source.format = Some(format);
    }
    if let Some(dir) = args.out_dir {
        config.output.dir = dir;
    }
    if let Some(n) = args.max_events {
        config.engine.max_events = n;
    }
    if let Some(n) = args.duration {
        config.engine.duration_secs = n;
    }
    if let Some(n) = args.rate {
        config.generator.rate = n;
    }
    if let Some(n) = args.seed {
        config.generator.seed = n;
    }
    if let Some(f) = args.dirty {
        config.generator.dirty = f;
    }
    if let Some(n) = args.workers {
        config.engine.workers = n;
    }
    if let Some(order) = args.order {
        config.engine.order = order;
    }
    if let Some(n) = args.batch_size {
        config.engine.batch_size = n;
    }
    if let Some(c) = args.console {
        config.output.console = match c {
            Console::Auto => ConsoleMode::Auto,
            Console::Always => ConsoleMode::Always,
            Console::Never => ConsoleMode::Never,
        };
    }
    if let Some(addr) = args.admin {
        config.admin.addr = Some(addr);
    }
    if let Some(token) = args.admin_token {
        config.admin.token = token;
    }
    if args.no_watch {
        config.rules.watch = false;
    }
    if let Some(dir) = args.checkpoint_dir {
        config.checkpoint.dir = Some(dir);
    }
    if let Some(ms) = args.checkpoint_interval {
        config.checkpoint.interval_ms = ms;
    }
    let stop = edge::app::stop_on_signal();
    edge::app::run(&config, stop)?;
    Ok(())
}

fn gen(args: GenArgs) -> anyhow::Result<()> {
    let generator = edge::config::GeneratorConfig {
        seed: args.seed,
        rate: args.rate,
        start: args.start.clone(),
        traffic: args.traffic,
        dirty: args.dirty,
        fraud: args.fraud,
        customers: args.customers,
        ..Default::default()
    };
    let config = edge::config::Config {
        generator: generator.clone(),
        ..Default::default()
    };
    config.validate()?;
    let to_kafka = match &args.to {
        None => None,
        Some(url) => {
            let rest = url
                .strip_prefix("kafka://")
                .ok_or_else(|| anyhow::anyhow!("--to {url:?}: expected kafka://BROKERS/TOPIC"))?;
            let (brokers, topics) = edge::config::parse_kafka_url(rest)
                .map_err(|e| anyhow::anyhow!("--to {url:?}: {e}"))?;
            let [topic] = topics.as_slice() else {
                anyhow::bail!("--to {url:?}: name one topic");
            };
            let base = match &args.config {
                Some(path) => edge::config::Config::load(path)?.kafka,
                None => Default::default(),
            };
            let kafka = edge::config::KafkaConfig {
                brokers,
                partitions: args.partitions,
                ..base
            };
            Some((kafka, topic.clone()))
        }
    };
    let dimension_topics = to_kafka
        .is_some()
        .then(|| (args.customers_topic.clone(), args.merchants_topic.clone()));
    let written = edge::app::gen(&edge::app::GenOptions {
        generator,
        events: args.events,
        out: args.out.clone(),
        customers: args.customers_out,
        merchants: args.merchants_out,
        to_kafka,
        dimension_topics,
        debezium: args.format == GenFormat::Debezium,
        labels: args.labels,
    })?;
    if let Some(out) = args.out {
        eprintln!("wrote {written} records to {}", out.display());
    } else if let Some(to) = &args.to {
        eprintln!("produced {written} records to {to}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log written to a pipe or a file
    // stays plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Gen(args) => gen(args),
        Command::Eval {
            alerts,
            labels,
            events,
        } => edge::app::evaluate(&alerts, &labels, events).map(|e| print!("{e}")),
        Command::Checkpoint {
            command: CheckpointCommand::Inspect { dir },
        } => edge::app::inspect_checkpoints(&dir).map(|report| print!("{report}")),
        Command::Rules {
            command: RulesCommand::Check { paths },
        } => edge::app::expand_rules(&paths).and_then(|paths| {
            let (report, ok) = edge::app::check(&paths)?;
            print!("{report}");
            if ok {
                Ok(())
            } else {
                Err(anyhow::anyhow!("some files are not valid rule sets"))
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
