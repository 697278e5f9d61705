//! Streamed Parquet outputs: batches are encoded as they arrive, and an
//! object is closed and written (create-once) every `object_rows` rows, so
//! what a writer holds is bounded by configuration whatever the window's
//! size. One writer per output (a tenant's curated rows, its dead letters, a
//! rollup); its objects are `<name>.parquet`, `<name>.1.parquet`, ...

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use logferry_core::records::FileRef;
use logferry_core::storage::Location;

use crate::error::{Error, Result};

/// The name of part `n` of an output named `name`: `name` itself for the
/// first, `name.n` after.
pub fn part_name(name: &str, n: usize) -> String {
    if n == 0 {
        name.to_string()
    } else {
        format!("{name}.{n}")
    }
}

/// One output, written in objects of at most `object_rows` rows.
pub struct PartWriter {
    lake: Location,
    props: WriterProperties,
    schema: SchemaRef,
    object_rows: usize,
    path_of: Box<dyn Fn(usize) -> Path + Send + Sync>,
    tenant: Option<String>,
    table: Option<String>,
    map: Option<BatchMap>,
    current: Option<(Encoding, usize)>,
    files: Vec<FileRef>,
}

type Encoder = ArrowWriter<Vec<u8>>;

/// An object's encoder: idle, or encoding a batch.
enum Encoding {
    Ready(Box<Encoder>),
    Busy(tokio::task::JoinHandle<(Encoder, parquet::errors::Result<()>)>),
}

impl Encoding {
    /// The encoder once its batch is encoded.
    async fn ready(self) -> Result<Encoding> {
        match self {
            Encoding::Ready(w) => Ok(Encoding::Ready(w)),
            Encoding::Busy(job) => {
                let (w, r) = job
                    .await
                    .map_err(|e| Error::Internal(format!("Parquet encoder: {e}")))?;
                r?;
                Ok(Encoding::Ready(Box::new(w)))
            }
        }
    }
}

/// Turns a batch into the rows a writer stores (rejected rows into
/// dead-letter entries).
pub type BatchMap = Box<dyn Fn(&RecordBatch) -> Result<RecordBatch> + Send + Sync>;

impl std::fmt::Debug for PartWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartWriter")
            .field("tenant", &self.tenant)
            .field("table", &self.table)
            .finish()
    }
}

/// Runs a CPU-bound step off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("Parquet encoder: {e}")))
}

impl PartWriter {
    /// A writer of objects at `path_of(part)`.
    pub fn new(
        lake: Location,
        props: WriterProperties,
        schema: SchemaRef,
        object_rows: usize,
        path_of: impl Fn(usize) -> Path + Send + Sync + 'static,
        tenant: Option<&str>,
        table: Option<&str>,
    ) -> Self {
        PartWriter {
            lake,
            props,
            schema,
            object_rows: object_rows.max(1),
            path_of: Box::new(path_of),
            tenant: tenant.map(str::to_string),
            table: table.map(str::to_string),
            map: None,
            current: None,
            files: Vec::new(),
        }
    }

    /// Stores `map(batch)` for every batch written.
    pub fn with_map(mut self, map: BatchMap) -> Self {
        self.map = Some(map);
        self
    }

