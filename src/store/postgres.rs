//! Connecting to PostgreSQL: the `--db` URL, the password from the URL,
//! `PGPASSWORD` or the password file (`PGPASSFILE`, else `~/.pgpass`), TLS
//! when the URL asks for it, and the URL as it may be shown (never with
//! its password).

use super::StoreError;
use std::path::PathBuf;
use std::time::Duration;

/// Whether a `--db` value names a PostgreSQL database rather than a file.
pub fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// The URL with any password taken out (from the user part and from a
/// `password=` parameter): what errors, logs and stored plans show. The
/// user part is read as the driver reads it: everything before the first
/// `@`, whatever comes between.
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = match rest.split_once('@') {
        Some((credentials, after)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{user}@{after}")
        }
        None => rest.to_string(),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| {
                    let key = p.split('=').next().unwrap_or_default();
                    !percent_decoded(key).eq_ignore_ascii_case("password")
                })
                .collect();
            if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => rest,
    };
    format!("{scheme}://{rest}")
}

/// `%XX` sequences decoded, as the driver decodes a URL's keys.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a connection needs: the parsed URL with its credentials filled
/// in. Kept by the store to open a second connection for a run's claim.
#[derive(Clone)]
pub struct Target {
    config: postgres::Config,
    /// The URL without its password.
    pub shown: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, StoreError> {
        let shown = redacted(url);
        let mut config: postgres::Config = url.parse().map_err(|e| StoreError::Sql {
            path: PathBuf::from(&shown),
            message: format!("not a PostgreSQL URL: {e}"),
        })?;
        if config.get_user().is_none() {
            // As libpq does: PGUSER, else the name of the user running cbtsim.
            if let Some(user) = env("PGUSER").or_else(|| env("USER")) {
                config.user(&user);
            }
        }
        if config.get_password().is_none()
            && let Some(password) = env("PGPASSWORD").or_else(|| password_from_file(&config))
        {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A run's claim is a connection that is idle for hours: probe it
        // well before a firewall or NAT forgets it (the default is 2 h).
        config.keepalives_idle(Duration::from_secs(30));
        Ok(Target { config, shown })
    }

    pub fn connect(&self) -> Result<postgres::Client, StoreError> {
        let connected = match self.config.get_ssl_mode() {
            postgres::config::SslMode::Disable => self.config.connect(postgres::NoTls),
            // As libpq's `prefer` and `require`: encrypted, the server's
            // certificate not checked (most servers have one of their own
            // making, e.g. Debian's snakeoil); the driver knows no
            // `verify-full`.
            _ => {
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default TLS versions")
                    .dangerous()
                    .with_custom_certificate_verifier(std::sync::Arc::new(Unverified(provider)))
                    .with_no_client_auth();
                self.config
                    .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
            }
        };
        let error = |e| StoreError::Sql {
            path: PathBuf::from(&self.shown),
            // The error names the server's reason or the socket's, never
            // the password (it is not part of the message).
            message: format!("cannot connect: {}", super::db::DbError::Postgres(e)),
        };
        let mut client = connected.map_err(error)?;
        // A process paused or cut off in the middle of a transaction (they
        // last milliseconds) would hold its row locks for as long as it is
        // gone, and keep the course it was writing from other workers: the
        // server ends such a session after 30 s.
        client
            .batch_execute("SET idle_in_transaction_session_timeout = 30000")
            .map_err(error)?;
        Ok(client)
    }
}

/// Takes any certificate, as libpq does below `verify-ca`; the handshake's
/// signatures are still checked.
#[derive(Debug)]
struct Unverified(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The password for this host, port, database and user from the password
/// file, in libpq's format (`host:port:database:user:password`, `*` for
/// any, `\:` and `\\` escaped), if there is one that matches.
fn password_from_file(config: &postgres::Config) -> Option<String> {
    let path = env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default();
    let database = config.get_dbname().unwrap_or(user);
    password_in(&text, [&host, &port, database, user])
}

fn password_in(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = pgpass_fields(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want);
            matches.then(|| fields[4].clone())
        })
}

fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("never empty").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("never empty").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_url_never_holds_the_password() {
        assert_eq!(
            redacted("postgres://ana:s3cr%3At@db.local:5433/cbtsim?sslmode=require"),
            "postgres://ana@db.local:5433/cbtsim?sslmode=require"
        );
        assert_eq!(
            redacted("postgresql://ana@/cbtsim?host=/run/pg&password=hunter2"),
            "postgresql://ana@/cbtsim?host=/run/pg"
        );
        assert_eq!(
            redacted("postgres://localhost/x?Password=p"),
            "postgres://localhost/x"
        );
        // The driver reads everything before the first `@` as the user
        // part, a `/` in the password included, and decodes keys.
        assert_eq!(redacted("postgres://ana:pa/ss@db/x"), "postgres://ana@db/x");
        assert_eq!(
            redacted("postgres://db/x?pass%77ord=hunter2&sslmode=disable"),
            "postgres://db/x?sslmode=disable"
        );
        assert!(is_url("postgres://h/db") && is_url("postgresql://h/db"));
        assert!(!is_url("/tmp/postgres.db") && !is_url("runs.db"));
    }

    #[test]
    fn the_password_file_is_read_as_libpq_reads_it() {
        let text = "# comment\nother:5432:*:ana:wrong\nlocalhost:5433:cbtsim:ana:right\\:one\n*:*:*:*:fallback\n";
        assert_eq!(
            password_in(text, ["localhost", "5433", "cbtsim", "ana"]).as_deref(),
            Some("right:one")
        );
        assert_eq!(
            password_in(text, ["db", "5432", "x", "bo"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(password_in("h:1:d:u\n", ["h", "1", "d", "u"]), None);
    }

    #[test]
    fn an_unreachable_server_is_an_error_naming_it_without_the_password() {
        // Port 1 on loopback: nothing listens there.
        let target =
            Target::parse("postgres://ana:hunter2@127.0.0.1:1/cbtsim?sslmode=disable").unwrap();
        let error = target.connect().err().expect("nothing listens").to_string();
        assert!(
            error.starts_with("postgres://ana@127.0.0.1:1/cbtsim"),
            "{error}"
        );
        assert!(error.contains("cannot connect"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
