//! Helpers shared by edge's integration tests and benches: the compiled
//! guests, the `edge` binary, and readers for the output files.

use std::path::{Path, PathBuf};

/// Paths of the compiled guest components (built by `build.rs`).
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));

    /// The five rule sets the comparison with Flink and Spark runs.
    pub const RULE_SETS: [&str; 5] = [FRAUD, ANOMALY, COMPLIANCE, LIFECYCLE, MERCHANT];

    /// The rule sets of the reference's other tables (transaction,
    /// dashboard and time-pattern metrics, risk analytics and stats,
    /// geography, daily aggregates).
    pub const DASHBOARDS: [&str; 4] = [METRICS, RISK, GEOGRAPHY, DAILY];

    /// The e-commerce rule sets (`examples/shop.toml` maps their input).
    pub const SHOP: [&str; 2] = [ORDERS, SALES];
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `edge` command line (built from `host/src/main.rs` for these tests).
pub fn edge_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(format!("edge-under-test{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "{} is missing", bin.display());
    bin
}

/// `edge run` with the five rule sets and `config`, writing into `out`,
/// without the console or the admin API (add flags to it).
pub fn edge_run(config: &Path, out: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(edge_bin());
    c.arg("run");
    for r in guests::RULE_SETS {
        c.args(["--rules", r]);
    }
    c.arg("--config")
        .arg(config)
        .arg("--out-dir")
        .arg(out)
        .args(["--console", "never", "--admin", "off"]);
    c
}

/// Reads a JSON lines file into values (an absent file reads as empty).
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    parse_jsonl(path, &text)
}

/// Reads the complete lines of a JSON lines file that a running edge is
/// still writing: a last line without its newline is not read yet.
pub fn read_jsonl_so_far(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    parse_jsonl(path, text.rfind('\n').map_or("", |end| &text[..end]))
}

fn parse_jsonl(path: &Path, text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad line {l}: {e}", path.display()))
        })
        .collect()
}

/// A fixture file under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Runs the pipeline in-process over `rules`, writing to a fresh temporary
/// directory; `tweak` adjusts the config first.
pub fn run_pipeline(
    rules: &[&str],
    tweak: impl FnOnce(&mut edge::config::Config),
) -> anyhow::Result<(tempfile::TempDir, edge::engine::Summary)> {
    let out = tempfile::tempdir()?;
    let mut config = edge::config::Config::default();
    config.rules.paths = rules.iter().map(|r| r.to_string()).collect();
    config.output.dir = out.path().to_path_buf();
    config.output.console = edge::config::ConsoleMode::Never;
    config.generator.rate = 0;
    // In-process runs share the process: no admin API, no file watching.
    config.admin.addr = Some("off".into());
    config.rules.watch = false;
    tweak(&mut config);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let summary = edge::app::run(&config, stop)?;
    Ok((out, summary))
}

/// A file source config for `path`.
pub fn file_source(path: &Path) -> edge::config::SourceConfig {
    edge::config::SourceConfig {
        kind: edge::config::SourceKind::File,
        path: Some(path.to_path_buf()),
        format: None,
        ..Default::default()
    }
}

/// The value of a service variable set by `scripts/test` (a server URL or
/// binary). Outside CI a test without it is skipped and says so; in CI its
/// absence fails the test.
pub fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: run the suite with scripts/test")
        }
        _ => {
            eprintln!("skipped: {var} is not set (scripts/test sets it)");
            None
        }
    }
}

/// `n` events from the generator with `config`, one JSON line each.
pub fn generated_lines(config: &edge::config::GeneratorConfig, n: usize) -> Vec<String> {
    let mut g = edge::gen::Generator::new(config);
    (0..n)
        .map(|_| String::from_utf8(g.next_record().bytes).expect("generated UTF-8"))
        .collect()
}

/// The clean generated events of `seed` (what `edge run` reads from the
/// generator with `--seed SEED --dirty 0`).
pub fn clean_events(n: usize, seed: u64) -> Vec<String> {
    generated_lines(
        &edge::config::GeneratorConfig {
            dirty: 0.0,
            seed,
            ..Default::default()
        },
        n,
    )
}

/// [`clean_events`] written to `path`, one per line; returns the lines.
pub fn gen_events(path: &Path, n: usize, seed: u64) -> Vec<String> {
    let lines = clean_events(n, seed);
    std::fs::write(path, lines.join("\n")).expect("writing events");
    lines
}

