//! Test harness: the real server on port 0 (`TestApp`) and a scripted mock
//! provider, itself a real HTTP server on port 0 (`MockUpstream`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abridge::config::{Secret, Settings};
use abridge::server::{self, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::oneshot;

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

/// What the mock answers.
#[derive(Clone)]
pub enum Reply {
    Json(u16, serde_json::Value),
    /// Status, headers, body.
    Raw(u16, Vec<(&'static str, String)>, String),
    /// SSE chunks, each sent after its delay.
    Chunks(Vec<(Duration, String)>),
    /// The same, then the connection is cut mid-body (a reset).
    ChunksThenReset(Vec<(Duration, String)>),
    /// Never answers.
    Hang,
    /// An SSE stream that repeats this chunk, one per interval, until the
    /// client goes away.
    Endless(String, Duration),
}

type Script = dyn Fn(&Received, usize) -> Reply + Send + Sync;

#[derive(Clone)]
struct MockState {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Script>,
    abandoned: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts requests whose handler was dropped before answering (connection closed).
struct Abandoned(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub struct MockUpstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    abandoned: Arc<std::sync::atomic::AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

async fn handle(
    State(state): State<MockState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = Received {
        path: uri.path().to_string(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    };
    let n = {
        let mut all = state.received.lock().unwrap();
        all.push(received.clone());
        all.len() - 1
    };
    match (state.script)(&received, n) {
        Reply::Json(status, value) => {
            (StatusCode::from_u16(status).unwrap(), axum::Json(value)).into_response()
        }
        Reply::Raw(status, headers, body) => {
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            for (k, v) in headers {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            r
        }
        Reply::Chunks(chunks) => chunked(&state, chunks, false),
        Reply::ChunksThenReset(chunks) => chunked(&state, chunks, true),
        Reply::Endless(chunk, every) => {
            // Counted as abandoned when the gateway drops the stream.
            let flag = Abandoned(state.abandoned.clone());
            let chunk = Bytes::from(chunk);
            let stream = futures_util::stream::unfold(flag, move |flag| {
                let chunk = chunk.clone();
                async move {
                    tokio::time::sleep(every).await;
                    Some((Ok::<_, std::convert::Infallible>(chunk), flag))
                }
            });
            let mut r = Response::new(Body::from_stream(stream));
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
        Reply::Hang => {
            let _flag = Abandoned(state.abandoned.clone());
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

/// A streamed body of `chunks`, each after its delay; with `reset`, the body
/// then fails, and hyper cuts the connection without ending the body.
fn chunked(state: &MockState, chunks: Vec<(Duration, String)>, reset: bool) -> Response {
    // The flag counts a stream dropped before its last chunk was sent.
    let flag = Some(Abandoned(state.abandoned.clone()));
    let stream = futures_util::stream::unfold(
        (chunks.into_iter(), flag, reset),
        |(mut it, mut flag, reset)| async move {
            let Some((delay, text)) = it.next() else {
                std::mem::forget(flag.take());
                if reset {
                    let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut");
                    return Some((Err(cut), (it, None, false)));
                }
                return None;
            };
            tokio::time::sleep(delay).await;
            Some((Ok(Bytes::from(text)), (it, flag, reset)))
        },
    );
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    r
}

impl MockUpstream {
    pub async fn start(script: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let abandoned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let state = MockState {
            received: received.clone(),
            script: Arc::new(script),
            abandoned: abandoned.clone(),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            received,
            abandoned,
            _stop: stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests that were dropped while the mock was still holding them.
    pub fn abandoned(&self) -> usize {
        self.abandoned.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits (at most `limit`) until the mock has dropped `n` requests unanswered.
    pub async fn wait_abandoned_n(&self, n: usize, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        while self.abandoned() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.abandoned()
    }

    /// Waits (at most 3 s) until the mock has dropped a request unanswered.
    pub async fn wait_abandoned(&self) -> usize {
        self.wait_abandoned_n(1, Duration::from_secs(3)).await
    }

    /// Waits until the mock has received a first request.
    pub async fn wait_received(&self) {
        while self.received().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Requests received with `Authorization: Bearer {key}`.
    pub fn received_with_key(&self, key: &str) -> usize {
        let bearer = format!("Bearer {key}");
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.headers["authorization"] == bearer)
            .count()
    }
}

/// An OpenAI chat completion with the given text.
pub fn openai_text(text: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "up",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3}
    })
}

/// SSE `data:` lines for the given OpenAI chunks, then `[DONE]`.
pub fn openai_sse(chunks: &[serde_json::Value]) -> Vec<(Duration, String)> {
    let mut out: Vec<(Duration, String)> = chunks
        .iter()
        .map(|c| (Duration::ZERO, format!("data: {c}\n\n")))
        .collect();
    out.push((Duration::ZERO, "data: [DONE]\n\n".into()));
    out
}

/// Parses an SSE body into (event, data) pairs.
pub fn sse_events(body: &str) -> Vec<(String, serde_json::Value)> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut event = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            (
                event,
                serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect()
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub key: String,
    pub client: reqwest::Client,
    /// Keeps the database and providers file alive for the test.
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

/// Providers-file text for one provider per `(name, format, base_url, priority)`.
pub fn providers_toml(providers: &[(&str, &str, &str, i64)]) -> String {
    let mut text = String::new();
    for (name, format, url, priority) in providers {
        let base = if *format == "openai" {
            format!("{url}/v1")
        } else {
            url.to_string()
        };
        text.push_str(&format!(
            "[[providers]]\nname = \"{name}\"\napi_format = \"{format}\"\nbase_url = \"{base}\"\napi_keys = [\"{name}-key\"]\npriority = {priority}\ntimeout = \"3s\"\nmax_retries = 1\nmodels = {{ big = [\"{name}-big\"], middle = [\"{name}-mid\"], small = [\"{name}-small\"] }}\n\n"
        ));
    }
    text
}

impl TestApp {
    pub async fn spawn(providers: &str) -> Self {
        Self::spawn_with(providers, |_| {}).await
    }

    pub async fn spawn_with(providers: &str, tweak: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file: PathBuf = dir.path().join("providers.toml");
        std::fs::write(&file, providers).unwrap();
        let mut settings = Settings::default();
        settings.database.url = format!("sqlite://{}", dir.path().join("abridge.db").display());
        settings.server.providers_file = Some(file);
        settings.admin.password = Some(Secret::new("integration-test-password"));
        settings.routing.backoff = Duration::from_millis(10);
        settings.server.shutdown_timeout = Duration::from_secs(5);
        // Tests read breaker and key state from `/ready` with the test key.
        settings.server.ready_detail = true;
        tweak(&mut settings);
        let state = server::bootstrap::build_state(settings).await.unwrap();
        let key = state
            .store
            .create_api_key("test", None, None)
            .await
            .unwrap()
            .key;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let run_state = state.clone();
        let done = tokio::spawn(async move {
            server::run(listener, run_state, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            state,
            key,
            client: reqwest::Client::new(),
            _dir: dir,
            stop: Some(stop),
            done: Some(done),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .header("x-api-key", &self.key)
    }

    /// `GET path` with the client key; status and JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .get(self.url(path))
            .header("x-api-key", &self.key)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Posts `body` to `/v1/messages`.
    pub async fn send(&self, body: &serde_json::Value) -> reqwest::Response {
        self.post("/v1/messages").json(body).send().await.unwrap()
    }

    pub async fn messages(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self.send(&body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// A provider's entry on `/ready` (breaker and key state); the app must
    /// run with `server.ready_detail = true`.
    pub async fn ready_provider(&self, provider: &str) -> serde_json::Value {
        let (_, ready) = self.get_json("/ready").await;
        ready["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == provider)
            .unwrap()
            .clone()
    }

    /// Stops the server gracefully and waits until it has flushed its logs.
    pub async fn stop(mut self) -> AppState {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.unwrap();
        }
        self.state.clone()
    }
}

/// A gateway with one OpenAI-format provider `p` (every tier) whose mock
/// answers "hi there"; `tweak` adjusts the settings.
pub async fn openai_app_with(tweak: impl FnOnce(&mut Settings)) -> (MockUpstream, TestApp) {
    let mock = MockUpstream::start(|_, _| Reply::Json(200, openai_text("hi there"))).await;
    let providers = providers_toml(&[("p", "openai", &mock.url(), 1)]);
    (mock, TestApp::spawn_with(&providers, tweak).await)
}

pub async fn openai_app() -> (MockUpstream, TestApp) {
    openai_app_with(|_| {}).await
}

/// A 429 answer with the given `Retry-After`.
pub fn rate_limited(retry_after: &str) -> Reply {
    Reply::Raw(
        429,
        vec![("retry-after", retry_after.to_string())],
        "{\"error\":{\"message\":\"slow down\"}}".into(),
    )
}

pub fn hello(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": "hello"}]})
}

/// The first admin every `TestApp` starts with.
pub const ADMIN_EMAIL: &str = "admin@localhost";
pub const ADMIN_PASSWORD: &str = "integration-test-password";

/// Admin API helpers.
impl TestApp {
    /// Creates a user with `role` straight in the store; returns their password.
    pub async fn add_user(&self, email: &str, role: abridge::store::Role) -> String {
        let password = format!("password-of-{email}");
        let hash = abridge::secrets::password::hash(password.clone())
            .await
            .unwrap();
        let user = self
            .state
            .store
            .create_user(email, &hash, role)
            .await
            .unwrap();
        self.state.identity.remember(&user);
        password
    }

    /// Logs in through the API; returns the bearer token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .client
            .post(self.url("/api/auth/login"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login of {email}");
        let body: serde_json::Value = r.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    /// A request to the admin API, with a bearer token when given.
    pub fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Status and JSON body of a `GET` with a bearer token.
    pub async fn api_get(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let r = self
            .api(reqwest::Method::GET, path, Some(token))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}
