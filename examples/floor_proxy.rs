//! The cheapest HTTP/1.1 proxy we know how to write with the same stack as
//! abridge (tokio, hyper, reqwest): every request is forwarded to
//! `--upstream` unchanged and the answer streamed back unchanged. No auth, no
//! parsing, no conversion, no logging.
//!
//! `examples/bench.sh` runs it as the `floor` row, so the gateway's cost can
//! be read against what merely relaying a request costs on the same machine
//! (two sockets, two HTTP parses, a connection pool) rather than against a
//! bare server.
//!
//! ```text
//! cargo run --release --example floor_proxy -- --listen 127.0.0.1:9200 \
//!     --upstream http://127.0.0.1:9100
//! ```

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "A do-nothing reverse proxy: the floor for abridge benchmarks")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9200")]
    listen: SocketAddr,
    /// Where every request goes, path and query appended (e.g. http://127.0.0.1:9100).
    #[arg(long)]
    upstream: String,
}

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    base: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()?;
    let upstream = Upstream {
        client,
        base: args.upstream.trim_end_matches('/').to_owned(),
    };
    let app = axum::Router::new().fallback(relay).with_state(upstream);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

async fn relay(State(upstream): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers;
    headers.remove(axum::http::header::HOST);
    let sent = upstream
        .client
        .request(parts.method, format!("{}{path}", upstream.base))
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    match sent {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status());
            if let Some(headers) = response.headers_mut() {
                *headers = answer.headers().clone();
            }
            response
                .body(Body::from_stream(answer.bytes_stream()))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}