/// `edge gen` traffic with dirty records (`gen` adds its flags: seed,
/// events, ...) in `dir/events.jsonl`, with its customers and merchants,
/// and a config in `dir/edge.toml` reading that file with those
/// dimensions, followed by `more` (TOML sections); returns the config.
pub fn file_with_dimensions(dir: &Path, gen: &[&str], more: &str) -> PathBuf {
    let input = dir.join("events.jsonl");
    let (customers, merchants) = (dir.join("customers.jsonl"), dir.join("merchants.jsonl"));
    let status = std::process::Command::new(edge_bin())
        .args(["gen", "--rate", "0", "--dirty", "0.02"])
        .args(gen)
        .arg("--out")
        .arg(&input)
        .arg("--customers-out")
        .arg(&customers)
        .arg("--merchants-out")
        .arg(&merchants)
        .env("EDGE_LOG", "warn")
        .status()
        .expect("edge gen");
    assert!(status.success(), "edge gen failed");
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\npath = \"{}\"\n[dimensions]\ncustomers = \"{}\"\n\
             merchants = \"{}\"\n{more}",
            input.display(),
            customers.display(),
            merchants.display()
        ),
    )
    .expect("writing the config");
    config
}

/// Database servers of a test's own, to stop and start again.
pub mod servers {
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A port no one listens on now.
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    fn wait_for_port(port: u16, what: &str) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{what} did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A ClickHouse server with its own data directory and ports.
    pub struct ClickHouse {
        bin: String,
        dir: tempfile::TempDir,
        ports: [u16; 3],
        /// Its HTTPS port, when it serves one.
        https: Option<u16>,
        child: std::sync::Mutex<Option<Child>>,
    }

    impl ClickHouse {
        /// Starts `clickhouse-server` from `bin`.
        pub fn start(bin: &str) -> Self {
            let server = Self {
                bin: bin.to_string(),
                dir: tempfile::tempdir().expect("tempdir"),
                ports: [free_port(), free_port(), free_port()],
                https: None,
                child: std::sync::Mutex::new(None),
            };
            server.start_again();
            server
        }

        /// The same, serving HTTPS too, with a certificate for `localhost`
        /// and `127.0.0.1` made for it ([`ClickHouse::ca`]).
        pub fn start_https(bin: &str) -> Self {
            let server = Self {
                bin: bin.to_string(),
                dir: tempfile::tempdir().expect("tempdir"),
                ports: [free_port(), free_port(), free_port()],
                https: Some(free_port()),
                child: std::sync::Mutex::new(None),
            };
            certificate(server.dir.path(), "server");
            server.start_again();
            if let Some(port) = server.https {
                wait_for_port(port, "ClickHouse (https)");
            }
            server
        }

        /// The HTTPS URL of a server started with [`ClickHouse::start_https`].
        pub fn https_url(&self) -> String {
            format!("https://localhost:{}", self.https.unwrap_or_default())
        }

        /// Its certificate, its own authority.
        pub fn ca(&self) -> std::path::PathBuf {
            self.dir.path().join("server.crt")
        }

        /// The HTTP URL.
        pub fn url(&self) -> String {
            format!("http://127.0.0.1:{}", self.ports[0])
        }

        /// Kills the server (as a crash would).
        pub fn stop(&self) {
            let child = self.child.lock().expect("server lock").take();
            if let Some(mut child) = child {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        /// Starts the server again on the same data and ports.
        pub fn start_again(&self) {
            let d = self.dir.path().display().to_string();
            let [http, tcp, inter] = self.ports;
            let child = Command::new(&self.bin)
                .arg("--config-file=/etc/clickhouse-server/config.xml")
                .arg("--")
                .arg(format!("--path={d}/"))
                .arg(format!("--tmp_path={d}/tmp/"))
                .arg(format!("--user_files_path={d}/user_files/"))
                .arg(format!("--format_schema_path={d}/format_schemas/"))
                .arg(format!("--http_port={http}"))
                .arg(format!("--tcp_port={tcp}"))
                .arg(format!("--interserver_http_port={inter}"))
                .arg("--listen_host=127.0.0.1")
                .arg(format!("--logger.log={d}/server.log"))
                .arg(format!("--logger.errorlog={d}/error.log"))
                .args(self.https.iter().flat_map(|port| {
                    [
                        format!("--https_port={port}"),
                        format!("--openSSL.server.certificateFile={d}/server.crt"),
                        format!("--openSSL.server.privateKeyFile={d}/server.key"),
                        "--openSSL.server.dhParamsFile=".to_string(),
                    ]
                }))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting clickhouse-server");
            *self.child.lock().expect("server lock") = Some(child);
            wait_for_port(http, "ClickHouse");
        }
    }

    impl Drop for ClickHouse {
        fn drop(&mut self) {
            self.stop();
        }
    }

    /// A PostgreSQL server with its own data directory and port, run as the
    /// `postgres` user when the tests run as root.
    pub struct Postgres {
        bindir: String,
        dir: tempfile::TempDir,
        port: u16,
        /// Whether it takes TLS connections only.
        tls: bool,
    }

    /// A self-signed certificate for `localhost` and `127.0.0.1`, made in
    /// `dir` with the `openssl` command: (certificate, key), PEM.
    pub fn certificate(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        let mut c = Command::new("openssl");
        c.args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
        ok(c, "openssl req");
        (cert, key)
    }

    fn as_postgres(bindir: &str, tool: &str) -> Command {
        let path = Path::new(bindir).join(tool);
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn ok(mut c: Command, what: &str) {
        let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    impl Postgres {
        /// Creates a cluster with the tools in `bindir` and starts it.
        pub fn start(bindir: &str) -> Self {
            let server = Self::create(bindir, false);
            server.start_again();
            server
        }

        /// The same, taking TLS connections only (`pg_hba.conf` refuses
        /// the others), with a certificate for `localhost` and `127.0.0.1`
        /// made for it ([`Postgres::ca`]).
        pub fn start_tls(bindir: &str) -> Self {
            let server = Self::create(bindir, true);
            let dir = server.dir.path();
            let (_, key) = certificate(dir, "server");
            let _ = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir)
                .status();
            let _ = Command::new("chmod").arg("600").arg(&key).status();
            std::fs::write(
                dir.join("data").join("pg_hba.conf"),
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n",
            )
            .expect("pg_hba.conf");
            server.start_again();
            server
        }

        fn create(bindir: &str, tls: bool) -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let _ = Command::new("chown")
                .args(["postgres:"])
                .arg(dir.path())
                .status();
            let mut init = as_postgres(bindir, "initdb");
            init.args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "-D"])
                .arg(dir.path().join("data"));
            ok(init, "initdb");
            Self {
                bindir: bindir.to_string(),
                dir,
                port: free_port(),
                tls,
            }
        }

