//! A local Lambda Runtime API: the 2018-06-01 protocol a `provided.al2023`
//! `bootstrap` speaks, served on loopback. It hands the function the events
//! it is given, one per `GET .../invocation/next`, with the headers Lambda
//! sends (request id, deadline, function ARN, trace id), and records what
//! the function answers (`.../response`, `.../error`, `.../init/error`).
//!
//! [`invoke`] runs a `bootstrap` against it as Lambda would (its
//! environment, a fresh process) and measures its cold start: process start
//! to the first `next` (init), and to the first answer (init and the first
//! event). Used by the tests and by `logferry tool lambda-invoke`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

/// What the function answered to one event.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The request id it was handed.
    pub request_id: String,
    /// `response` (true) or `error` (false).
    pub ok: bool,
    /// The body it posted (JSON, or the text as a JSON string).
    pub body: Value,
    /// From handing the event to the answer, milliseconds.
    pub handler_ms: f64,
    #[serde(skip)]
    answered: Option<Instant>,
}

struct Shared {
    queue: Mutex<VecDeque<(String, Value)>>,
    pushed: Notify,
    handed: Mutex<std::collections::HashMap<String, Instant>>,
    first_next: Mutex<Option<Instant>>,
    init_error: Mutex<Option<Value>>,
    answers: mpsc::UnboundedSender<Outcome>,
    timeout: Duration,
    function_arn: String,
}

/// The server, on a free loopback port until dropped.
pub struct LocalRuntime {
    addr: SocketAddr,
    shared: Arc<Shared>,
    answers: tokio::sync::Mutex<mpsc::UnboundedReceiver<Outcome>>,
    server: tokio::task::JoinHandle<()>,
    seq: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for LocalRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRuntime")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for LocalRuntime {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn body_value(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into()))
}

async fn next(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    s.first_next
        .lock()
        .map(|mut f| {
            f.get_or_insert_with(Instant::now);
        })
        .ok();
    let (id, event) = loop {
        let popped = s.queue.lock().ok().and_then(|mut q| q.pop_front());
        match popped {
            Some(e) => break e,
            None => s.pushed.notified().await,
        }
    };
    if let Ok(mut h) = s.handed.lock() {
        h.insert(id.clone(), Instant::now());
    }
    let deadline = chrono::Utc::now().timestamp_millis() as u64 + s.timeout.as_millis() as u64;
    let mut headers = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    };
    set("lambda-runtime-aws-request-id", id.clone());
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        s.function_arn.clone(),
    );
    set(
        "lambda-runtime-trace-id",
        format!("Root=1-00000000-{id};Sampled=0"),
    );
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, event.to_string())
}

fn answer(s: &Shared, id: String, ok: bool, body: &Bytes) -> StatusCode {
    let handed = s.handed.lock().ok().and_then(|mut h| h.remove(&id));
    let Some(handed) = handed else {
        return StatusCode::NOT_FOUND;
    };
    let now = Instant::now();
    let _ = s.answers.send(Outcome {
        request_id: id,
        ok,
        body: body_value(body),
        handler_ms: now.duration_since(handed).as_secs_f64() * 1000.0,
        answered: Some(now),
    });
    StatusCode::ACCEPTED
}

async fn response(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    answer(&s, id, true, &body)
}

async fn error(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    answer(&s, id, false, &body)
}

async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    if let Ok(mut e) = s.init_error.lock() {
        *e = Some(body_value(&body));
    }
    StatusCode::ACCEPTED
}