    /// Encodes a batch, closing objects as they fill up. The encoding runs
    /// on a blocking thread while the caller fetches the next batch: only
    /// one batch is in flight.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let mut batch = match &self.map {
            Some(m) => m(&batch)?,
            None => batch,
        };
        while batch.num_rows() > 0 {
            let (w, rows) = match self.current.take() {
                Some((w, rows)) => (w.ready().await?, rows),
                None => (
                    Encoding::Ready(Box::new(ArrowWriter::try_new(
                        Vec::new(),
                        self.schema.clone(),
                        Some(self.props.clone()),
                    )?)),
                    0,
                ),
            };
            let Encoding::Ready(mut w) = w else {
                return Err(Error::Internal("encoder not ready".into()));
            };
            let take = batch.num_rows().min(self.object_rows - rows);
            let head = batch.slice(0, take);
            batch = batch.slice(take, batch.num_rows() - take);
            let job = tokio::task::spawn_blocking(move || {
                let r = w.write(&head);
                (*w, r)
            });
            self.current = Some((Encoding::Busy(job), rows + take));
            if rows + take == self.object_rows {
                self.close_object().await?;
            }
        }
        Ok(())
    }

    async fn close_object(&mut self) -> Result<()> {
        let Some((w, rows)) = self.current.take() else {
            return Ok(());
        };
        let Encoding::Ready(w) = w.ready().await? else {
            return Err(Error::Internal("encoder not ready".into()));
        };
        let bytes = blocking(move || (*w).into_inner()).await??;
        let bytes = Bytes::from(bytes);
        let path = (self.path_of)(self.files.len());
        let size = bytes.len() as u64;
        self.lake.put_create(&path, bytes).await?;
        self.files.push(FileRef {
            path: path.to_string(),
            rows: rows as u64,
            bytes: size,
            tenant: self.tenant.clone(),
            table: self.table.clone(),
        });
        Ok(())
    }

    /// Writes what is left; an output that never got a row is one empty
    /// object when `keep_empty` (rollups), else none.
    pub async fn finish(mut self, keep_empty: bool) -> Result<Vec<FileRef>> {
        if self.current.is_none() && self.files.is_empty() && keep_empty {
            self.current = Some((
                Encoding::Ready(Box::new(ArrowWriter::try_new(
                    Vec::new(),
                    self.schema.clone(),
                    Some(self.props.clone()),
                )?)),
                0,
            ));
        }
        self.close_object().await?;
        Ok(self.files)
    }
}

/// Writes batches sorted by `tenant_id` to one [`PartWriter`] per tenant,
/// one open at a time.
pub struct TenantSplit<F> {
    open: Option<(String, PartWriter)>,
    make: F,
    files: Vec<FileRef>,
    /// Rows written, by tenant.
    pub rows: BTreeMap<String, u64>,
}

impl<F> std::fmt::Debug for TenantSplit<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSplit")
            .field("rows", &self.rows)
            .finish()
    }
}

impl<F: FnMut(&str) -> PartWriter> TenantSplit<F> {
    /// Opens a tenant's writer with `make(tenant)`.
    pub fn new(make: F) -> Self {
        TenantSplit {
            open: None,
            make,
            files: Vec::new(),
            rows: BTreeMap::new(),
        }
    }

    /// Writes a batch (sorted by tenant; a tenant's rows never come back
    /// after another's).
    pub async fn write(&mut self, b: &RecordBatch) -> Result<()> {
        let col = b
            .column(b.schema().index_of("tenant_id")?)
            .as_string::<i32>()
            .clone();
        let mut start = 0;
        for i in 1..=b.num_rows() {
            if i < b.num_rows() && col.value(i) == col.value(start) {
                continue;
            }
            let tenant = col.value(start);
            if self.open.as_ref().is_none_or(|(t, _)| t != tenant) {
                if let Some((_, w)) = self.open.take() {
                    self.files.extend(w.finish(false).await?);
                }
                if self.rows.contains_key(tenant) {
                    return Err(Error::Internal(format!(
                        "rows of tenant {tenant} came after another tenant's: the output is not sorted by tenant"
                    )));
                }
                self.open = Some((tenant.to_string(), (self.make)(tenant)));
            }
            *self.rows.entry(tenant.to_string()).or_default() += (i - start) as u64;
            if let Some((_, w)) = self.open.as_mut() {
                w.write(b.slice(start, i - start)).await?;
            }
            start = i;
        }
        Ok(())
    }

    /// Closes the last tenant's writer; every object written, by tenant.
    pub async fn finish(mut self) -> Result<Vec<FileRef>> {
        if let Some((_, w)) = self.open.take() {
            self.files.extend(w.finish(false).await?);
        }
        Ok(self.files)
    }
}
