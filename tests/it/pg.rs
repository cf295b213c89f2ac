//! PostgreSQL for integration tests: a schema of its own per test on the
//! `DATABASE_URL` server (dropped afterwards), and `Chaos`, a TCP relay in
//! front of it that the test can cut and restore.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn required() -> bool {
    std::env::var("ABRIDGE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A fresh schema on the test server; `url` connects into it.
pub struct PgSchema {
    /// `DATABASE_URL` as given.
    server: String,
    pub name: String,
    /// Host and port of the server, for a relay.
    pub addr: SocketAddr,
}

impl PgSchema {
    /// `None` (with a notice) when `DATABASE_URL` is unset or unreachable,
    /// unless `ABRIDGE_REQUIRE_SERVICES=1`, which makes that a failure.
    pub async fn create() -> Option<Self> {
        let server = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ if required() => panic!("ABRIDGE_REQUIRE_SERVICES=1 but DATABASE_URL is not set"),
            _ => {
                eprintln!("skipped: DATABASE_URL is not set");
                return None;
            }
        };
        let client = match connect(&server).await {
            Ok(client) => client,
            Err(e) if required() => panic!("ABRIDGE_REQUIRE_SERVICES=1 but {server}: {e}"),
            Err(e) => {
                eprintln!("skipped: cannot reach PostgreSQL at {server}: {e}");
                return None;
            }
        };
        let name = format!("abridge_it_{:016x}", rand::random::<u64>());
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        let config: tokio_postgres::Config = server.parse().unwrap();
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            other => panic!("DATABASE_URL must name a TCP host, not {other:?}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .unwrap()
            .next()
            .unwrap();
        Some(Self { server, name, addr })
    }

    /// The URL of this schema; the schema's name is also the connections'
    /// `application_name`, so clean-up can end them.
    pub fn url(&self) -> String {
        let sep = if self.server.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}options=-c%20search_path%3D{name}&application_name={name}",
            self.server,
            name = self.name
        )
    }

    /// The same schema reached through `relay` instead of directly.
    pub fn url_via(&self, relay: SocketAddr) -> String {
        self.url()
            .replacen(&self.addr.to_string(), &relay.to_string(), 1)
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // `Drop` cannot await, and the test's runtime may be the one running
        // this: clean up on a thread with a runtime of its own.
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = connect(&server).await?;
                client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                        &[&name],
                    )
                    .await?;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            })
        });
        if let Ok(Err(e)) = done.join() {
            eprintln!("could not drop test schema {}: {e}", self.name);
        }
    }
}

/// A TCP relay to `target` that the test can cut (open connections are
/// closed, new ones are accepted and closed at once) and restore.
pub struct Chaos {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// Cancelled by `cut` to end the connections open at that moment.
    live: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Chaos {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let live = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (up2, live2, stop2) = (up.clone(), live.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop2.cancelled() => return,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let cut = live2.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.cancelled() => {}
                    }
                });
            }
        });
        Self {
            addr,
            up,
            live,
            stop,
        }
    }

    /// Closes every open connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut live = self.live.lock().unwrap();
        live.cancel();
        *live = CancellationToken::new();
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.cut();
        self.stop.cancel();
    }
}