impl LocalRuntime {
    /// Starts the server; each event's deadline is `timeout` after it is
    /// handed out.
    pub async fn start(timeout: Duration) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            pushed: Notify::new(),
            handed: Mutex::default(),
            first_next: Mutex::default(),
            init_error: Mutex::default(),
            answers: tx,
            timeout,
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:logferry-local".into(),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "The local Lambda Runtime API stopped.");
            }
        });
        Ok(LocalRuntime {
            addr,
            shared,
            answers: tokio::sync::Mutex::new(rx),
            server,
            seq: Default::default(),
        })
    }

    /// What `AWS_LAMBDA_RUNTIME_API` is set to.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Queues an event; returns its request id.
    pub fn push(&self, event: Value) -> String {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("00000000-0000-4000-8000-{n:012}");
        if let Ok(mut q) = self.shared.queue.lock() {
            q.push_back((id.clone(), event));
        }
        self.shared.pushed.notify_one();
        id
    }

    /// The next answer, waiting at most `timeout`.
    pub async fn answer(&self, timeout: Duration) -> Option<Outcome> {
        let mut rx = self.answers.lock().await;
        tokio::time::timeout(timeout, rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// When the function first asked for an event.
    pub fn first_next(&self) -> Option<Instant> {
        self.shared.first_next.lock().ok().and_then(|f| *f)
    }

    /// What the function reported at `init/error`, if it did.
    pub fn init_error(&self) -> Option<Value> {
        self.shared.init_error.lock().ok().and_then(|e| e.clone())
    }
}

/// The environment Lambda gives a function, pointing at `endpoint`.
pub fn lambda_env(endpoint: &str, function: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", endpoint),
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/logferry-local"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "local"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// What [`invoke`] saw.
#[derive(Debug, Clone, Serialize)]
pub struct Invoked {
    /// Process start to its first `next`, milliseconds.
    pub init_ms: Option<f64>,
    /// Process start to its first answer, milliseconds: the cold start
    /// as a caller sees it.
    pub cold_start_ms: Option<f64>,
    /// The answers, in order.
    pub outcomes: Vec<Outcome>,
    /// What the function reported at `init/error`.
    pub init_error: Option<Value>,
    /// Its exit status, when it exited on its own (a function that starts
    /// well never does).
    pub exited: Option<String>,
    /// Its standard output and error, line by line.
    pub stdout: Vec<String>,
    /// Standard error.
    pub stderr: Vec<String>,
}

/// Runs `bootstrap` as Lambda would (`env` on top of Lambda's own
/// environment, a fresh process), hands it `events` one at a time, and stops
/// it once it answered them all, `timeout` after an event went unanswered,
/// or when it exits.
pub async fn invoke(
    bootstrap: &Path,
    env: &[(String, String)],
    events: Vec<Value>,
    timeout: Duration,
) -> std::io::Result<Invoked> {
    use tokio::io::AsyncBufReadExt;
    let rt = LocalRuntime::start(timeout).await?;
    let n = events.len();
    for e in events {
        rt.push(e);
    }
    let mut cmd = tokio::process::Command::new(bootstrap);
    cmd.envs(lambda_env(&rt.endpoint(), "logferry-local"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let lines = |r: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        tokio::spawn(async move {
            let mut out = Vec::new();
            if let Some(r) = r {
                let mut l = tokio::io::BufReader::new(r).lines();
                while let Ok(Some(line)) = l.next_line().await {
                    out.push(line);
                }
            }
            out
        })
    };
    let stdout = lines(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    );
    let stderr = lines(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    );
    let mut outcomes = Vec::new();
    let mut exited = None;
    while outcomes.len() < n {
        tokio::select! {
            a = rt.answer(timeout) => match a {
                Some(o) => outcomes.push(o),
                None => break,
            },
            status = child.wait() => {
                exited = Some(match status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                });
                // Answers sent just before it exited.
                while let Some(o) = rt.answer(Duration::from_millis(100)).await {
                    outcomes.push(o);
                }
                break;
            }
        }
    }
    if exited.is_none() {
        let _ = child.start_kill();
    }
    let _ = child.wait().await;
    let ms = |t: Instant| t.duration_since(start).as_secs_f64() * 1000.0;
    Ok(Invoked {
        init_ms: rt.first_next().map(ms),
        cold_start_ms: outcomes.first().and_then(|o| o.answered).map(ms),
        outcomes,
        init_error: rt.init_error(),
        exited,
        stdout: stdout.await.unwrap_or_default(),
        stderr: stderr.await.unwrap_or_default(),
    })
}
