//! Storage locations: every place logferry reads or writes is a URL resolved
//! to an `Arc<dyn ObjectStore>` rooted at that URL, plus the helpers for the
//! two kinds of write the pipeline makes (create-once, and Parquet encoding).

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::config::{AwsSettings, ParquetSettings};
use crate::error::{Error, Result};

/// A store rooted at a URL; paths handed to `store` are relative to `url`.
#[derive(Clone)]
pub struct Location {
    /// The URL as configured, for messages.
    pub url: String,
    /// The store, rooted at the URL.
    pub store: Arc<dyn ObjectStore>,
    /// Objects larger than this are written in parts.
    pub multipart_threshold: usize,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location").field("url", &self.url).finish()
    }
}

/// Default part-upload threshold for stores opened without settings.
const DEFAULT_MULTIPART_THRESHOLD: usize = 64 << 20;

impl Location {
    /// Resolves a URL: `s3://bucket/prefix` (region, endpoint and credentials
    /// from the standard AWS environment, overridden by `aws`),
    /// `file:///abs/path`, a plain path, or `memory://`.
    pub fn open_with(url: &str, aws: &AwsSettings) -> Result<Self> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::Config(format!("{url}: no bucket")));
            }
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(r) = &aws.region {
                b = b.with_region(r);
            }
            if let Some(e) = &aws.endpoint {
                b = b.with_endpoint(e);
            }
            // object_store retries answers by status (5xx, 429, SlowDown),
            // timeouts of idempotent calls and interrupted bodies (resumed
            // from where they broke, against the same e-tag), within the
            // budget; faults::wrap adds timed-out conditional creates.
            let policy = aws.retry_policy();
            b = b
                .with_retry(object_store::RetryConfig {
                    max_retries: policy.attempts.saturating_sub(1) as usize,
                    retry_timeout: policy.budget,
                    ..Default::default()
                })
                .with_client_options(
                    object_store::ClientOptions::new()
                        .with_allow_http(aws.allow_http)
                        .with_timeout(aws.request_timeout)
                        .with_connect_timeout(std::time::Duration::from_secs(5)),
                );
            let s3 = b.build().map_err(|e| Error::storage(url, e))?;
            let prefix = prefix.trim_matches('/');
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(crate::rooted::Rooted::new(s3, prefix))
            };
            let store = crate::faults::wrap(store, policy);
            return Ok(Location {
                url: url.to_string(),
                store,
                multipart_threshold: aws.multipart_threshold,
            });
        }
        let mut loc = Self::open(url)?;
        loc.multipart_threshold = aws.multipart_threshold;
        Ok(loc)
    }

    /// Resolves a local URL: `file:///abs/path`, a plain path, or `memory://`.
    pub fn open(url: &str) -> Result<Self> {
        let url = url.trim();
        if url.starts_with("memory://") {
            return Ok(Self::from_store(url, Arc::new(InMemory::new())));
        }
        if let Some((scheme, _)) = url.split_once("://")
            && scheme != "file"
        {
            return Err(Error::Config(format!(
                "{url}: the {scheme}:// scheme is not a lake location \
                 (use s3://, file://, a plain path or memory://)"
            )));
        }
        let path = match url.strip_prefix("file://") {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(url),
        };
        std::fs::create_dir_all(&path).map_err(|e| Error::io(path.display(), e))?;
        let abs = std::fs::canonicalize(&path).map_err(|e| Error::io(path.display(), e))?;
        let store =
            LocalFileSystem::new_with_prefix(&abs).map_err(|e| Error::storage(abs.display(), e))?;
        Ok(Self::from_store(
            format!("file://{}", abs.display()),
            crate::faults::wrap(Arc::new(store), crate::faults::DEFAULT_POLICY),
        ))
    }

    /// Wraps an existing store (tests, shared in-memory stores).
    pub fn from_store(url: impl Into<String>, store: Arc<dyn ObjectStore>) -> Self {
        Location {
            url: url.into(),
            store,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
        }
    }

    /// Create-once write ([`put_create`]); objects above the multipart
    /// threshold go up in parts after a check that none exists (a part
    /// upload cannot be conditional everywhere). A part upload that fails
    /// is aborted and started again, whole, a bounded number of times: the
    /// store's retries cover single calls, and a part cannot be resent
    /// under its number through them.
    pub async fn put_create(&self, path: &Path, bytes: Bytes) -> Result<Created> {
        if bytes.len() <= self.multipart_threshold {
            return put_create(self.store.as_ref(), path, bytes).await;
        }
        let mut attempt = 1;
        loop {
            match self.put_parts_once(path, &bytes).await {
                Err(e) if attempt < MULTIPART_ATTEMPTS => {
                    tracing::warn!(attempt, error = %e, "Part upload failed; starting it again.");
                    tokio::time::sleep(crate::retry::backoff(attempt)).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    async fn put_parts_once(&self, path: &Path, bytes: &Bytes) -> Result<Created> {
        match self.store.head(path).await {
            Ok(_) => return Ok(Created::Existed),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::storage(path, e)),
        }
        let mut upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(|e| Error::storage(path, e))?;
        let parts: Vec<_> = (0..bytes.len())
            .step_by(PART_SIZE)
            .map(|at| {
                let part = bytes.slice(at..bytes.len().min(at + PART_SIZE));
                upload.put_part(PutPayload::from(part))
            })
            .collect();
        let sent = futures::stream::iter(parts)
            .buffer_unordered(PARTS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await;
        let done = match sent {
            Ok(_) => upload.complete().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            // Parts left behind would be billed until a lifecycle rule
            // removes them; a failed abort is only logged.
            if let Err(a) = upload.abort().await {
                tracing::warn!(path = %path, error = %a, "Could not abort a failed part upload.");
            }
            return Err(Error::storage(path, e));
        }
        Ok(Created::New)
    }
}

/// Size of each part of a multipart upload (S3 wants at least 5 MiB).
const PART_SIZE: usize = 16 << 20;
/// Parts of one upload sent at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Whole attempts at a multipart upload.
const MULTIPART_ATTEMPTS: u32 = 4;

/// What a create-once write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The object was written.
    New,
    /// An object already existed at that path; nothing was written.
    Existed,
}

/// Writes an object only if none exists at `path` (`PutMode::Create`). File
/// names in the lake are deterministic, so finding the object already there
/// means an earlier run wrote it: the caller treats that as done.
pub async fn put_create(store: &dyn ObjectStore, path: &Path, bytes: Bytes) -> Result<Created> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store.put_opts(path, PutPayload::from(bytes), opts).await {
        Ok(_) => Ok(Created::New),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(Created::Existed),
        Err(e) => Err(Error::storage(path, e)),
    }
}

/// Lists every object under a prefix (recursively). A missing prefix is empty.
pub async fn list_all(store: &dyn ObjectStore, prefix: &Path) -> Result<Vec<ObjectMeta>> {
    let mut out: Vec<ObjectMeta> = store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|e| Error::storage(prefix, e))?;
    out.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(out)
}

