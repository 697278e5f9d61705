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
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::file::properties::WriterProperties;

use logferry_core::config::{AggregateSettings, ParquetSettings};
use logferry_core::dlq::{DlqBuilder, DlqRow};
use logferry_core::failpoint;
use logferry_core::ids::IdHasher;
use logferry_core::ledger::{Ledger, Versioned};
use logferry_core::partition::{
    LANDING, STATE, Stage, TenantId, Window, curated_file, dlq_file, landing_file, parse_partition,
    pending_marker, rollup_file,
};
use logferry_core::records::{
    ChainHead, Increment, RowAges, head_key, increments_dir, open_marker,
};
use logferry_core::schema::{dead_letter_schema, log_record_schema};
use logferry_core::storage::{
    Location, delete_if_exists, encode_parquet, list_all, parquet_footer_rows,
    writer_properties_with,
};

use crate::engine::{self, EventTimes, RollupOutput};
use crate::error::{Error, Result};
use crate::keys::{KeySet, batch_keys};
use crate::program::SqlProgram;
use crate::session::{Engine, parquet_table, register_store};
use crate::sink::{PartWriter, TenantSplit, part_name};
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
    engine: Engine,
    spill_dir: std::path::PathBuf,
    object_rows: usize,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("lake", &self.lake)
            .finish()
    }
}

impl Aggregator {
    /// An aggregator over `lake` running `program`.
    pub fn new(
        lake: Location,
        program: Arc<SqlProgram>,
        parquet: &ParquetSettings,
        limits: &AggregateSettings,
    ) -> Result<Self> {
        std::fs::create_dir_all(&limits.spill_dir)
            .map_err(|e| logferry_core::Error::io(limits.spill_dir.display(), e))?;
        Ok(Aggregator {
            ledger: Ledger::new(lake.store.clone(), STATE),
            lake,
            program,
            props: writer_properties_with(parquet, limits.zstd_level)?,
            engine: Engine::new(limits.memory_limit, Some(&limits.spill_dir))?,
            spill_dir: limits.spill_dir.clone(),
            object_rows: limits.object_rows,
        })
    }

    /// The engine its queries run on (its memory pool).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The lake's ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Hash of the SQL program.
    pub fn program_hash(&self) -> String {
        self.program.hash.clone()
    }

