//! Transient faults: every store is wrapped in [`Retrying`], which retries
//! the errors another attempt may not hit, under one [`RetryPolicy`]
//! (bounded attempts and total time, backoff with jitter). Which errors are
//! transient is decided from what caused them, not from the kind of store
//! error: a dropped connection, a timeout or an interrupted read is; a 400,
//! a 416, a missing or unreadable local file is not. On S3, object_store's
//! own retries handle answers by status (5xx, 429, `SlowDown`), timeouts of
//! idempotent calls and interrupted bodies; this layer adds what they leave
//! out: a conditional create whose answer timed out, which every caller
//! takes `AlreadyExists` for after a retry. With the `failpoints` feature,
//! `LOGFERRY_FAULT_RATE=0.1` also wraps stores in [`Faulty`], which fails
//! that share of calls, sometimes before the call reaches the store and
//! sometimes after (the effect happened, the answer was lost), so that the
//! test suite can prove a run under faults ends as a clean run does.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use crate::retry::RetryPolicy;
pub use crate::retry::backoff;

/// Attempts per call of a local store before an error is returned.
pub const STORE_ATTEMPTS: u32 = 6;

/// Total time a store call may spend retrying, unless configured.
pub const STORE_RETRY_BUDGET: Duration = Duration::from_secs(120);

/// The policy of stores opened without settings.
pub const DEFAULT_POLICY: RetryPolicy = RetryPolicy::new(STORE_ATTEMPTS, STORE_RETRY_BUDGET);

/// The error of a fault injected by [`Faulty`]: what a flaky network or
/// service would have done, so it counts as transient.
#[derive(Debug, thiserror::Error)]
#[error("injected fault on {0}")]
pub struct Injected(pub String);

/// True for store errors worth another attempt: the cause (anywhere in
/// the error's chain) is a dropped or refused connection, a timeout, an
/// interrupted read or write, or an injected fault. HTTP answers by status
/// are not: object_store retried those it should (5xx, 429) already.
pub fn transient(e: &object_store::Error) -> bool {
    match e {
        object_store::Error::Generic { source, .. } => cause_is_transient(source.as_ref()),
        object_store::Error::JoinError { .. } => true,
        _ => false,
    }
}

/// True when some error in the chain from `e` is a transient cause (see
/// [`transient`]).
pub fn cause_is_transient(e: &(dyn std::error::Error + 'static)) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<Injected>() {
            return true;
        }
        if let Some(h) = err.downcast_ref::<HttpError>() {
            return matches!(
                h.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io_transient(io) {
                return true;
            }
            // An I/O error wrapping another hides it from `source()`.
            if let Some(inner) = io.get_ref() {
                cur = Some(inner);
                continue;
            }
        }
        cur = err.source();
    }
    false
}

/// I/O errors another attempt may not hit.
pub fn io_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::Interrupted
            | K::TimedOut
            | K::WouldBlock
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::ConnectionRefused
            | K::BrokenPipe
            | K::UnexpectedEof
    )
}

async fn retry<T, F, Fut>(policy: RetryPolicy, what: &str, f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    policy.run(what, transient, f).await
}

/// A store whose transient failures are retried.
#[derive(Debug)]
pub struct Retrying {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl Retrying {
    /// Wraps `inner`, making up to `attempts` attempts per call within the
    /// default budget.
    pub fn new(inner: Arc<dyn ObjectStore>, attempts: u32) -> Self {
        Self::with_policy(inner, RetryPolicy::new(attempts, STORE_RETRY_BUDGET))
    }