/// Deletes an object; a missing object is not an error.
pub async fn delete_if_exists(store: &dyn ObjectStore, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::storage(path, e)),
    }
}

/// Columns whose values are (nearly) all distinct: a dictionary never pays
/// off and min/max statistics of long strings serve no query, so both are off
/// for them (measured: a sizeable share of the encoder's time).
pub const HIGH_CARDINALITY_COLUMNS: [&str; 7] = [
    "event_id",
    "message",
    "request_id",
    "trace_id",
    "attributes",
    "raw",
    "detail",
];

/// Free-text columns: the ones a higher zstd level shrinks (the ids are
/// random and as small at level 1).
pub const TEXT_COLUMNS: [&str; 4] = ["message", "attributes", "raw", "detail"];

/// Writer properties for every Parquet object logferry writes.
pub fn writer_properties(p: &ParquetSettings) -> Result<WriterProperties> {
    writer_properties_with(p, p.zstd_level)
}

/// Writer properties with the free-text columns at `text_zstd_level`.
pub fn writer_properties_with(
    p: &ParquetSettings,
    text_zstd_level: i32,
) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(p.zstd_level)?;
    let text = Compression::ZSTD(ZstdLevel::try_new(text_zstd_level)?);
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(p.row_group_rows))
        .set_created_by(format!("logferry {}", env!("CARGO_PKG_VERSION")));
    for c in HIGH_CARDINALITY_COLUMNS {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(c), false)
            .set_column_statistics_enabled(ColumnPath::from(c), EnabledStatistics::None);
    }
    for c in TEXT_COLUMNS {
        b = b.set_column_compression(ColumnPath::from(c), text);
    }
    Ok(b.build())
}

/// Encodes batches as one Parquet file in memory.
pub fn encode_parquet(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    props: &WriterProperties,
) -> Result<Bytes> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut buf = Vec::with_capacity(64 * 1024 + rows * 64);
    let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props.clone()))?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(Bytes::from(buf))
}

/// A whole object's bytes. The request and the reading of its body are
/// retried together: a body cut off part-way is read again whole.
pub async fn get_bytes(store: &dyn ObjectStore, path: &Path) -> Result<Bytes> {
    crate::faults::DEFAULT_POLICY
        .run("get", crate::faults::transient, || async {
            store.get(path).await?.bytes().await
        })
        .await
        .map_err(|e| Error::storage(path, e))
}

/// Reads a whole Parquet object into batches.
pub async fn read_parquet(store: &dyn ObjectStore, path: &Path) -> Result<Vec<RecordBatch>> {
    let bytes = get_bytes(store, path).await?;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(batches)
}

/// Arrow schema of a Parquet object, from its footer.
pub async fn parquet_schema(store: &dyn ObjectStore, path: &Path) -> Result<SchemaRef> {
    let bytes = get_bytes(store, path).await?;
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    Ok(b.schema().clone())
}

