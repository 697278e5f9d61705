//! A fault-injecting HTTP/1.1 proxy between logferry and an emulator: for
//! a configurable share of requests it answers with the service's error
//! (503 SlowDown from S3, ProvisionedThroughputExceeded from Kinesis, 503
//! or 429 from Google's APIs), lets the request through and then loses the
//! answer (a 500, or a dropped connection), drops the connection before
//! forwarding, or stalls past the client's timeout. Every other request is
//! passed through untouched. Each proxied request uses a fresh upstream
//! connection, and each client connection carries one request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What happened to the requests, by kind.
#[derive(Debug, Default)]
pub struct Counts {
    pub passed: AtomicU64,
    pub error_before: AtomicU64,
    pub error_after: AtomicU64,
    pub drop_before: AtomicU64,
    pub drop_after: AtomicU64,
    pub stalled: AtomicU64,
}

impl Counts {
    pub fn faults(&self) -> u64 {
        self.error_before.load(Ordering::Relaxed)
            + self.error_after.load(Ordering::Relaxed)
            + self.drop_before.load(Ordering::Relaxed)
            + self.drop_after.load(Ordering::Relaxed)
            + self.stalled.load(Ordering::Relaxed)
    }

    /// Starts counting afresh.
    pub fn reset(&self) {
        for c in [
            &self.passed,
            &self.error_before,
            &self.error_after,
            &self.drop_before,
            &self.drop_after,
            &self.stalled,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    pub fn total(&self) -> u64 {
        self.faults() + self.passed.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        format!(
            "{} requests: {} passed, {} errors before, {} errors after, {} dropped before, \
             {} dropped after, {} stalled",
            self.total(),
            self.passed.load(Ordering::Relaxed),
            self.error_before.load(Ordering::Relaxed),
            self.error_after.load(Ordering::Relaxed),
            self.drop_before.load(Ordering::Relaxed),
            self.drop_after.load(Ordering::Relaxed),
            self.stalled.load(Ordering::Relaxed),
        )
    }
}

/// A running proxy.
pub struct FaultProxy {
    pub addr: SocketAddr,
    /// Faults per million requests.
    rate: Arc<AtomicU32>,
    pub counts: Arc<Counts>,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    ErrorBefore,
    ErrorAfter,
    DropBefore,
    DropAfter,
    Stall,
}

/// SplitMix64 over a shared counter: the fault sequence is fixed by the seed.
fn roll(state: &AtomicU64) -> u64 {
    let mut z = state
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on a loopback port, in a thread of its
    /// own; `stall` is how long a stalled request hangs before its
    /// connection is dropped.
    pub fn start(upstream: SocketAddr, seed: u64, stall: Duration) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let rate = Arc::new(AtomicU32::new(0));
        let counts = Arc::new(Counts::default());
        let (r, c) = (rate.clone(), counts.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let state = Arc::new(AtomicU64::new(seed));
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let (r, c, state) = (r.clone(), c.clone(), state.clone());
                    tokio::spawn(async move {
                        let _ = serve(client, upstream, &r, &c, &state, stall).await;
                    });
                }
            });
        });
        FaultProxy { addr, rate, counts }
    }

    /// Sets the share of requests that fail, 0.0 to 1.0.
    pub fn set_rate(&self, rate: f64) {
        self.rate
            .store((rate.clamp(0.0, 1.0) * 1e6) as u32, Ordering::Relaxed);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Reads one request: its head and its whole body, as received.
async fn read_request(client: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut body = buf[head_end..].to_vec();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < len {
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        // Raw chunks are forwarded as they came; read up to the last one.
        while !chunked_complete(&body) {
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(Some((head, body)))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// True when a chunked body holds its terminating zero-size chunk.
fn chunked_complete(body: &[u8]) -> bool {
    let mut i = 0;
    loop {
        let Some(eol) = find(&body[i..], b"\r\n") else {
            return false;
        };
        let size_text = String::from_utf8_lossy(&body[i..i + eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            return false;
        };
        i += eol + 2;
        if size == 0 {
            // Trailers end with an empty line.
            return find(&body[i..], b"\r\n").is_some();
        }
        i += size + 2;
        if i > body.len() {
            return false;
        }
    }
}

/// The head with `Connection: close` in place of any connection header.
fn closing(head: &str) -> String {
    let mut out = String::new();
    for l in head.split("\r\n").filter(|l| !l.is_empty()) {
        if l.split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

async fn forward(upstream: SocketAddr, head: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(closing(head).as_bytes()).await?;
    up.write_all(body).await?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await?;
    Ok(resp)
}

/// The error a service answers when it is overloaded, for this request.
fn service_error(head: &str, after: bool) -> String {
    let lower = head.to_ascii_lowercase();
    let (status, content_type, body) = if lower.contains("x-amz-target: kinesis") {
        let kind = if lower.contains("getrecords") || lower.contains("putrecord") {
            "ProvisionedThroughputExceededException"
        } else {
            "LimitExceededException"
        };
        if after {
            (
                "500 Internal Server Error",
                "application/x-amz-json-1.1",
                r#"{"__type":"InternalFailure","message":"injected"}"#.to_string(),
            )
        } else {
            (
                "400 Bad Request",
                "application/x-amz-json-1.1",
                format!(r#"{{"__type":"{kind}","message":"Rate exceeded (injected)"}}"#),
            )
        }
    } else if lower.contains("x-amz-") || lower.contains("authorization: aws4") {
        let (status, code) = if after {
            ("500 Internal Server Error", "InternalError")
        } else {
            ("503 Slow Down", "SlowDown")
        };
        (
            status,
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
                 <Message>injected</Message></Error>"
            ),
        )
    } else {
        let (status, code, reason) = if after {
            ("500 Internal Server Error", 500, "backendError")
        } else if lower.contains("/bigquery/") {
            ("429 Too Many Requests", 429, "rateLimitExceeded")
        } else {
            ("503 Service Unavailable", 503, "backendError")
        };
        (
            status,
            "application/json",
            format!(
                r#"{{"error":{{"code":{code},"message":"injected","errors":[{{"reason":"{reason}","message":"injected"}}]}}}}"#
            ),
        )
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    rate: &AtomicU32,
    counts: &Counts,
    state: &AtomicU64,
    stall: Duration,
) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut client).await? else {
        return Ok(());
    };
    let x = roll(state);
    let fault = if (x % 1_000_000) < u64::from(rate.load(Ordering::Relaxed)) {
        Some(match (x >> 32) % 40 {
            0..=13 => Fault::ErrorBefore,
            14..=20 => Fault::ErrorAfter,
            21..=29 => Fault::DropBefore,
            30..=38 => Fault::DropAfter,
            _ => Fault::Stall,
        })
    } else {
        None
    };
    match fault {
        None => {
            counts.passed.fetch_add(1, Ordering::Relaxed);
            let resp = forward(upstream, &head, &body).await?;
            let head_end = find(&resp, b"\r\n\r\n").map_or(resp.len(), |i| i + 4);
            let resp_head = String::from_utf8_lossy(&resp[..head_end]).to_string();
            client.write_all(closing(&resp_head).as_bytes()).await?;
            client.write_all(&resp[head_end..]).await?;
        }
        Some(Fault::ErrorBefore) => {
            counts.error_before.fetch_add(1, Ordering::Relaxed);
            client
                .write_all(service_error(&head, false).as_bytes())
                .await?;
        }
        Some(Fault::ErrorAfter) => {
            counts.error_after.fetch_add(1, Ordering::Relaxed);
            forward(upstream, &head, &body).await?;
            client
                .write_all(service_error(&head, true).as_bytes())
                .await?;
        }
        Some(Fault::DropBefore) => {
            counts.drop_before.fetch_add(1, Ordering::Relaxed);
        }
        Some(Fault::DropAfter) => {
            counts.drop_after.fetch_add(1, Ordering::Relaxed);
            forward(upstream, &head, &body).await?;
        }
        Some(Fault::Stall) => {
            counts.stalled.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(stall).await;
        }
    }
    client.shutdown().await
}

#[test]
fn chunked_bodies_are_read_to_their_end() {
    assert!(!chunked_complete(b"5\r\nhello\r\n"));
    assert!(chunked_complete(b"5\r\nhello\r\n0\r\n\r\n"));
    assert!(!chunked_complete(b"5\r\nhel"));
    assert_eq!(
        closing("GET / HTTP/1.1\r\nHost: x\r\nconnection: keep-alive\r\n\r\n"),
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
}