    /// Wraps `inner` under `policy`.
    pub fn with_policy(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        Retrying { inner, policy }
    }
}

impl std::fmt::Display for Retrying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Retrying({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Retrying {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        retry(self.policy, "put", || {
            self.inner.put_opts(location, payload.clone(), opts.clone())
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        retry(self.policy, "multipart", || {
            self.inner.put_multipart_opts(location, opts.clone())
        })
        .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        retry(self.policy, "get", || {
            self.inner.get_opts(location, options.clone())
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        retry(self.policy, "get ranges", || {
            self.inner.get_ranges(location, ranges)
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = self.inner.clone();
        let policy = self.policy;
        locations
            .then(move |loc| {
                let inner = inner.clone();
                async move {
                    let p = loc?;
                    retry(policy, "delete", || inner.delete(&p)).await?;
                    Ok(p)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        // A listing is retried whole: collected, then handed out.
        let inner = self.inner.clone();
        let prefix = prefix.cloned();
        let policy = self.policy;
        futures::stream::once(async move {
            retry(policy, "list", || {
                inner.list(prefix.as_ref()).try_collect::<Vec<_>>()
            })
            .await
        })
        .map_ok(|v| futures::stream::iter(v.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let (prefix, offset) = (prefix.cloned(), offset.clone());
        let policy = self.policy;
        futures::stream::once(async move {
            retry(policy, "list", || {
                inner
                    .list_with_offset(prefix.as_ref(), &offset)
                    .try_collect::<Vec<_>>()
            })
            .await
        })
        .map_ok(|v| futures::stream::iter(v.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        retry(self.policy, "list", || {
            self.inner.list_with_delimiter(prefix)
        })
        .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        retry(self.policy, "copy", || {
            self.inner.copy_opts(from, to, options.clone())
        })
        .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        retry(self.policy, "rename", || {
            self.inner.rename_opts(from, to, options.clone())
        })
        .await
    }
}

/// Faults injected in this process so far.
static INJECTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Faults injected in this process so far (0 without fault injection).
pub fn injected() -> u64 {
    INJECTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Fails a share of store calls (test builds), multipart parts included.
#[derive(Debug)]
pub struct Faulty {
    inner: Arc<dyn ObjectStore>,
    dice: Arc<Dice>,
}

/// The seeded choice of which calls fail, shared by a store and its uploads.
#[derive(Debug)]
struct Dice {
    rate: f64,
    /// Calls after this many fail, all of them.
    fail_after: u64,
    /// (xorshift state, calls so far, faults injected).
    state: Mutex<(u64, u64, u64)>,
}

/// Where an injected fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strike {
    /// The call never reaches the store.
    Before,
    /// The call takes effect; its answer is lost.
    After,
}

impl Faulty {
    /// Wraps `inner`, failing `rate` of the calls; `seed` fixes the choice.
    pub fn new(inner: Arc<dyn ObjectStore>, rate: f64, seed: u64) -> Self {
        Faulty {
            inner,
            dice: Arc::new(Dice {
                rate: rate.clamp(0.0, 1.0),
                fail_after: u64::MAX,
                state: Mutex::new((seed | 1, 0, 0)),
            }),
        }
    }

    /// Fails every call after the first `n`, as a store that went away.
    pub fn failing_after(self, n: u64) -> Self {
        let dice = Dice {
            rate: self.dice.rate,
            fail_after: n,
            state: Mutex::new(*self.dice.state.lock().unwrap_or_else(|e| e.into_inner())),
        };
        Faulty {
            inner: self.inner,
            dice: Arc::new(dice),
        }
    }

    /// Faults this store (and its uploads) injected so far.
    pub fn injected_here(&self) -> u64 {
        self.dice.state.lock().unwrap_or_else(|e| e.into_inner()).2
    }

    fn roll(&self) -> Option<Strike> {
        self.dice.roll()
    }

    fn fault(what: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "faulty",
            source: Box::new(Injected(what.to_string())),
        }
    }
}

impl Dice {
    fn roll(&self) -> Option<Strike> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (s, calls, injected) = &mut *guard;
        *calls += 1;
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        let x = (*s >> 11) as f64 / (1u64 << 53) as f64;
        let strike = if *calls > self.fail_after {
            Some(Strike::Before)
        } else if x >= self.rate {
            None
        } else if (*s & 1) == 0 {
            Some(Strike::Before)
        } else {
            Some(Strike::After)
        };
        if strike.is_some() {
            *injected += 1;
            INJECTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        strike
    }
}

/// A multipart upload of a [`Faulty`] store: parts and the completion fail
/// as the store's calls do.
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    dice: Arc<Dice>,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        match self.dice.roll() {
            Some(Strike::Before) => Box::pin(async { Err(Faulty::fault("part")) }),
            Some(Strike::After) => {
                let part = self.inner.put_part(data);
                Box::pin(async move {
                    part.await?;
                    Err(Faulty::fault("part (after it landed)"))
                })
            }
            None => self.inner.put_part(data),
        }
    }

    async fn complete(&mut self) -> Result<PutResult> {
        match self.dice.roll() {
            Some(Strike::Before) => Err(Faulty::fault("complete")),
            Some(Strike::After) => {
                self.inner.complete().await?;
                Err(Faulty::fault("complete (after it happened)"))
            }
            None => self.inner.complete().await,
        }
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({}, {})", self.inner, self.dice.rate)
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        match self.roll() {
            Some(Strike::Before) => Err(Self::fault("put")),
            Some(Strike::After) => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(Self::fault("put (after it landed)"))
            }
            None => self.inner.put_opts(location, payload, opts).await,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        match self.roll() {
            Some(_) => Err(Self::fault("multipart")),
            None => {
                let inner = self.inner.put_multipart_opts(location, opts).await?;
                Ok(Box::new(FaultyUpload {
                    inner,
                    dice: self.dice.clone(),
                }))
            }
        }
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        match self.roll() {
            Some(_) => Err(Self::fault("get")),
            None => self.inner.get_opts(location, options).await,
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        match self.roll() {
            Some(_) => Err(Self::fault("get ranges")),
            None => self.inner.get_ranges(location, ranges).await,
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let strike = self.roll();
        let inner = self.inner.clone();
        locations
            .then(move |loc| {
                let inner = inner.clone();
                async move {
                    let p = loc?;
                    match strike {
                        Some(Strike::Before) => Err(Self::fault("delete")),
                        Some(Strike::After) => {
                            inner.delete(&p).await?;
                            Err(Self::fault("delete (after it happened)"))
                        }
                        None => {
                            inner.delete(&p).await?;
                            Ok(p)
                        }
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.roll() {
            Some(_) => futures::stream::once(async { Err(Self::fault("list")) }).boxed(),
            None => self.inner.list(prefix),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.roll() {
            Some(_) => futures::stream::once(async { Err(Self::fault("list")) }).boxed(),
            None => self.inner.list_with_offset(prefix, offset),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        match self.roll() {
            Some(_) => Err(Self::fault("list")),
            None => self.inner.list_with_delimiter(prefix).await,
        }
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        match self.roll() {
            Some(_) => Err(Self::fault("copy")),
            None => self.inner.copy_opts(from, to, options).await,
        }
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        match self.roll() {
            Some(_) => Err(Self::fault("rename")),
            None => self.inner.rename_opts(from, to, options).await,
        }
    }
}

/// Wraps a store for use by the pipeline: transient errors retried under
/// `policy`, and, in `failpoints` builds, faults
/// injected beneath the retries: `LOGFERRY_FAULT_RATE` (0.0 to 1.0) of the
/// calls fail, the choice fixed by `LOGFERRY_FAULT_SEED`; with
/// `LOGFERRY_FAULT_AFTER=n`, every call after the first n of each store
/// fails (a run that cannot finish).
pub fn wrap(store: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Arc<dyn ObjectStore> {
    #[cfg(feature = "failpoints")]
    let store = inject(store);
    Arc::new(Retrying::with_policy(store, policy))
}

#[cfg(feature = "failpoints")]
fn inject(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let rate = var("LOGFERRY_FAULT_RATE");
    let after = var("LOGFERRY_FAULT_AFTER");
    if rate.is_none() && after.is_none() {
        return store;
    }
    // A test's fault settings are never guessed at: bad ones stop it.
    let num = |k: &str, v: Option<String>| -> Option<f64> {
        v.map(|v| {
            v.trim()
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("{k}={v:?} is not a number"))
        })
    };
    let rate = num("LOGFERRY_FAULT_RATE", rate).unwrap_or(0.0);
    let seed = num("LOGFERRY_FAULT_SEED", var("LOGFERRY_FAULT_SEED")).unwrap_or(24301.0);
    let mut f = Faulty::new(store, rate, seed as u64);
    if let Some(n) = num("LOGFERRY_FAULT_AFTER", after) {
        f = f.failing_after(n as u64);
    }
    Arc::new(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn retries_carry_a_faulty_store_through() {
        let faulty: Arc<dyn ObjectStore> = Arc::new(Faulty::new(Arc::new(InMemory::new()), 0.3, 7));
        let store = Retrying::new(faulty, STORE_ATTEMPTS);
        for i in 0..40 {
            let p = Path::from(format!("k/{i}"));
            // A put that landed but lost its answer is retried as a create:
            // AlreadyExists is then the truth, not an error of ours.
            let opts = PutOptions::from(object_store::PutMode::Create);
            match store
                .put_opts(&p, PutPayload::from_static(b"x"), opts)
                .await
            {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => panic!("{e}"),
            }
            assert_eq!(
                &store.get(&p).await.unwrap().bytes().await.unwrap()[..],
                b"x"
            );
        }
        let listed: Vec<_> = store
            .list(Some(&Path::from("k")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 40);
    }

    #[test]
    fn only_transient_causes_are_retried() {
        let generic =
            |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
                store: "test",
                source,
            };
        let io = |k: std::io::ErrorKind| generic(Box::new(std::io::Error::new(k, "x")));
        assert!(transient(&generic(Box::new(Injected("get".into())))));
        assert!(transient(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(transient(&io(std::io::ErrorKind::TimedOut)));
        // Local I/O that another attempt will meet again, and answers by
        // status (object_store's own retries handled those it should).
        assert!(!transient(&io(std::io::ErrorKind::PermissionDenied)));
        assert!(!transient(&io(std::io::ErrorKind::NotFound)));
        assert!(!transient(&generic(
            "Server returned non-2xx status code: 416".into()
        )));
        assert!(!transient(&object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into()
        }));
        // The cause counts wherever it sits in the chain.
        let wrapped =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe"));
        assert!(transient(&generic(Box::new(wrapped))));
    }

    #[tokio::test]
    async fn every_call_failing_fails_after_bounded_attempts() {
        let store = Retrying::new(
            Arc::new(Faulty::new(Arc::new(InMemory::new()), 1.0, 3)),
            STORE_ATTEMPTS,
        );
        let t0 = std::time::Instant::now();
        let e = store.get(&Path::from("x")).await.unwrap_err();
        assert!(transient(&e), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(30));
    }
}
