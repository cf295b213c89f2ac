//! The PostgreSQL engine: tokio-postgres behind a deadpool pool.
//!
//! `DB_POOL_SIZE` connections at most; a request waits at most
//! `DB_POOL_TIMEOUT` for a free one ([`StoreError::PoolTimeout`]) and as long
//! again for a new connection to open. The pool checks each connection when
//! it is handed back out and throws away one whose socket has closed, so a
//! restarted or briefly unreachable server is reconnected to on the next
//! request without any task of ours. TLS is used only when the URL asks for
//! it (`sslmode=require`, or libpq's `verify-ca`/`verify-full`, which mean
//! the same here because rustls always verifies the certificate): against
//! the Mozilla root set, or the PEM file named by `sslrootcert=PATH`.
//!
//! This file owns URL parsing, TLS and the pool; the SQL lives in the
//! table-family files. Messages name the host, never the password.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use tokio_postgres::config::{Host, SslMode};

use super::{Result, StoreError};

/// A parsed `postgres://` URL, ready to connect.
#[derive(Clone)]
pub struct PgUrl {
    config: tokio_postgres::Config,
    /// PEM file of the CAs to trust instead of the Mozilla roots.
    root_cert: Option<PathBuf>,
    /// `host:port/dbname`, for messages.
    target: String,
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUrl")
            .field("target", &self.target)
            .field("tls", &self.tls())
            .finish_non_exhaustive()
    }
}

impl PartialEq for PgUrl {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config && self.root_cert == other.root_cert
    }
}

impl Eq for PgUrl {}

impl PgUrl {
    /// Parses `postgres://user:pass@host:port/db?sslmode=...`. The caller
    /// puts the redacted URL in front of the message.
    pub fn parse(url: &str) -> std::result::Result<Self, String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (key, value) {
                ("sslrootcert", path) => root_cert = Some(PathBuf::from(path)),
                // rustls always checks the certificate and the host name.
                ("sslmode", "verify-ca" | "verify-full") => kept.push("sslmode=require"),
                _ => kept.push(pair),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config: tokio_postgres::Config = rebuilt.parse().map_err(|e| format!("{e}"))?;
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_application_name().is_none() {
            config.application_name("abridge");
        }
        if config.get_ssl_mode() != SslMode::Require {
            // `prefer` would try TLS and then fail verification against a
            // self-signed server certificate: plain TCP unless TLS is asked for.
            config.ssl_mode(SslMode::Disable);
        }
        let target = describe(&config);
        Ok(Self {
            config,
            root_cert,
            target,
        })
    }

    /// Whether connections use TLS.
    pub fn tls(&self) -> bool {
        self.config.get_ssl_mode() == SslMode::Require
    }

    /// `host:port/dbname`, safe to print.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The same server with `search_path` set to `schema`, and the schema's
    /// name as `application_name` (test isolation).
    #[cfg(test)]
    pub fn with_schema(&self, schema: &str) -> Self {
        let mut url = self.clone();
        url.config.options(format!("-c search_path={schema}"));
        url.config.application_name(schema);
        url
    }
}

fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = config
                .get_ports()
                .get(i)
                .or(config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    format!(
        "{}/{}",
        hosts.join(","),
        config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres")
    )
}

fn tls_connector(root_cert: Option<&PathBuf>) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                StoreError::Unavailable(format!("sslrootcert {}: {e}", path.display()))
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Unavailable(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A cheap-to-clone handle on the connection pool.
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    target: Arc<str>,
    timeout: Duration,
}

impl Postgres {
    /// Builds the pool and opens one connection, so a server that cannot be
    /// reached is reported at start-up rather than on the first request.
    pub async fn open(url: &PgUrl, pool_size: usize, pool_timeout: Duration) -> Result<Self> {
        let mut config = url.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(pool_timeout);
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if url.tls() {
            Manager::from_config(
                config,
                tls_connector(url.root_cert.as_ref())?,
                manager_config,
            )
        } else {
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(pool_timeout))
            .create_timeout(Some(pool_timeout))
            .recycle_timeout(Some(pool_timeout))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("PostgreSQL pool: {e}")))?;
        let pg = Self {
            pool,
            target: url.target.as_str().into(),
            timeout: pool_timeout,
        };
        drop(pg.client().await?);
        Ok(pg)
    }

    /// `host:port/dbname`, safe to print.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Connections open or being opened (for `Debug`).
    pub fn size(&self) -> usize {
        self.pool.status().size
    }

    /// A connection from the pool; a broken one is replaced first.
    pub async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                StoreError::PoolTimeout(self.timeout)
            }
            PoolError::Timeout(_) => StoreError::Unavailable(format!(
                "PostgreSQL at {} did not answer within {:?}",
                self.target, self.timeout
            )),
            PoolError::Backend(e) => StoreError::Unavailable(format!(
                "cannot reach PostgreSQL at {}: {}",
                self.target,
                error_text(&e)
            )),
            PoolError::Closed => StoreError::Closed,
            other => StoreError::Unavailable(format!("PostgreSQL at {}: {other}", self.target)),
        })
    }

    /// `PostgreSQL 15.4 ...`, for `init-db`.
    pub async fn server_version(&self) -> Result<String> {
        let client = self.client().await?;
        Ok(client.query_one("SELECT version()", &[]).await?.get(0))
    }
}

/// tokio-postgres's `Display` leaves out the cause ("db error"); this keeps
/// it ("db error: ERROR: relation ... does not exist").
pub fn error_text(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        if e.is_closed() || io {
            StoreError::Unavailable(format!(
                "lost the connection to PostgreSQL: {}",
                error_text(&e)
            ))
        } else {
            StoreError::Postgres(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_tls_only_when_asked() {
        let url = PgUrl::parse("postgres://app:pw@db.internal:6543/gw").unwrap();
        assert_eq!(url.target(), "db.internal:6543/gw");
        assert!(!url.tls());
        let url = PgUrl::parse("postgres://app@db/gw?sslmode=require").unwrap();
        assert!(url.tls());
        assert_eq!(url.target(), "db:5432/gw");
        let url =
            PgUrl::parse("postgresql://db/gw?sslmode=verify-full&sslrootcert=/etc/ca.pem").unwrap();
        assert!(url.tls());
        assert_eq!(url.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert!(PgUrl::parse("postgres://db/gw?sslmode=sometimes").is_err());
        assert!(PgUrl::parse("postgres://db/gw?bogus=1").is_err());
        assert!(
            !format!("{:?}", PgUrl::parse("postgres://u:hunter2@h/d").unwrap()).contains("hunter2")
        );
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test server thread
    fn sslmode_require_asks_the_server_for_tls() {
        // A fake server that records the first message and refuses TLS.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{Read as _, Write as _};
            let (mut socket, _) = listener.accept().unwrap();
            let mut first = [0u8; 8];
            socket.read_exact(&mut first).unwrap();
            socket.write_all(b"N").unwrap();
            first
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url =
            PgUrl::parse(&format!("postgres://u@127.0.0.1:{port}/d?sslmode=require")).unwrap();
        let err = runtime
            .block_on(Postgres::open(&url, 1, Duration::from_secs(5)))
            .err()
            .unwrap();
        // SSLRequest: length 8, code 80877103.
        let first = server.join().unwrap();
        assert_eq!(first, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}/d")),
            "{err}"
        );
    }
}
