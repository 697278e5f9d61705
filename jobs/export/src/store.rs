//! The export store: where curated Parquet ships over the transit link and
//! where the warehouse loads from. A local directory (any object store) in
//! the embedded default; a GCS bucket in a real deployment, written with the
//! `gcloud-storage` JSON API client, with integrity checks, a bandwidth cap
//! and retries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::objects::Object;
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};
use md5::Digest;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tokio::sync::Mutex;

use logferry_core::config::GcsSettings;
use logferry_core::storage::{Created, Location, delete_if_exists, get_bytes};

use crate::error::{Error, Result};

/// Where exported objects go.
#[async_trait]
pub trait ExportStore: Send + Sync + std::fmt::Debug {
    /// Writes an object unless one exists; an existing object of a
    /// different size or checksum is an error (names are deterministic, so
    /// the same name must hold the same bytes).
    async fn put_create(&self, path: &str, bytes: Bytes) -> Result<Created>;
    /// Reads an object.
    async fn get(&self, path: &str) -> Result<Bytes>;
    /// Deletes an object; a missing one is not an error.
    async fn delete(&self, path: &str) -> Result<()>;
    /// The URI a warehouse load reads the object from (`gs://bucket/...`).
    fn uri(&self, path: &str) -> String;
}

/// An export store on an object store (the embedded default: a directory).
#[derive(Debug, Clone)]
pub struct ObjectExport {
    location: Location,
}

impl ObjectExport {
    /// An export store at a location.
    pub fn new(location: Location) -> Self {
        ObjectExport { location }
    }
}

#[async_trait]
impl ExportStore for ObjectExport {
    async fn put_create(&self, path: &str, bytes: Bytes) -> Result<Created> {
        let p = Path::from(path);
        let size = bytes.len() as u64;
        let created = self.location.put_create(&p, bytes).await?;
        if created == Created::Existed {
            let meta = self
                .location
                .store
                .head(&p)
                .await
                .map_err(|e| logferry_core::Error::storage(path, e))?;
            if meta.size != size {
                return Err(Error::ExportMismatch {
                    path: path.to_string(),
                    existing: meta.size,
                    expected: size,
                });
            }
        }
        Ok(created)
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        Ok(get_bytes(self.location.store.as_ref(), &Path::from(path)).await?)
    }

    async fn delete(&self, path: &str) -> Result<()> {
        Ok(delete_if_exists(self.location.store.as_ref(), &Path::from(path)).await?)
    }

    fn uri(&self, path: &str) -> String {
        path.to_string()
    }
}