        /// The certificate of a server started with [`Postgres::start_tls`],
        /// its own authority.
        pub fn ca(&self) -> std::path::PathBuf {
            self.dir.path().join("server.crt")
        }

        /// Its port.
        pub fn port(&self) -> u16 {
            self.port
        }

        /// The connection URL.
        pub fn url(&self) -> String {
            format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
        }

        fn pg_ctl(&self, args: &[&str], what: &str) {
            let mut c = as_postgres(&self.bindir, "pg_ctl");
            c.arg("-D").arg(self.dir.path().join("data")).args(args);
            ok(c, what);
        }

        /// Stops the server at once (`immediate`: as a crash would).
        pub fn stop(&self) {
            self.pg_ctl(&["-m", "immediate", "-w", "stop"], "pg_ctl stop");
        }

        /// Starts the server again on the same data and port.
        pub fn start_again(&self) {
            let d = self.dir.path().display();
            let mut options = format!(
                "-p {} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port
            );
            if self.tls {
                options.push_str(&format!(
                    " -c ssl=on -c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key"
                ));
            }
            let log = format!("{d}/server.log");
            self.pg_ctl(&["-o", &options, "-l", &log, "-w", "start"], "pg_ctl start");
        }
    }

    impl Drop for Postgres {
        fn drop(&mut self) {
            let mut c = as_postgres(&self.bindir, "pg_ctl");
            c.arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = c.status();
        }
    }
}

/// Database queries for the service tests.
pub mod db {
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Runs `sql` on ClickHouse at `url`; the result as TSV rows of fields.
    pub fn clickhouse(url: &str, sql: &str) -> Vec<Vec<String>> {
        let client = clickhouse::Client::default()
            .with_url(url)
            .with_validation(false)
            .with_compression(clickhouse::Compression::None);
        let bytes = runtime()
            .block_on(async { client.query(sql).fetch_bytes("TSV")?.collect().await })
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| l.split('\t').map(String::from).collect())
            .collect()
    }

    /// Runs `sql` on PostgreSQL at `url`; every value read as text.
    pub fn postgres(url: &str, sql: &str) -> Vec<Vec<String>> {
        try_postgres(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// [`postgres`], with the error returned.
    pub fn try_postgres(url: &str, sql: &str) -> Result<Vec<Vec<String>>, String> {
        runtime().block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let rows = client
                .simple_query(sql)
                .await
                .map_err(|e| match e.as_db_error() {
                    Some(db) => format!("{}: {}", db.code().code(), db.message()),
                    None => e.to_string(),
                })?;
            Ok(rows
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                        (0..r.len())
                            .map(|i| r.get(i).unwrap_or("").to_string())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect())
        })
    }

    /// A decimal field (an empty one is zero).
    pub fn dec(s: &str) -> Decimal {
        if s.is_empty() || s == "\\N" {
            Decimal::ZERO
        } else {
            Decimal::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
        }
    }

    /// A name unique to this test run.
    pub fn unique(prefix: &str) -> String {
        format!(
            "{prefix}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .subsec_nanos()
        )
    }
}

