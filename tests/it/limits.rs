//! Bounded resources: what one client can hold (issue 8 §5). Raw TCP
//! clients play the misbehaving parts; every wait has a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::harness::{MockUpstream, Reply, TestApp, hello, openai_app_with, providers_toml};

/// Reads until `needle` has arrived (or the peer closes); everything read.
async fn read_until(tcp: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// True when the peer closes the connection within `limit` (after
/// whatever it still had buffered).
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 65536];
    timeout(limit, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn health_on(tcp: &mut TcpStream) {
    tcp.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (_mock, app) = openai_app_with(|s| s.server.max_client_connections = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        health_on(&mut tcp).await;
        let answer = timeout(Duration::from_secs(5), read_until(&mut tcp, "\"ok\""))
            .await
            .expect("a connection within the cap is served");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(tcp);
    }
    // The kernel completes the handshake; the gateway does not take it up.
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    health_on(&mut third).await;
    let early = timeout(Duration::from_millis(400), read_until(&mut third, "\"ok\"")).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");
    drop(held.pop());
    let answer = timeout(Duration::from_secs(5), read_until(&mut third, "\"ok\""))
        .await
        .expect("served once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Sends the head of a `/v1/messages` request announcing `length` body bytes.
async fn start_upload(addr: SocketAddr, key: &str, length: usize) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(b"{\"model\":").await.unwrap();
    tcp
}

#[tokio::test]
async fn a_stalled_or_trickled_body_gets_408_within_the_limit() {
    let (mock, app) = openai_app_with(|s| s.server.body_timeout = Duration::from_millis(500)).await;

    let started = Instant::now();
    let mut stalled = start_upload(app.addr, &app.key, 1000).await;
    let answer = timeout(Duration::from_secs(5), read_until(&mut stalled, "}}"))
        .await
        .expect("a stalled upload is answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"timeout_error\""), "{answer}");
    assert!(answer.contains("ABRIDGE_BODY_TIMEOUT"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        closed_within(&mut stalled, Duration::from_secs(2)).await,
        "the connection is closed"
    );

    // One byte every 100 ms never completes 1000 bytes in time either.
    let started = Instant::now();
    let trickled = start_upload(app.addr, &app.key, 1000).await;
    let (mut reader, mut writer) = trickled.into_split();
    let trickle = tokio::spawn(async move {
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut seen = Vec::new();
    let read = timeout(Duration::from_secs(5), reader.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "the trickling client is cut off");
    let answer = String::from_utf8_lossy(&seen);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    trickle.abort();

    // A body that arrives in time is still served.
    assert_eq!(app.messages(hello("sonnet")).await.0, 200);
    assert_eq!(
        mock.received().len(),
        1,
        "the cut-off requests never went upstream"
    );
}

/// A client socket that advertises small segments and a small window, so
/// the gateway's writes to it block after a few kilobytes instead of the
/// megabytes loopback would buffer.
async fn narrow_client(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket2::SockRef::from(&socket).set_tcp_mss(1000).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_release_their_upstream_streams() {
    const STALLED: usize = 200;
    let event = format!(
        "event: content_block_delta\ndata: {}\n\n",
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x".repeat(1024)}})
    );
    let mock = MockUpstream::start(move |req, _| {
        if req.body["stream"] == true {
            Reply::Endless(event.clone(), Duration::from_millis(5))
        } else {
            Reply::Json(
                200,
                json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                       "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                       "usage": {"input_tokens": 3, "output_tokens": 1}}),
            )
        }
    })
    .await;
    let app = TestApp::spawn_with(
        &providers_toml(&[("p", "anthropic", &mock.url(), 1)]),
        |s| {
            s.server.write_timeout = Duration::from_secs(1);
            // Upstream permits are not what this test is about.
            s.http.max_connections = 1000;
        },
    )
    .await;
    let body = json!({"model": "sonnet", "max_tokens": 64, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        app.key,
        body.len()
    );
    let addr = app.addr;
    let opened = Instant::now();
    let stalled: Vec<TcpStream> = futures_util::future::join_all((0..STALLED).map(|_| {
        let request = request.clone();
        async move {
            let mut tcp = narrow_client(addr).await;
            tcp.write_all(request.as_bytes()).await.unwrap();
            // The stream is flowing; from here on this client never reads.
            let head = timeout(Duration::from_secs(10), read_until(&mut tcp, "text_delta"))
                .await
                .expect("the stream starts");
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            tcp
        }
    }))
    .await;
    assert_eq!(mock.received().len(), STALLED);

    // Other clients keep being served meanwhile.
    for _ in 0..10 {
        let started = Instant::now();
        let (status, answer) = app.messages(hello("sonnet")).await;
        assert_eq!(status, 200, "{answer}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    let released = mock
        .wait_abandoned_n(STALLED, Duration::from_secs(20))
        .await;
    assert_eq!(
        released, STALLED,
        "every stalled stream was dropped upstream"
    );
    println!(
        "{STALLED} stalled streams released {:?} after they opened",
        opened.elapsed()
    );
    for mut tcp in stalled.into_iter().take(5) {
        assert!(
            closed_within(&mut tcp, Duration::from_secs(5)).await,
            "the gateway closed the stalled connection"
        );
    }
    let state = app.stop().await;
    let logs = state.store.recent_logs(1000).await.unwrap();
    let cut_off = logs
        .iter()
        .filter(|l| l.error_kind.as_deref() == Some("client_closed"))
        .count();
    assert_eq!(cut_off, STALLED, "each stalled stream is logged as cut off");
}
