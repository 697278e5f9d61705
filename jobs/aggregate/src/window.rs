//! The aggregate job over the lake: for one window, list its landing objects,
//! and if they differ from what the ledger says was last aggregated, run the
//! SQL program, write curated, rollup and dead-letter objects named by the run
//! id, commit the window's ledger record, then remove what the previous run
//! wrote and the window's pending markers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use bytes::Bytes;
use chrono::Utc;
use object_store::path::Path;
use parquet::file::properties::WriterProperties;

use logferry_core::config::ParquetSettings;
use logferry_core::dlq::{DlqBuilder, DlqRow};
use logferry_core::failpoint;
use logferry_core::ids::IdHasher;
use logferry_core::ledger::{Ledger, Versioned};
use logferry_core::partition::{
    LANDING, STATE, Stage, Window, curated_file, dlq_file, parse_partition, pending_marker,
    rollup_file,
};
use logferry_core::schema::{dead_letter_schema, log_record_schema};
use logferry_core::storage::{
    Location, delete_if_exists, encode_parquet, list_all, parquet_footer_rows, writer_properties,
};

use crate::engine::{self, EngineOutput};
use crate::error::Result;
use crate::program::SqlProgram;
use crate::session::{new_session, parquet_table, register_store};
pub use logferry_core::records::{AggregateRecord, FileRef, InputFile, aggregate_key};

/// What aggregating a window did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The window has no landing data.
    NoData,
    /// The last committed run already covers exactly the current inputs.
    UpToDate(AggregateRecord),
    /// A new run was committed.
    Done(AggregateRecord),
}

/// Aggregates windows of a lake.
#[derive(Clone)]
pub struct Aggregator {
    lake: Location,
    ledger: Ledger,
    program: Arc<SqlProgram>,
    props: WriterProperties,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("lake", &self.lake)
            .finish()
    }
}

/// Splits batches sorted by `tenant_id` into per-tenant runs.
fn split_by_tenant(batches: &[RecordBatch]) -> Result<BTreeMap<String, Vec<RecordBatch>>> {
    let mut out: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
    for b in batches {
        let col = b
            .column(b.schema().index_of("tenant_id")?)
            .as_string::<i32>()
            .clone();
        let mut start = 0;
        for i in 1..=b.num_rows() {
            if i == b.num_rows() || col.value(i) != col.value(start) {
                out.entry(col.value(start).to_string())
                    .or_default()
                    .push(b.slice(start, i - start));
                start = i;
            }
        }
    }
    Ok(out)
}

impl Aggregator {
    /// An aggregator over `lake` running `program`.
    pub fn new(
        lake: Location,
        program: Arc<SqlProgram>,
        parquet: &ParquetSettings,
    ) -> Result<Self> {
        Ok(Aggregator {
            ledger: Ledger::new(lake.store.clone(), STATE),
            lake,
            program,
            props: writer_properties(parquet)?,
        })
    }