/// What the merchant rule set must report for `lines` (generated events):
/// the number of events with a merchant and the sum of their amounts,
/// leaving out those the run set aside as late (`late.jsonl` in `out`).
pub fn merchant_totals(lines: &[String], out: &Path) -> (i64, rust_decimal::Decimal) {
    let late: std::collections::HashSet<String> = read_jsonl(&out.join("late.jsonl"))
        .iter()
        .filter(|l| {
            l["rule"]
                .as_str()
                .is_some_and(|r| r.starts_with("merchant"))
        })
        .filter_map(|l| l["event"]["transaction_id"].as_str().map(String::from))
        .collect();
    let mut count = 0;
    let mut revenue = rust_decimal::Decimal::ZERO;
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("generated JSON");
        let has_merchant = v["merchant_id"].as_str().is_some_and(|m| !m.is_empty());
        let id = v["transaction_id"].as_str().unwrap_or_default();
        if !has_merchant || late.contains(id) {
            continue;
        }
        count += 1;
        revenue += amount(&v);
    }
    (count, revenue)
}

/// The `amount` of a generated event (a JSON string or number).
pub fn amount(v: &serde_json::Value) -> rust_decimal::Decimal {
    use std::str::FromStr;
    match &v["amount"] {
        serde_json::Value::String(s) => rust_decimal::Decimal::from_str(s).expect("amount"),
        other => rust_decimal::Decimal::from_str(&other.to_string()).expect("amount"),
    }
}

/// An `edge run` process with its admin API, for tests that talk to it
/// while it runs.
pub struct RunningEdge {
    child: Option<std::process::Child>,
    /// `http://127.0.0.1:PORT`.
    pub admin: String,
    token: Option<String>,
    stderr: PathBuf,
    agent: ureq::Agent,
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl RunningEdge {
    /// Starts `edge run ARGS --admin 127.0.0.1:PORT` (with `token` in
    /// `EDGE_ADMIN_TOKEN`), logging to `log`, and waits for the API.
    pub fn start(args: &[&str], token: Option<&str>, log: &Path) -> Self {
        let port = free_port();
        let admin_addr = format!("127.0.0.1:{port}");
        let mut command = std::process::Command::new(edge_bin());
        command
            .arg("run")
            .args(args)
            .args(["--admin", &admin_addr, "--console", "never"])
            .env("EDGE_LOG", "info")
            .env_remove("EDGE_ADMIN_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"));
        if let Some(t) = token {
            command.env("EDGE_ADMIN_TOKEN", t);
        }
        let child = command.spawn().expect("spawn edge");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        let me = Self {
            child: Some(child),
            admin: format!("http://{admin_addr}"),
            token: token.map(String::from),
            stderr: log.to_path_buf(),
            agent,
        };
        me.wait_until("the admin API answers", 60, || {
            me.request("GET", "/health", None).is_some()
        });
        me
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn request(&self, method: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
        let url = format!("{}{path}", self.admin);
        let auth = token.map(|t| format!("Bearer {t}"));
        let result = match method {
            "POST" => {
                let mut r = self.agent.post(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send_empty()
            }
            _ => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
        };
        let mut response = result.ok()?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().ok()?;
        Some((status, body))
    }

    /// A request with an explicit token (or none): status and body.
    pub fn call(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        self.request(method, path, token)
            .unwrap_or_else(|| panic!("{method} {path}: no answer\n{}", self.log()))
    }

    /// A request with the process's token, expecting 200: the JSON body.
    pub fn json(&self, method: &str, path: &str) -> serde_json::Value {
        let (status, body) = self.call(method, path, self.token.as_deref());
        assert_eq!(status, 200, "{method} {path}: {body}\n{}", self.log());
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// `GET /rules`, the entry of rule set `name`.
    pub fn rule(&self, name: &str) -> Option<serde_json::Value> {
        self.json("GET", "/rules")
            .as_array()
            .and_then(|rules| rules.iter().find(|r| r["name"] == name).cloned())
    }

    /// Events processed so far (`GET /health`).
    pub fn events(&self) -> u64 {
        self.json("GET", "/health")["events"].as_u64().unwrap_or(0)
    }

    /// Polls `done` every 20 ms for up to `secs` seconds; panics with the
    /// log if it never holds.
    pub fn wait_until(&self, what: &str, secs: u64, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Sends a signal (`TERM`, `INT`, ...) to edge.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let _ = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status();
    }

    /// Whether edge is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Waits up to `secs` seconds for edge to exit: its exit code (`None`
    /// if it is still running).
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// Stops edge with SIGTERM (output is flushed; over the generator, open
    /// windows fire) and returns its log; panics if it failed.
    pub fn stop(mut self) -> String {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let status = child.wait().expect("wait for edge");
        let log = self.log();
        assert!(status.success(), "edge failed: {status}\n{log}");
        log
    }
}

impl Drop for RunningEdge {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