/// Caps the bytes per second sent by all uploads together (a token bucket
/// that may go into debt: an upload larger than a second's budget waits for
/// its share afterwards instead of never starting).
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_second: u64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A limiter; 0 means no cap.
    pub fn new(bytes_per_second: u64) -> Self {
        RateLimiter {
            bytes_per_second,
            state: Mutex::new((bytes_per_second as f64, Instant::now())),
        }
    }

    /// Waits until `bytes` may be sent.
    pub async fn acquire(&self, bytes: u64) {
        if self.bytes_per_second == 0 {
            return;
        }
        let rate = self.bytes_per_second as f64;
        let wait = {
            let mut s = self.state.lock().await;
            let now = Instant::now();
            let refill = now.duration_since(s.1).as_secs_f64() * rate;
            s.0 = (s.0 + refill).min(rate);
            s.1 = now;
            s.0 -= bytes as f64;
            if s.0 < 0.0 {
                Duration::from_secs_f64(-s.0 / rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Base64 CRC32C (big-endian) and MD5 of a payload, as GCS reports them.
pub fn checksums(bytes: &[u8]) -> (String, String) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let crc = b64.encode(crc32c::crc32c(bytes).to_be_bytes());
    let md5 = b64.encode(md5::Md5::digest(bytes));
    (crc, md5)
}

/// A GCS bucket (and prefix) as the export store.
#[derive(Clone)]
pub struct GcsExport {
    client: Client,
    bucket: String,
    prefix: String,
    settings: GcsSettings,
    limiter: Arc<RateLimiter>,
}

impl std::fmt::Debug for GcsExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsExport")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.settings.endpoint)
            .finish()
    }
}

fn status(e: &gcloud_storage::http::Error) -> Option<u16> {
    use gcloud_storage::http::Error as E;
    match e {
        E::Response(r) => Some(r.code),
        E::HttpClient(e) | E::RawResponse(e, _) => e.status().map(|s| s.as_u16()),
        _ => None,
    }
}

fn retryable(e: &gcloud_storage::http::Error) -> bool {
    match status(e) {
        Some(s) => s == 408 || s == 429 || s >= 500,
        // Transport errors (connection reset, timeout) have no status.
        None => matches!(
            e,
            gcloud_storage::http::Error::HttpClient(_)
                | gcloud_storage::http::Error::HttpMiddleware(_)
        ),
    }
}

/// One failed attempt of a GCS call.
#[derive(Debug)]
enum Attempt {
    /// No answer within the request timeout.
    TimedOut(Duration),
    /// The client's error.
    Failed(gcloud_storage::http::Error),
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::TimedOut(t) => write!(f, "no answer within {t:?}"),
            Attempt::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl GcsExport {
    /// Opens `gs://bucket/prefix` with the configured endpoint and
    /// credentials.
    pub async fn open(url: &str, settings: &GcsSettings) -> Result<Self> {
        let rest = url
            .strip_prefix("gs://")
            .ok_or_else(|| Error::Config(format!("{url} is not a gs:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Config(format!("{url}: no bucket")));
        }
        let base = ClientConfig {
            storage_endpoint: settings.endpoint.clone(),
            ..ClientConfig::default()
        };
        let config = if settings.anonymous {
            base.anonymous()
        } else {
            base.with_auth().await.map_err(|e| {
                Error::Config(format!(
                    "GCS credentials (application default credentials): {e}"
                ))
            })?
        };
        Ok(GcsExport {
            client: Client::new(config),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            settings: settings.clone(),
            limiter: Arc::new(RateLimiter::new(settings.max_bytes_per_second)),
        })
    }

    fn object(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.prefix)
        }
    }

    async fn with_retries<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, gcloud_storage::http::Error>>,
    {
        let timeout = self.settings.request_timeout;
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let result = self
            .settings
            .retry_policy()
            .run(
                &format!("GCS {what}"),
                |e: &Attempt| match e {
                    Attempt::TimedOut(_) => true,
                    Attempt::Failed(e) => retryable(e),
                },
                || {
                    attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // A call that hangs is abandoned (its connection
                    // dropped) and counts as a transient failure.
                    let call = tokio::time::timeout(timeout, f());
                    async move {
                        match call.await {
                            Ok(Ok(v)) => Ok(v),
                            Ok(Err(e)) => Err(Attempt::Failed(e)),
                            Err(_) => Err(Attempt::TimedOut(timeout)),
                        }
                    }
                },
            )
            .await;
        let n = attempts.load(std::sync::atomic::Ordering::Relaxed);
        result.map_err(|e| match e {
            Attempt::TimedOut(t) => Error::Gcs {
                what: what.to_string(),
                status: None,
                message: format!("no answer within {t:?}, {n} attempts"),
            },
            Attempt::Failed(e) => Error::Gcs {
                what: what.to_string(),
                status: status(&e),
                message: if retryable(&e) {
                    format!("{e} (after {n} attempts)")
                } else {
                    e.to_string()
                },
            },
        })
    }

    /// The object's metadata, `None` when it does not exist.
    async fn metadata(&self, name: &str) -> Result<Option<Object>> {
        let req = GetObjectRequest {
            bucket: self.bucket.clone(),
            object: name.to_string(),
            ..Default::default()
        };
        let r = self
            .with_retries("metadata", || async {
                match self.client.get_object(&req).await {
                    Ok(o) => Ok(Some(o)),
                    Err(e) if status(&e) == Some(404) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        Ok(r)
    }
}

#[async_trait]
impl ExportStore for GcsExport {
    async fn put_create(&self, path: &str, bytes: Bytes) -> Result<Created> {
        let name = self.object(path);
        let (crc, md5) = checksums(&bytes);
        let check = |o: &Object| -> Result<()> {
            let size_ok = o.size == bytes.len() as i64;
            let crc_ok = o.crc32c.as_ref().is_none_or(|c| *c == crc);
            let md5_ok = o.md5_hash.as_ref().is_none_or(|m| *m == md5);
            if size_ok && crc_ok && md5_ok {
                Ok(())
            } else {
                Err(Error::ExportMismatch {
                    path: format!("gs://{}/{name}", self.bucket),
                    existing: o.size.max(0) as u64,
                    expected: bytes.len() as u64,
                })
            }
        };
        // Deterministic names: an existing object is an earlier run's upload.
        if let Some(o) = self.metadata(&name).await? {
            check(&o)?;
            return Ok(Created::Existed);
        }
        self.limiter.acquire(bytes.len() as u64).await;
        // Metadata carries the checksums, so GCS refuses a corrupted body;
        // generation 0 makes the write create-only.
        let meta = Object {
            name: name.clone(),
            content_type: Some("application/vnd.apache.parquet".into()),
            crc32c: Some(crc.clone()),
            md5_hash: Some(md5.clone()),
            ..Default::default()
        };
        let req = UploadObjectRequest {
            bucket: self.bucket.clone(),
            if_generation_match: Some(0),
            ..Default::default()
        };
        let upload = UploadType::Multipart(Box::new(meta));
        let result = self
            .with_retries("upload", || async {
                match self
                    .client
                    .upload_object(&req, bytes.clone(), &upload)
                    .await
                {
                    Ok(o) => Ok(Some(o)),
                    // Created by a concurrent or earlier attempt.
                    Err(e) if status(&e) == Some(412) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        match result {
            Some(o) => {
                check(&o)?;
                Ok(Created::New)
            }
            None => {
                let o = self.metadata(&name).await?.ok_or_else(|| Error::Gcs {
                    what: "upload".into(),
                    status: Some(412),
                    message: format!("{name}: precondition failed but the object is missing"),
                })?;
                check(&o)?;
                Ok(Created::Existed)
            }
        }
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let req = GetObjectRequest {
            bucket: self.bucket.clone(),
            object: self.object(path),
            ..Default::default()
        };
        let range = Range::default();
        let v = self
            .with_retries("download", || self.client.download_object(&req, &range))
            .await?;
        Ok(Bytes::from(v))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let req = DeleteObjectRequest {
            bucket: self.bucket.clone(),
            object: self.object(path),
            ..Default::default()
        };
        self.with_retries("delete", || async {
            match self.client.delete_object(&req).await {
                Ok(()) => Ok(()),
                Err(e) if status(&e) == Some(404) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
    }

    fn uri(&self, path: &str) -> String {
        format!("gs://{}/{}", self.bucket, self.object(path))
    }
}

/// The export store named by the configuration.
pub async fn open(settings: &logferry_core::config::Settings) -> Result<Arc<dyn ExportStore>> {
    if settings.export_url.starts_with("gs://") {
        Ok(Arc::new(
            GcsExport::open(&settings.export_url, &settings.gcs).await?,
        ))
    } else {
        Ok(Arc::new(ObjectExport::new(Location::open_with(
            &settings.export_url,
            &settings.aws,
        )?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_gcs_encoding() {
        // Known values: GCS reports crc32c and md5 of "hello" like this.
        let (crc, md5) = checksums(b"hello");
        assert_eq!(md5, "XUFAKrxLKna5cZ2REBfFkg==");
        assert_eq!(crc, "mnG7TA==");
    }

    #[tokio::test]
    async fn rate_limiter_spreads_bytes_over_time() {
        let l = RateLimiter::new(1_000_000);
        let t0 = Instant::now();
        for _ in 0..4 {
            l.acquire(500_000).await;
        }
        // 2 MB at 1 MB/s with a 1 MB initial budget: about a second.
        let e = t0.elapsed();
        assert!(e >= Duration::from_millis(900), "{e:?}");
        assert!(e < Duration::from_millis(2500), "{e:?}");
        let free = RateLimiter::new(0);
        let t0 = Instant::now();
        free.acquire(u64::MAX).await;
        assert!(t0.elapsed() < Duration::from_millis(50));
    }
}