    /// The lake's ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The landing objects of a window, over all tenants.
    pub async fn inputs(&self, w: Window) -> Result<Vec<InputFile>> {
        let store = self.lake.store.as_ref();
        let top = store
            .list_with_delimiter(Some(&Path::from(LANDING)))
            .await
            .map_err(|e| logferry_core::Error::storage(LANDING, e))?;
        let mut out = Vec::new();
        for tenant_dir in top.common_prefixes {
            let dir = Path::from(format!("{tenant_dir}/{}", w.partition()));
            for m in list_all(store, &dir).await? {
                let keys = parse_partition(&m.location);
                if !m.location.as_ref().ends_with(".parquet") || keys.window != Some(w) {
                    continue;
                }
                out.push(InputFile {
                    path: m.location.to_string(),
                    size: m.size,
                    tenant: keys.tenant.unwrap_or_default(),
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The last committed run of a window.
    pub async fn committed(&self, w: Window) -> Result<Option<Versioned<AggregateRecord>>> {
        Ok(self.ledger.latest(&aggregate_key(w)).await?)
    }

    fn run_id(&self, inputs: &[InputFile]) -> String {
        let mut h = IdHasher::new();
        h.part(self.program.hash.as_bytes());
        for i in inputs {
            h.part(i.path.as_bytes()).part(&i.size.to_le_bytes());
        }
        h.hex()
    }

    /// Removes the pending markers of the landing objects a run covered. Called
    /// once the window is fully processed (exported too), so a crash in
    /// between leaves the window pending for the next run.
    pub async fn clear_pending(&self, w: Window, inputs: &[InputFile]) -> Result<()> {
        for i in inputs {
            let batch = i
                .path
                .rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".parquet"))
                .unwrap_or_default();
            self.ledger
                .remove(&pending_marker(w, &i.tenant, batch))
                .await?;
        }
        Ok(())
    }

    /// Aggregates one window if its inputs changed since the last run.
    pub async fn aggregate(&self, w: Window) -> Result<Outcome> {
        let start = Instant::now();
        let inputs = self.inputs(w).await?;
        if inputs.is_empty() {
            return Ok(Outcome::NoData);
        }
        let run_id = self.run_id(&inputs);
        let prev = self.committed(w).await?;
        if let Some(p) = &prev
            && p.value.run_id == run_id
        {
            return Ok(Outcome::UpToDate(p.value.clone()));
        }

        let ctx = new_session();
        register_store(&ctx, "lake", self.lake.store.clone())?;
        let files: Vec<String> = inputs.iter().map(|i| i.path.clone()).collect();
        ctx.register_table(
            "window_input",
            parquet_table("lake", log_record_schema(), None, &files)?,
        )?;
        let out = engine::run(&ctx, &self.program).await?;
        // The engine must have read every row the landing objects hold: a
        // store or reader fault that made a file look empty would otherwise
        // commit a window with records silently missing.
        let mut landed = 0u64;
        for i in &inputs {
            landed +=
                parquet_footer_rows(&self.lake.store, &Path::from(i.path.as_str()), i.size).await?;
        }
        let read: u64 = out.counts.values().map(|c| c.input).sum();
        if read != landed {
            return Err(crate::Error::Internal(format!(
                "window {w}: the SQL program read {read} rows, the window's {} landing objects hold {landed}",
                inputs.len()
            )));
        }
        let (curated, rollups, dlq) = self.write_outputs(w, &run_id, &out).await?;
        failpoint::hit("aggregate.after_outputs");

        let record = AggregateRecord {
            window: w.to_string(),
            run_id: run_id.clone(),
            program_hash: self.program.hash.clone(),
            inputs: inputs.clone(),
            curated,
            rollups,
            dlq,
            counts: out.counts,
            event_time: out.event_time,
            finished_at: Utc::now(),
            duration_ms: start.elapsed().as_millis() as u64,
        };
        self.ledger
            .commit(&aggregate_key(w), prev.as_ref().map(|p| p.version), &record)
            .await?;
        failpoint::hit("aggregate.after_commit");
        if let Some(p) = prev {
            let keep: std::collections::HashSet<&str> =
                record.outputs().map(|f| f.path.as_str()).collect();
            for f in p.value.outputs() {
                if !keep.contains(f.path.as_str()) {
                    delete_if_exists(self.lake.store.as_ref(), &Path::from(f.path.as_str()))
                        .await?;
                }
            }
        }
        Ok(Outcome::Done(record))
    }

    async fn put(
        &self,
        path: Path,
        schema: &arrow::datatypes::SchemaRef,
        batches: &[RecordBatch],
        tenant: Option<&str>,
        table: Option<&str>,
    ) -> Result<FileRef> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let bytes: Bytes = encode_parquet(schema, batches, &self.props)?;
        let size = bytes.len() as u64;
        self.lake.put_create(&path, bytes).await?;
        Ok(FileRef {
            path: path.to_string(),
            rows: rows as u64,
            bytes: size,
            tenant: tenant.map(str::to_string),
            table: table.map(str::to_string),
        })
    }

    async fn write_outputs(
        &self,
        w: Window,
        run_id: &str,
        out: &EngineOutput,
    ) -> Result<(Vec<FileRef>, Vec<FileRef>, Vec<FileRef>)> {
        let log_schema = log_record_schema();
        let mut curated = Vec::new();
        for (tenant, batches) in split_by_tenant(&out.curated)? {
            let path = curated_file(w, &tenant, run_id);
            curated.push(
                self.put(path, &log_schema, &batches, Some(&tenant), None)
                    .await?,
            );
        }
        let mut rollups = Vec::new();
        for r in &out.rollups {
            let path = rollup_file(&r.name, w, run_id);
            rollups.push(
                self.put(path, &r.schema, &r.batches, None, Some(&r.name))
                    .await?,
            );
        }
        let mut dlq = Vec::new();
        let dschema = dead_letter_schema();
        for (tenant, batches) in split_by_tenant(&out.rejected)? {
            let batch = rejected_to_dlq(w, run_id, &batches)?;
            let path = dlq_file(Stage::Aggregate, &tenant, w, run_id);
            dlq.push(
                self.put(path, &dschema, &[batch], Some(&tenant), None)
                    .await?,
            );
        }
        Ok((curated, rollups, dlq))
    }
}

/// Dead-letter entries for rows that broke a rule: the raw payload is the row
/// as a JSON object.
fn rejected_to_dlq(w: Window, run_id: &str, batches: &[RecordBatch]) -> Result<RecordBatch> {
    let mut b = DlqBuilder::new();
    let now = Utc::now().timestamp_micros();
    let input = format!("window {w}");
    let position = format!("run {run_id}");
    let n_log = log_record_schema().fields().len();
    for batch in batches {
        let proj = batch.project(&(0..n_log).collect::<Vec<_>>())?;
        let mut buf = Vec::new();
        {
            let mut jw = arrow::json::LineDelimitedWriter::new(&mut buf);
            jw.write(&proj)?;
            jw.finish()?;
        }
        let lines: Vec<&[u8]> = buf.split(|&c| c == b'\n').collect();
        let s = batch.schema();
        let col = |name: &str| -> Result<arrow::array::ArrayRef> {
            Ok(batch.column(s.index_of(name)?).clone())
        };
        let (tenant, event, source, reason, detail) = (
            col("tenant_id")?,
            col("event_id")?,
            col("source")?,
            col("reason")?,
            col("detail")?,
        );
        let ts = col("timestamp")?;
        let ts = ts.as_primitive::<TimestampMicrosecondType>();
        let (tenant, event, source, reason, detail) = (
            tenant.as_string::<i32>(),
            event.as_string::<i32>(),
            source.as_string::<i32>(),
            reason.as_string::<i32>(),
            detail.as_string::<i32>(),
        );
        for i in 0..batch.num_rows() {
            let raw = lines.get(i).copied().unwrap_or_default();
            b.push(&DlqRow {
                stage: Stage::Aggregate.as_str(),
                reason: reason.value(i),
                detail: if detail.is_null(i) {
                    ""
                } else {
                    detail.value(i)
                },
                tenant_key: tenant.value(i),
                source: Some(source.value(i)),
                event_id: Some(event.value(i)),
                timestamp_us: Some(ts.value(i)),
                ingest_us: now,
                input: &input,
                position: &position,
                raw,
                raw_bytes: raw.len() as u64,
            });
        }
    }
    Ok(b.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn splits_sorted_batches_by_tenant() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "tenant_id",
            DataType::Utf8,
            false,
        )]));
        let mk = |v: Vec<&str>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(v))]).unwrap()
        };
        let parts = split_by_tenant(&[mk(vec!["a", "a", "b"]), mk(vec!["b", "c"])]).unwrap();
        let rows: Vec<(String, usize)> = parts
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|b| b.num_rows()).sum()))
            .collect();
        assert_eq!(
            rows,
            vec![("a".into(), 2), ("b".into(), 2), ("c".into(), 1)]
        );
    }
}