    /// Names of the program's rollups (their warehouse tables).
    pub fn rollup_names(&self) -> Vec<String> {
        self.program
            .rollups
            .iter()
            .map(|r| r.name.clone())
            .collect()
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

    /// Aggregates again only `tenants`' records of a window (a backfill
    /// for some tenants): their landing objects are run through the current
    /// program and their outputs replace theirs; every other tenant's
    /// outputs, counts and rollup rows stay those of the committed run. A
    /// window with no committed run is aggregated whole. Rollups must have
    /// a `tenant_id` column for their rows to be told apart.
    pub async fn aggregate_tenants(
        &self,
        w: Window,
        tenants: &std::collections::BTreeSet<String>,
    ) -> Result<Outcome> {
        let start = Instant::now();
        let Some(prev) = self.committed(w).await? else {
            return self.aggregate(w).await;
        };
        let inputs = self.inputs(w).await?;
        let mine: Vec<InputFile> = inputs
            .into_iter()
            .filter(|i| tenants.contains(&i.tenant))
            .collect();
        let mut h = IdHasher::new();
        h.part(b"tenants")
            .part(self.program.hash.as_bytes())
            .part(prev.value.run_id.as_bytes());
        for t in tenants {
            h.part(t.as_bytes());
        }
        for i in &mine {
            h.part(i.path.as_bytes()).part(&i.size.to_le_bytes());
        }
        let run_id = h.hex();
        if prev.value.run_id == run_id {
            return Ok(Outcome::UpToDate(prev.value));
        }
        // Rollups are written below, merged with the other tenants' rows.
        let mut out = self
            .compute(w, &mine, None, Rollups::Collect, &run_id, false)
            .await?;
        let computed = std::mem::take(&mut out.collected);
        let (curated, dlq) = (
            std::mem::take(&mut out.curated),
            std::mem::take(&mut out.dlq),
        );
        // Rollup rows of the other tenants come from the committed run.
        let mut rollups = Vec::new();
        for r in &computed {
            let mut batches: Vec<RecordBatch> = Vec::new();
            for f in prev
                .value
                .rollups
                .iter()
                .filter(|f| f.table.as_deref() == Some(&r.name))
            {
                let old = logferry_core::storage::read_parquet(
                    self.lake.store.as_ref(),
                    &Path::from(f.path.as_str()),
                )
                .await?;
                for b in old {
                    batches.push(keep_other_tenants(&b, tenants, &r.name)?);
                }
            }
            let batches: Vec<RecordBatch> = batches
                .iter()
                .map(|b| crate::session::conform(b, &r.schema))
                .chain(r.batches.iter().map(|b| Ok(b.clone())))
                .collect::<Result<_>>()?;
            let path = rollup_file(&r.name, w, &run_id);
            rollups.push(
                self.put(path, &r.schema, &batches, None, Some(&r.name))
                    .await?,
            );
        }
        let others = |f: &&FileRef| f.tenant.as_ref().is_none_or(|t| !tenants.contains(t));
        let mut counts: BTreeMap<String, logferry_core::records::WindowCounts> = prev
            .value
            .counts
            .iter()
            .filter(|(t, _)| !tenants.contains(*t))
            .map(|(t, c)| (t.clone(), c.clone()))
            .collect();
        counts.extend(out.counts);
        let mut all_inputs: Vec<InputFile> = prev
            .value
            .inputs
            .iter()
            .filter(|i| !tenants.contains(&i.tenant))
            .cloned()
            .chain(mine)
            .collect();
        all_inputs.sort_by(|a, b| a.path.cmp(&b.path));
        let record = AggregateRecord {
            window: w.to_string(),
            run_id: run_id.clone(),
            program_hash: self.program.hash.clone(),
            inputs: all_inputs,
            curated: prev
                .value
                .curated
                .iter()
                .filter(others)
                .cloned()
                .chain(curated)
                .collect(),
            rollups,
            dlq: prev
                .value
                .dlq
                .iter()
                .filter(others)
                .cloned()
                .chain(dlq)
                .collect(),
            counts,
            event_time: out.event_time,
            ages: out.ages,
            spilled_bytes: out.spilled,
            finished_at: Utc::now(),
            duration_ms: start.elapsed().as_millis() as u64,
        };
        failpoint::hit("aggregate.after_outputs");
        self.ledger
            .commit(&aggregate_key(w), Some(prev.version), &record)
            .await?;
        failpoint::hit("aggregate.after_commit");
        let keep: std::collections::HashSet<&str> =
            record.outputs().map(|f| f.path.as_str()).collect();
        for f in prev
            .value
            .outputs()
            .filter(|f| !keep.contains(f.path.as_str()))
        {
            delete_if_exists(self.lake.store.as_ref(), &Path::from(f.path.as_str())).await?;
        }
        Ok(Outcome::Done(record))
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
        // A chain of increments on the previous run is replaced with it.
        let (_, chain) = self
            .current_chain(w, prev.as_ref().map(|p| &p.value))
            .await?;

        let out = self
            .compute(w, &inputs, None, Rollups::Write, &run_id, false)
            .await?;
        failpoint::hit("aggregate.after_outputs");

        let record = AggregateRecord {
            window: w.to_string(),
            run_id: run_id.clone(),
            program_hash: self.program.hash.clone(),
            inputs: inputs.clone(),
            curated: out.curated,
            rollups: out.rollups,
            dlq: out.dlq,
            counts: out.counts,
            event_time: out.event_time,
            ages: out.ages,
            spilled_bytes: out.spilled,
            finished_at: Utc::now(),
            duration_ms: start.elapsed().as_millis() as u64,
        };
        self.ledger
            .commit(&aggregate_key(w), prev.as_ref().map(|p| p.version), &record)
            .await?;
        failpoint::hit("aggregate.after_commit");
        let keep: std::collections::HashSet<&str> =
            record.outputs().map(|f| f.path.as_str()).collect();
        let mut replaced: Vec<&FileRef> = Vec::new();
        if let Some(p) = &prev {
            replaced.extend(p.value.outputs());
        }
        replaced.extend(chain.iter().flat_map(Increment::outputs));
        for f in replaced
            .into_iter()
            .filter(|f| !keep.contains(f.path.as_str()))
        {
            delete_if_exists(self.lake.store.as_ref(), &Path::from(f.path.as_str())).await?;
        }
        Ok(Outcome::Done(record))
    }

    /// The landing objects of a window that carry a pending marker: landed
    /// since a run last covered the window (what an increment reads). A
    /// marker is placed only once its object is durable.
    pub async fn pending_inputs(&self, w: Window) -> Result<Vec<InputFile>> {
        let mut out = Vec::new();
        for key in self
            .ledger
            .list(&format!("pending/{}", w.partition()))
            .await?
        {
            let keys = parse_partition(&Path::from(key.as_str()));
            let Some(tenant) = keys.tenant else {
                continue;
            };
            let tid = TenantId::new(&tenant)?;
            let path = landing_file(&tid, w, &keys.file);
            let meta = match self.lake.store.head(&path).await {
                Ok(m) => m,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(Error::Internal(format!(
                        "pending marker {key} names {path}, which is not in the lake"
                    )));
                }
                Err(e) => return Err(logferry_core::Error::storage(&path, e).into()),
            };
            out.push(InputFile {
                path: path.to_string(),
                size: meta.size,
                tenant,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The head of a window's increment chain, if it ever had one.
    pub async fn head(&self, w: Window) -> Result<Option<Versioned<ChainHead>>> {
        Ok(self.ledger.latest(&head_key(w)).await?)
    }

    /// The increments a head names, first to last.
    pub async fn chain(&self, w: Window, head: &ChainHead) -> Result<Vec<Increment>> {
        read_chain(&self.ledger, w, head).await
    }

    /// The chain of a window on top of its full run `base`, if its head is
    /// current (a head over another base was replaced by that full run).
    pub async fn current_chain(
        &self,
        w: Window,
        base: Option<&AggregateRecord>,
    ) -> Result<(Option<Versioned<ChainHead>>, Vec<Increment>)> {
        let head = self.head(w).await?;
        let chain = match &head {
            Some(h) if h.value.base_run_id.as_deref() == base.map(|b| b.run_id.as_str()) => {
                self.chain(w, &h.value).await?
            }
            _ => Vec::new(),
        };
        Ok((head, chain))
    }

    /// Runs the program over `inputs` (landing objects of `w` no run of
    /// the window has read), keeping only records whose key `seen` (every
    /// key the window holds) does not have, and appends the result to the
    /// window's chain on top of `base`. Rollups are not computed: they are
    /// the window's full run's, at its seal.
    pub async fn increment(
        &self,
        w: Window,
        base: Option<&AggregateRecord>,
        head: Option<&Versioned<ChainHead>>,
        inputs: Vec<InputFile>,
        seen: &KeySet,
    ) -> Result<IncrementDone> {
        let start = Instant::now();
        let base_run_id = base.map(|b| b.run_id.clone());
        let current = head.filter(|h| h.value.base_run_id == base_run_id);
        let (prev_id, seq, rows_before) = match current {
            Some(h) => (
                Some(h.value.last_id.clone()),
                h.value.seq,
                h.value.curated_rows,
            ),
            None => (
                None,
                0,
                base.map_or(0, |b| b.curated.iter().map(|f| f.rows).sum()),
            ),
        };
        let mut h = IdHasher::new();
        h.part(b"increment")
            .part(self.program.hash.as_bytes())
            .part(base_run_id.as_deref().unwrap_or_default().as_bytes())
            .part(prev_id.as_deref().unwrap_or_default().as_bytes());
        for i in &inputs {
            h.part(i.path.as_bytes()).part(&i.size.to_le_bytes());
        }
        let id = h.hex();

        let out = self
            .compute(w, &inputs, Some(seen), Rollups::None, &id, true)
            .await?;
        failpoint::hit("increment.after_outputs");
        let (curated, dlq, keys) = (out.curated, out.dlq, out.keys);
        let rows: u64 = curated.iter().map(|f| f.rows).sum();
        let inc = Increment {
            seq: seq + 1,
            id: id.clone(),
            base_run_id: base_run_id.clone(),
            prev_id,
            inputs,
            curated,
            dlq,
            counts: out.counts,
            event_time: out.event_time,
            ages: out.ages,
            finished_at: Utc::now(),
            duration_ms: start.elapsed().as_millis() as u64,
            rows_after: rows_before + rows,
        };
        let doc = Increment::doc_path(w, inc.seq, &id);
        // Written once: a rerun of the same increment (same inputs, same
        // chain) finds its own document; the stored one stands.
        let inc = if self.ledger.put_once(&doc, &inc).await? {
            inc
        } else {
            self.ledger.get(&doc).await?
        };
        let head_doc = ChainHead {
            base_run_id,
            seq: inc.seq,
            last_id: id,
            curated_rows: inc.rows_after,
        };
        self.ledger
            .commit(&head_key(w), head.map(|h| h.version), &head_doc)
            .await?;
        self.ledger.mark(&open_marker(w)).await?;
        failpoint::hit("increment.after_commit");
        Ok(IncrementDone {
            increment: inc,
            head: head_doc,
            keys,
        })
    }

    /// The keys a window holds on top of its full run `base` and under
    /// `chain`: of every record kept or refused so far.
    pub async fn keys(
        &self,
        base: Option<&AggregateRecord>,
        chain: &[Increment],
    ) -> Result<KeySet> {
        let mut paths: Vec<String> = Vec::new();
        if let Some(b) = base {
            paths.extend(b.curated.iter().chain(&b.dlq).map(|f| f.path.clone()));
        }
        for inc in chain {
            paths.extend(inc.outputs().map(|f| f.path.clone()));
        }
        let mut set = KeySet::default();
        crate::keys::read_keys(&self.lake.store, &paths, &mut set).await?;
        Ok(set)
    }

    /// Removes a replaced chain's objects and documents from the lake.
    pub async fn remove_chain(
        &self,
        w: Window,
        chain: &[Increment],
        keep: &[&FileRef],
    ) -> Result<()> {
        let keep: std::collections::HashSet<&str> = keep.iter().map(|f| f.path.as_str()).collect();
        for inc in chain {
            for f in inc.outputs().filter(|f| !keep.contains(f.path.as_str())) {
                delete_if_exists(self.lake.store.as_ref(), &Path::from(f.path.as_str())).await?;
            }
        }
        for doc in self.ledger.list(&increments_dir(w)).await? {
            self.ledger.remove(&doc).await?;
        }
        Ok(())
    }

    /// Removes the pending markers of an increment's inputs (once it is in
    /// the warehouse).
    pub async fn clear_increment(&self, w: Window, inc: &Increment) -> Result<()> {
        self.clear_pending(w, &inc.inputs).await
    }

    /// Runs the SQL program over these landing objects of `w` (dropping
    /// the records whose keys `seen` holds) and streams its outputs into
    /// objects named by `run_id`; checks that it read every row of them.
    async fn compute(
        &self,
        w: Window,
        inputs: &[InputFile],
        seen: Option<&KeySet>,
        rollups: Rollups,
        run_id: &str,
        want_keys: bool,
    ) -> Result<Computed> {
        // Decoded rows take some five times their zstd Parquet size.
        let rows_bytes = inputs.iter().map(|i| i.size).sum::<u64>() * 5;
        let ctx = self.engine.session_for(Some(rows_bytes));
        register_store(&ctx, "lake", self.lake.store.clone())?;
        let files: Vec<String> = inputs.iter().map(|i| i.path.clone()).collect();
        ctx.register_table(
            "window_input",
            parquet_table("lake", log_record_schema(), None, &files)?,
        )?;
        let prep = engine::prepare(&ctx, self.program.clone(), seen, &self.spill_dir).await?;
        self.check_read_all(w, inputs, &prep.input).await?;
        let mut spilled = prep.spilled;
        let mut keys = Vec::new();

        let log_schema = log_record_schema();
        let mut ages = RowAges {
            at_us: Utc::now().timestamp_micros(),
            tenants: BTreeMap::new(),
        };
        let mut times = EventTimes::default();
        let mut split = TenantSplit::new(|tenant: &str| {
            let (t, id) = (tenant.to_string(), run_id.to_string());
            PartWriter::new(
                self.lake.clone(),
                self.props.clone(),
                log_schema.clone(),
                self.object_rows,
                move |n| curated_file(w, &t, &part_name(&id, n)),
                Some(tenant),
                None,
            )
        });
        let mut run = prep.curated().await?;
        while let Some(b) = run.next().await? {
            add_ages(&mut ages, &b)?;
            times.add(&b);
            if want_keys {
                keys.extend(batch_keys(std::slice::from_ref(&b))?);
            }
            split.write(&b).await?;
        }
        spilled += run.spilled();
        let counts = prep.counts(&split.rows)?;
        let curated = split.finish().await?;

        let dschema = dead_letter_schema();
        let mut split = TenantSplit::new(|tenant: &str| {
            let (t, id) = (tenant.to_string(), run_id.to_string());
            let id2 = id.clone();
            PartWriter::new(
                self.lake.clone(),
                self.props.clone(),
                dschema.clone(),
                self.object_rows,
                move |n| dlq_file(Stage::Aggregate, &t, w, &part_name(&id, n)),
                Some(tenant),
                None,
            )
            .with_map(Box::new(move |b| {
                rejected_to_dlq(w, &id2, std::slice::from_ref(b))
            }))
        });
        let mut run = prep.rejected().await?;
        while let Some(b) = run.next().await? {
            if want_keys {
                keys.extend(batch_keys(std::slice::from_ref(&b))?);
            }
            split.write(&b).await?;
        }
        spilled += run.spilled();
        let dlq = split.finish().await?;

        let mut written = Vec::new();
        let mut collected = Vec::new();
        for r in prep.rollups().iter().filter(|_| rollups != Rollups::None) {
            let mut run = prep.rollup(r).await?;
            let mut batches = Vec::new();
            let mut writer = PartWriter::new(
                self.lake.clone(),
                self.props.clone(),
                run.schema.clone(),
                usize::MAX,
                {
                    let (name, id) = (r.name.clone(), run_id.to_string());
                    move |_| rollup_file(&name, w, &id)
                },
                None,
                Some(&r.name),
            );
            while let Some(b) = run.next().await? {
                match rollups {
                    Rollups::Collect => batches.push(b),
                    _ => writer.write(b).await?,
                }
            }
            spilled += run.spilled();
            match rollups {
                Rollups::Collect => collected.push(RollupOutput {
                    name: r.name.clone(),
                    schema: run.schema.clone(),
                    batches,
                }),
                _ => written.extend(writer.finish(true).await?),
            }
        }
        Ok(Computed {
            curated,
            rollups: written,
            collected,
            dlq,
            counts,
            event_time: times.stats(),
            ages,
            keys,
            spilled,
        })
    }

    /// The engine must have read every row the landing objects hold: a
    /// store or reader fault that made a file look empty would otherwise
    /// commit a window with records silently missing.
    async fn check_read_all(
        &self,
        w: Window,
        inputs: &[InputFile],
        read: &BTreeMap<String, u64>,
    ) -> Result<()> {
        let mut landed = 0u64;
        for i in inputs {
            landed +=
                parquet_footer_rows(&self.lake.store, &Path::from(i.path.as_str()), i.size).await?;
        }
        let read: u64 = read.values().sum();
        if read != landed {
            return Err(Error::Internal(format!(
                "window {w}: the SQL program read {read} rows, the window's {} landing objects hold {landed}",
                inputs.len()
            )));
        }
        Ok(())
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
}

/// Which rollups a computation makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rollups {
    /// None (an increment: the seal's full run makes them).
    None,
    /// Written, one object each.
    Write,
    /// Collected, to be merged with other rows before they are written.
    Collect,
}

/// What running the program over a window wrote and counted.
struct Computed {
    curated: Vec<FileRef>,
    rollups: Vec<FileRef>,
    collected: Vec<RollupOutput>,
    dlq: Vec<FileRef>,
    counts: BTreeMap<String, logferry_core::records::WindowCounts>,
    event_time: logferry_core::records::EventTimeStats,
    ages: RowAges,
    keys: Vec<u128>,
    spilled: u64,
}

/// The increments a head names, first to last, from the ledger.
pub async fn read_chain(ledger: &Ledger, w: Window, head: &ChainHead) -> Result<Vec<Increment>> {
    let mut docs: std::collections::HashMap<String, String> = Default::default();
    for k in ledger.list(&increments_dir(w)).await? {
        let id = k
            .rsplit('/')
            .next()
            .and_then(|f| f.strip_suffix(".json"))
            .and_then(|f| f.split_once('-'))
            .map(|(_, id)| id.to_string());
        if let Some(id) = id {
            docs.insert(id, k);
        }
    }
    let mut out = Vec::new();
    let mut next = Some(head.last_id.clone()).filter(|_| head.seq > 0);
    while let Some(id) = next {
        let doc = docs.get(&id).ok_or_else(|| {
            Error::Internal(format!("increment {id} of window {w} is not in the ledger"))
        })?;
        let inc: Increment = ledger.get(doc).await?;
        if inc.base_run_id != head.base_run_id || out.len() as u64 >= head.seq {
            return Err(Error::Internal(format!(
                "increment {id} of window {w} does not belong to its chain"
            )));
        }
        next = inc.prev_id.clone();
        out.push(inc);
    }
    out.reverse();
    if out.len() as u64 != head.seq {
        return Err(Error::Internal(format!(
            "window {w}: the chain head names {} increments, {} were found",
            head.seq,
            out.len()
        )));
    }
    Ok(out)
}

/// The rows of a rollup batch whose tenant is not one of `tenants`.
fn keep_other_tenants(
    b: &RecordBatch,
    tenants: &std::collections::BTreeSet<String>,
    rollup: &str,
) -> Result<RecordBatch> {
    let idx = b.schema().index_of("tenant_id").map_err(|_| Error::Sql {
        file: format!("rollups/{rollup}.sql"),
        message: "the rollup has no tenant_id column: backfill its windows for every tenant".into(),
    })?;
    let col = b.column(idx).as_string::<i32>().clone();
    let keep: arrow::array::BooleanArray = (0..b.num_rows())
        .map(|i| Some(col.is_null(i) || !tenants.contains(col.value(i))))
        .collect();
    Ok(arrow::compute::filter_record_batch(b, &keep)?)
}

/// What one increment did.
#[derive(Debug, Clone)]
pub struct IncrementDone {
    /// The increment, as the ledger holds it.
    pub increment: Increment,
    /// The chain head it committed.
    pub head: ChainHead,
    /// Keys of what it kept and refused.
    pub keys: Vec<u128>,
}

/// Adds the ages of a batch of curated rows at `ages.at_us`, since their
/// event time and their ingest, by tenant.
fn add_ages(ages: &mut RowAges, b: &RecordBatch) -> Result<()> {
    let now = ages.at_us;
    let s = b.schema();
    let tenants = b.column(s.index_of("tenant_id")?).as_string::<i32>();
    let event = b
        .column(s.index_of("timestamp")?)
        .as_primitive::<TimestampMicrosecondType>();
    let ingest = b
        .column(s.index_of("ingest_time")?)
        .as_primitive::<TimestampMicrosecondType>();
    for i in 0..b.num_rows() {
        let a = ages
            .tenants
            .entry(tenants.value(i).to_string())
            .or_default();
        if !event.is_null(i) {
            a.event.record((now - event.value(i)) as f64 / 1000.0);
        }
        if !ingest.is_null(i) {
            a.ingest.record((now - ingest.value(i)) as f64 / 1000.0);
        }
    }
    Ok(())
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
                payload: Some("row"),
            });
        }
    }
    Ok(b.finish()?)
}