/// Row count of a Parquet object from its footer, fetching only the footer
/// (two ranged reads).
pub async fn parquet_footer_rows(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    size: u64,
) -> Result<u64> {
    let bad = |d: &str| Error::invalid("Parquet object", format!("{path}: {d}"));
    if size < 12 {
        return Err(bad("too short to be Parquet"));
    }
    let tail = store
        .get_range(path, size - 8..size)
        .await
        .map_err(|e| Error::storage(path, e))?;
    if tail.len() != 8 || &tail[4..] != b"PAR1" {
        return Err(bad("no Parquet footer"));
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if len + 12 > size {
        return Err(bad("footer longer than the object"));
    }
    let meta = store
        .get_range(path, size - 8 - len..size - 8)
        .await
        .map_err(|e| Error::storage(path, e))?;
    let md = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&meta)?;
    Ok(md.file_metadata().num_rows().max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_once_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::open(dir.path().to_str().unwrap()).unwrap();
        let p = Path::from("a/b/c.txt");
        assert_eq!(
            put_create(loc.store.as_ref(), &p, Bytes::from("1"))
                .await
                .unwrap(),
            Created::New
        );
        assert_eq!(
            put_create(loc.store.as_ref(), &p, Bytes::from("2"))
                .await
                .unwrap(),
            Created::Existed
        );
        let got = loc.store.get(&p).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"1");
        let all = list_all(loc.store.as_ref(), &Path::from("a"))
            .await
            .unwrap();
        assert_eq!(all.len(), 1);
        assert!(
            list_all(loc.store.as_ref(), &Path::from("missing"))
                .await
                .unwrap()
                .is_empty()
        );
        delete_if_exists(loc.store.as_ref(), &p).await.unwrap();
        delete_if_exists(loc.store.as_ref(), &p).await.unwrap();
    }

    #[test]
    fn unsupported_schemes_are_clear_errors() {
        let e = Location::open("ftp://x/y").unwrap_err();
        assert!(e.to_string().contains("ftp://"), "{e}");
    }

    #[tokio::test]
    async fn footer_rows_read_only_the_footer() {
        use arrow::array::Int64Array;
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..1234))],
        )
        .unwrap();
        let props = WriterProperties::builder().build();
        let bytes = encode_parquet(&schema, &[batch], &props).unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let p = Path::from("a.parquet");
        let size = bytes.len() as u64;
        store.put(&p, PutPayload::from(bytes)).await.unwrap();
        assert_eq!(parquet_footer_rows(&store, &p, size).await.unwrap(), 1234);
        store
            .put(&p, PutPayload::from_static(b"not parquet at all"))
            .await
            .unwrap();
        assert!(parquet_footer_rows(&store, &p, 18).await.is_err());
    }

    #[tokio::test]
    async fn large_objects_go_up_in_parts_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut loc = Location::open(dir.path().to_str().unwrap()).unwrap();
        loc.multipart_threshold = 1024;
        let p = Path::from("big/x.bin");
        let data = Bytes::from(vec![7u8; 40_000]);
        assert_eq!(
            loc.put_create(&p, data.clone()).await.unwrap(),
            Created::New
        );
        assert_eq!(
            loc.put_create(&p, data.clone()).await.unwrap(),
            Created::Existed
        );
        let got = loc.store.get(&p).await.unwrap().bytes().await.unwrap();
        assert_eq!(got, data);
    }

    /// Parts and completions that fail (before or after they took effect)
    /// are survived by starting the upload again; the object ends whole.
    #[tokio::test]
    async fn part_uploads_under_faults_end_whole() {
        use crate::faults::{Faulty, Retrying, STORE_ATTEMPTS};
        let faulty = Arc::new(Faulty::new(Arc::new(InMemory::new()), 0.15, 11));
        let store: Arc<dyn ObjectStore> = Arc::new(Retrying::new(faulty.clone(), STORE_ATTEMPTS));
        let mut loc = Location::from_store("memory://", store);
        loc.multipart_threshold = 1024;
        let data: Bytes = (0..PART_SIZE + 1000).map(|i| (i % 251) as u8).collect();
        for i in 0..8 {
            let p = Path::from(format!("big/{i}.bin"));
            loc.put_create(&p, data.clone()).await.unwrap();
            let got = loc.store.get(&p).await.unwrap().bytes().await.unwrap();
            assert!(got == data, "object {i} differs");
            loc.store.delete(&p).await.unwrap();
        }
        assert!(faulty.injected_here() >= 4, "{}", faulty.injected_here());
    }

    /// A store that went away mid-upload: the write fails after bounded
    /// attempts and leaves no object behind.
    #[tokio::test]
    async fn part_uploads_to_a_dead_store_fail_and_leave_nothing() {
        use crate::faults::{Faulty, Retrying};
        let mem = Arc::new(InMemory::new());
        let faulty = Faulty::new(mem.clone(), 0.0, 1).failing_after(3);
        let store: Arc<dyn ObjectStore> = Arc::new(Retrying::new(Arc::new(faulty), 2));
        let mut loc = Location::from_store("memory://", store);
        loc.multipart_threshold = 1024;
        let p = Path::from("big/x.bin");
        let data = Bytes::from(vec![1u8; PART_SIZE + 10]);
        let e = loc.put_create(&p, data).await.unwrap_err();
        assert!(e.to_string().contains("injected fault"), "{e}");
        assert!(matches!(
            mem.head(&p).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }
}
