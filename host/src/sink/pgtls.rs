//! PostgreSQL connection strings with libpq's TLS settings.
//!
//! `sslmode` takes libpq's values: `disable` (no TLS), `allow` and
//! `prefer` (TLS when the server offers it, its certificate not checked;
//! `prefer` is the default, as in libpq), `require` (TLS or no connection;
//! the certificate is checked against `sslrootcert` when one is given, as
//! libpq does), `verify-ca` (TLS, the certificate signed by a trusted
//! authority) and `verify-full` (the same, and issued to the host
//! connected to). `sslrootcert` names a PEM file of trusted authorities
//! (`system`, or none: the system's, where `SSL_CERT_FILE` is honoured);
//! `sslcert` and `sslkey` a client certificate and its key. The rest of
//! the string goes to tokio-postgres as it is, in URL or `key=value` form.

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use tokio_postgres::config::SslMode;

/// What `sslmode` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No TLS.
    Disable,
    /// TLS when offered, unverified.
    Prefer,
    /// TLS, unverified unless a root certificate is given.
    Require,
    /// TLS, the chain verified.
    VerifyCa,
    /// TLS, the chain and the host name verified.
    VerifyFull,
}

/// A connection string read: the settings tokio-postgres takes, and the
/// TLS connector its `sslmode` needs.
pub struct Connect {
    /// The connection settings.
    pub config: tokio_postgres::Config,
    /// The TLS mode.
    pub mode: Mode,
    tls: Option<MakeTlsConnector>,
}

/// The TLS settings of a connection string, taken out of it.
#[derive(Default)]
struct Tls {
    mode: Option<String>,
    root: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

impl Tls {
    /// Takes `key` if it is a TLS setting; whether it was.
    fn take(&mut self, key: &str, value: &str) -> bool {
        let slot = match key {
            "sslmode" => &mut self.mode,
            "sslrootcert" => &mut self.root,
            "sslcert" => &mut self.cert,
            "sslkey" => &mut self.key,
            _ => return false,
        };
        *slot = Some(value.to_string());
        true
    }
}

/// Splits a `key=value` connection string into its pairs (values may be
/// single-quoted, with `\'` and `\\` escapes, as libpq reads them).
fn pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("{key:?} has no value (write {key}=value)"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("the value of {key} has no closing quote")),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
}

/// A `key=value` pair as libpq reads it back.
fn quoted(key: &str, value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
    format!("{key}='{escaped}'")
}

/// The connection string without its TLS settings, and those settings.
fn split(url: &str) -> Result<(String, Tls), String> {
    let mut tls = Tls::default();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_string(), tls));
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                !tls.take(key, &percent_decoded(value))
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, tls));
    }
    let kept: Vec<String> = pairs(url)?
        .into_iter()
        .filter(|(k, v)| !tls.take(k, v))
        .map(|(k, v)| quoted(&k, &v))
        .collect();
    Ok((kept.join(" "), tls))
}

/// `%XX` escapes of a URL query value decoded.
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Connect {
    /// Reads a connection string; an `sslmode` it does not know, or
    /// certificate files that cannot be read, are refused with what to fix.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, tls) = split(url)?;
        let mut config: tokio_postgres::Config = rest.parse().map_err(|e| format!("{e}"))?;
        let mode = match tls.mode.as_deref().unwrap_or("prefer") {
            "disable" => Mode::Disable,
            "allow" | "prefer" => Mode::Prefer,
            "require" if tls.root.is_some() => Mode::VerifyCa,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, \
                     verify-full"
                ))
            }
        };
        config.ssl_mode(match mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let tls = match mode {
            Mode::Disable => None,
            _ => Some(connector(mode, &tls).map_err(|e| format!("TLS settings: {e}"))?),
        };
        Ok(Self { config, mode, tls })
    }

    /// Connects.
    pub async fn connect(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            impl std::future::Future<Output = Result<(), tokio_postgres::Error>>,
        ),
        tokio_postgres::Error,
    > {
        use futures_util::future::Either;
        match &self.tls {
            None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                Ok((client, Either::Left(connection)))
            }
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                Ok((client, Either::Right(connection)))
            }
        }
    }
}

fn connector(mode: Mode, tls: &Tls) -> Result<MakeTlsConnector, String> {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    match tls.root.as_deref() {
        None | Some("system") => {}
        Some(file) => builder
            .set_ca_file(file)
            .map_err(|e| format!("cannot read sslrootcert {file}: {e}"))?,
    }
    if let Some(file) = &tls.cert {
        builder
            .set_certificate_chain_file(file)
            .map_err(|e| format!("cannot read sslcert {file}: {e}"))?;
        let key = tls
            .key
            .as_deref()
            .ok_or("sslcert is given without its sslkey")?;
        builder
            .set_private_key_file(key, SslFiletype::PEM)
            .map_err(|e| format!("cannot read sslkey {key}: {e}"))?;
    }
    if matches!(mode, Mode::Prefer | Mode::Require) {
        builder.set_verify(SslVerifyMode::NONE);
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    if mode != Mode::VerifyFull {
        connector.set_callback(|config, _| {
            config.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_settings_are_taken_out_of_a_url() {
        let (rest, tls) = split(
            "postgres://u:p@h:5432/db?sslmode=verify-full&application_name=edge&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@h:5432/db?application_name=edge");
        assert_eq!(tls.mode.as_deref(), Some("verify-full"));
        assert_eq!(tls.root.as_deref(), Some("/tmp/ca.pem"));
        let (rest, tls) = split("postgresql://h/db?sslmode=disable").unwrap();
        assert_eq!(
            (rest.as_str(), tls.mode.as_deref()),
            ("postgresql://h/db", Some("disable"))
        );
    }

    #[test]
    fn the_tls_settings_are_taken_out_of_key_value_pairs() {
        let (rest, tls) =
            split(r"host=h user=u password='it\'s' sslmode=require sslrootcert = '/a b/ca.pem'")
                .unwrap();
        assert_eq!(rest, r"host='h' user='u' password='it\'s'");
        assert_eq!(tls.mode.as_deref(), Some("require"));
        assert_eq!(tls.root.as_deref(), Some("/a b/ca.pem"));
        assert!(split("host=h sslmode").is_err());
        assert!(split("host='h").is_err());
    }

    #[test]
    fn modes_follow_libpq() {
        let mode = |url: &str| Connect::parse(url).map(|c| c.mode);
        assert_eq!(mode("host=h"), Ok(Mode::Prefer));
        assert_eq!(mode("host=h sslmode=disable"), Ok(Mode::Disable));
        assert_eq!(mode("host=h sslmode=require"), Ok(Mode::Require));
        assert_eq!(
            mode("postgres://h/db?sslmode=verify-full"),
            Ok(Mode::VerifyFull)
        );
        assert_eq!(mode("host=h sslmode=verify-ca"), Ok(Mode::VerifyCa));
        let refused = mode("host=h sslmode=sometimes").unwrap_err();
        assert!(
            refused.contains("sslmode \"sometimes\" is not one of"),
            "{refused}"
        );
        let missing = mode("host=h sslmode=verify-full sslrootcert=/no/such/ca.pem").unwrap_err();
        assert!(
            missing.contains("cannot read sslrootcert /no/such/ca.pem"),
            "{missing}"
        );
    }
}
