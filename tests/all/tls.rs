//! PostgreSQL and ClickHouse over TLS, each a server of the test's own with
//! a certificate the test makes. PostgreSQL's `pg_hba.conf` refuses every
//! connection without TLS; edge writes to it with each `sslmode`, verifies
//! it against the right and a wrong authority, and never shows the
//! password of a connection string. ClickHouse is written over https,
//! trusted through `SSL_CERT_FILE`.

use edge_tests::servers::{certificate, ClickHouse, Postgres};
use edge_tests::{db, edge_bin, gen_events, guests, run_pipeline, service};
use std::path::Path;
use std::process::Command;

/// A count over TLS with psql, verifying the server.
fn count(server: &Postgres, sql: &str) -> i64 {
    let out = Command::new("psql")
        .arg(format!(
            "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
            server.port(),
            server.ca().display()
        ))
        .args(["-Atc", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// `edge` writing the tally rule set's rows of `events` to `url`.
fn write(url: &str, events: &Path) -> anyhow::Result<()> {
    run_pipeline(&[guests::TALLY], |c| {
        c.source = edge_tests::file_source(events);
        c.postgres.url = url.to_string();
        c.postgres.schema = "tls".into();
        c.output.routes.insert(
            "*".into(),
            vec![
                edge::config::SinkKind::Jsonl,
                edge::config::SinkKind::Postgres,
            ],
        );
    })
    .map(|_| ())
}

#[test]
fn edge_writes_to_postgresql_over_tls_and_verifies_the_server() {
    let Some(bindir) = service("EDGE_PG_BINDIR") else {
        return;
    };
    let server = Postgres::start_tls(&bindir);
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    gen_events(&events, 300, 5);
    let base = format!(
        "postgres://postgres:s3cret@localhost:{}/postgres",
        server.port()
    );

    // Verified: the chain and the host name.
    let ca = server.ca();
    write(
        &format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display()),
        &events,
    )
    .unwrap();
    assert_eq!(count(&server, "select count(*) from tls.seen"), 300);
    // Every connection to the server is over TLS.
    assert_eq!(
        count(&server, "select count(*) from pg_stat_ssl s join pg_stat_activity a using (pid) where a.backend_type = 'client backend' and not s.ssl"),
        0
    );

    // Encrypted, not verified: `require` (and the default, `prefer`), in
    // the key=value form too.
    let pairs = format!(
        "host=localhost port={} user=postgres password='s3cret' dbname=postgres sslmode=require",
        server.port()
    );
    write(&pairs, &events).unwrap();
    write(&base, &events).unwrap();
    assert_eq!(count(&server, "select count(*) from tls.seen"), 300);

    // Refused: without TLS the server turns edge away; with another
    // authority the certificate fails verification; an unknown sslmode is
    // named. The password shows in none of the messages.
    let (other, _) = certificate(dir.path(), "other");
    let cases = [
        (format!("{base}?sslmode=disable"), "no encryption"),
        (
            format!("{base}?sslmode=verify-ca&sslrootcert={}", other.display()),
            "certificate verify failed",
        ),
        (
            format!("{pairs} sslmode=sometimes"),
            "sslmode \"sometimes\" is not one of",
        ),
    ];
    for (url, want) in cases {
        let message = format!("{:#}", write(&url, &events).unwrap_err());
        assert!(message.contains(want), "{url}: {message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}

#[test]
fn edge_writes_to_clickhouse_over_https() {
    let Some(bin) = service("EDGE_CLICKHOUSE_BIN") else {
        return;
    };
    let server = ClickHouse::start_https(&bin);
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    gen_events(&events, 300, 8);
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[clickhouse]\nurl = \"{}\"\ndatabase = \"tls\"\n[output.routes]\n\"*\" = [\"jsonl\", \"clickhouse\"]\n",
            server.https_url()
        ),
    )
    .unwrap();
    let run_with = |config: &Path, trusted: Option<&Path>| {
        let mut command = Command::new(edge_bin());
        command
            .args(["run", "--rules", guests::TALLY, "--config"])
            .arg(config)
            .arg("--source")
            .arg(format!("file:{}", events.display()))
            .arg("--out-dir")
            .arg(dir.path().join("out"))
            .args(["--console", "never", "--admin", "off"])
            .env("EDGE_LOG", "warn")
            .env_remove("SSL_CERT_FILE");
        if let Some(ca) = trusted {
            command.env("SSL_CERT_FILE", ca);
        }
        command.output().unwrap()
    };
    let run = |trusted: Option<&Path>| run_with(&config, trusted);
    // A run that lands every row (once: a second run upserts them).
    let lands = |done: std::process::Output| {
        let text = String::from_utf8_lossy(&done.stderr);
        assert!(done.status.success(), "{text}");
        let count = db::clickhouse(&server.url(), "SELECT count() FROM tls.seen FINAL");
        assert_eq!(count[0][0], "300");
    };
    // Not trusted: refused at start, naming the cause.
    let refused = run(None);
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("certificate verify failed"), "{text}");
    // Trusted through SSL_CERT_FILE: every row lands.
    lands(run(Some(&server.ca())));

    // Trusted through clickhouse.ca-file alone: the rows land again (an
    // upsert: still 300), and a file that holds no certificate is refused.
    let with_ca = |ca: &Path| {
        let text = std::fs::read_to_string(&config).unwrap();
        let text = text.replacen(
            "[clickhouse]\n",
            &format!("[clickhouse]\nca-file = \"{}\"\n", ca.display()),
            1,
        );
        std::fs::write(dir.path().join("ca.toml"), text).unwrap();
    };
    with_ca(&server.ca());
    let run_ca = || run_with(&dir.path().join("ca.toml"), None);
    lands(run_ca());
    with_ca(&events);
    let refused = run_ca();
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("clickhouse.ca-file") && text.contains("not a PEM certificate"),
        "{text}"
    );
}
