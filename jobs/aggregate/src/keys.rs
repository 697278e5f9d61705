//! The keys a window already holds, for micro-batch increments: an
//! increment keeps a record only if no earlier run of the window (its full
//! run or an earlier increment) kept or refused the same `(tenant_id,
//! event_id)`. Keys are 128-bit xxh3 hashes of the pair: two distinct pairs
//! share a hash with a probability far below any hardware error rate.
//!
//! An open window holds every key it loaded: at 4,000 records/s an hour is
//! 14.4 million keys, 230 MB even packed. So that a daemon's memory stays
//! flat however long its windows stay open, a [`KeySet`] keeps the newest
//! keys in memory (at most [`SPILL_KEYS`]) and the rest in sorted runs on
//! local disk, in unlinked temporary files (under `$TMPDIR`: nothing is
//! left behind, even by `kill -9`). A run is read a block at a time, found
//! through an index of each block's first key held in memory (one key in
//! 256); runs of equal size are merged, so a set of n keys has at most
//! log2(n / SPILL_KEYS) + 1 of them. A lookup is a hash probe and one block
//! read per run, from the page cache.

use std::collections::HashSet;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use xxhash_rust::xxh3::Xxh3;

use logferry_core::storage::get_bytes;

use crate::error::{Error, Result};

/// Keys a set holds in memory before it writes them to a sorted run.
pub const SPILL_KEYS: usize = 1 << 18;
/// Keys per block of a run (4 KiB): what one lookup reads.
const BLOCK_KEYS: usize = 256;
const KEY_BYTES: usize = 16;

/// The key of a record.
pub fn key(tenant: &str, event_id: &str) -> u128 {
    let mut h = Xxh3::new();
    h.update(tenant.as_bytes());
    h.update(&[0]);
    h.update(event_id.as_bytes());
    h.digest128()
}

/// Keys are hashes already: the set uses them as they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = (v as u64) ^ ((v >> 64) as u64);
    }
}

fn io(e: std::io::Error) -> Error {
    Error::Internal(format!("key run on local disk: {e}"))
}

/// Sorted distinct keys in an unlinked temporary file.
#[derive(Debug)]
struct Run {
    file: File,
    len: usize,
    /// The first key of each block.
    index: Vec<u128>,
}

/// Writes sorted distinct keys to a new run.
struct RunWriter {
    w: BufWriter<File>,
    len: usize,
    index: Vec<u128>,
}

impl RunWriter {
    fn new() -> Result<Self> {
        Ok(RunWriter {
            w: BufWriter::with_capacity(1 << 16, tempfile::tempfile().map_err(io)?),
            len: 0,
            index: Vec::new(),
        })
    }

    fn push(&mut self, k: u128) -> Result<()> {
        if self.len.is_multiple_of(BLOCK_KEYS) {
            self.index.push(k);
        }
        self.len += 1;
        self.w.write_all(&k.to_le_bytes()).map_err(io)
    }

    fn finish(self) -> Result<Run> {
        let file = self.w.into_inner().map_err(|e| io(e.into_error()))?;
        Ok(Run {
            file,
            len: self.len,
            index: self.index,
        })
    }
}

/// Reads a run's keys in order.
struct Cursor<'a> {
    run: &'a Run,
    next_block: usize,
    buf: Vec<u128>,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(run: &'a Run) -> Self {
        Cursor {
            run,
            next_block: 0,
            buf: Vec::with_capacity(BLOCK_KEYS),
            at: 0,
        }
    }

    fn peek(&mut self) -> Result<Option<u128>> {
        if self.at == self.buf.len() {
            if self.next_block == self.run.index.len() {
                return Ok(None);
            }
            self.run.block(self.next_block, &mut self.buf)?;
            self.next_block += 1;
            self.at = 0;
        }
        Ok(Some(self.buf[self.at]))
    }

    fn advance(&mut self) {
        self.at += 1;
    }
}

impl Run {
    /// Writes sorted distinct `keys` to a new run.
    fn write(keys: &[u128]) -> Result<Run> {
        let mut w = RunWriter::new()?;
        for &k in keys {
            w.push(k)?;
        }
        w.finish()
    }

    /// Reads block `b` into `buf`.
    fn block(&self, b: usize, buf: &mut Vec<u128>) -> Result<()> {
        let n = BLOCK_KEYS.min(self.len - b * BLOCK_KEYS);
        let mut bytes = [0u8; BLOCK_KEYS * KEY_BYTES];
        let bytes = &mut bytes[..n * KEY_BYTES];
        self.file
            .read_exact_at(bytes, (b * BLOCK_KEYS * KEY_BYTES) as u64)
            .map_err(io)?;
        buf.clear();
        buf.extend(bytes.chunks_exact(KEY_BYTES).map(|c| {
            let mut a = [0u8; KEY_BYTES];
            a.copy_from_slice(c);
            u128::from_le_bytes(a)
        }));
        Ok(())
    }

    /// Marks in `found` the keys of `sorted` (ascending, with their
    /// positions) this run holds.
    fn find(&self, sorted: &[(u128, usize)], found: &mut [bool]) -> Result<()> {
        let mut buf = Vec::with_capacity(BLOCK_KEYS);
        let mut loaded = None;
        for &(k, at) in sorted {
            if found[at] {
                continue;
            }
            let b = self.index.partition_point(|&first| first <= k);
            if b == 0 {
                continue;
            }
            if loaded != Some(b - 1) {
                self.block(b - 1, &mut buf)?;
                loaded = Some(b - 1);
            }
            found[at] = buf.binary_search(&k).is_ok();
        }
        Ok(())
    }

    /// One run of both, a key both hold written once.
    fn merge(a: &Run, b: &Run) -> Result<Run> {
        let (mut xs, mut ys) = (Cursor::new(a), Cursor::new(b));
        let mut w = RunWriter::new()?;
        loop {
            let k = match (xs.peek()?, ys.peek()?) {
                (Some(x), Some(y)) => {
                    if x <= y {
                        xs.advance();
                    }
                    if y <= x {
                        ys.advance();
                    }
                    x.min(y)
                }
                (Some(x), None) => {
                    xs.advance();
                    x
                }
                (None, Some(y)) => {
                    ys.advance();
                    y
                }
                (None, None) => break,
            };
            w.push(k)?;
        }
        w.finish()
    }
}

/// A window's keys: the newest in memory, the rest in sorted runs on local
/// disk (see the module's documentation).
#[derive(Debug, Clone)]
pub struct KeySet {
    tail: HashSet<u128, BuildHasherDefault<Passthrough>>,
    runs: Vec<Arc<Run>>,
    spill_at: usize,
}

impl Default for KeySet {
    fn default() -> Self {
        Self::with_spill_at(SPILL_KEYS)
    }
}

impl KeySet {
    /// A set that writes its keys to a run once it holds `spill_at` in
    /// memory.
    pub fn with_spill_at(spill_at: usize) -> Self {
        KeySet {
            tail: HashSet::default(),
            runs: Vec::new(),
            spill_at: spill_at.max(1),
        }
    }

    /// Which of `keys` the set holds.
    pub fn contains_keys(&self, keys: &[u128]) -> Result<Vec<bool>> {
        let mut found: Vec<bool> = keys.iter().map(|k| self.tail.contains(k)).collect();
        if !self.runs.is_empty() {
            let mut sorted: Vec<(u128, usize)> = keys
                .iter()
                .enumerate()
                .filter(|(at, _)| !found[*at])
                .map(|(at, &k)| (k, at))
                .collect();
            sorted.sort_unstable();
            for r in &self.runs {
                r.find(&sorted, &mut found)?;
            }
        }
        Ok(found)
    }

    /// True when the window holds this record's key.
    pub fn contains(&self, tenant: &str, event_id: &str) -> Result<bool> {
        Ok(self.contains_keys(&[key(tenant, event_id)])?[0])
    }

    /// Adds keys; writes them to disk past the set's memory share.
    pub fn extend(&mut self, keys: impl IntoIterator<Item = u128>) -> Result<()> {
        for k in keys {
            self.tail.insert(k);
            if self.tail.len() >= self.spill_at {
                self.spill()?;
            }
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        let mut keys: Vec<u128> = self.tail.drain().collect();
        self.tail.shrink_to(self.spill_at);
        keys.sort_unstable();
        self.runs.push(Arc::new(Run::write(&keys)?));
        // Size-tiered, as a binary counter: a run is merged into the one
        // before it once it is as large, so that each key is written about
        // log2(n / spill_at) times and that many runs are kept.
        while let [.., a, b] = self.runs.as_slice()
            && b.len >= a.len
        {
            let merged = Run::merge(a, b)?;
            self.runs.truncate(self.runs.len() - 2);
            self.runs.push(Arc::new(merged));
        }
        Ok(())
    }

    /// Keys held (a key added twice may count twice).
    pub fn len(&self) -> usize {
        self.tail.len() + self.runs.iter().map(|r| r.len).sum::<usize>()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory held, bytes (the runs' files are on disk).
    pub fn bytes(&self) -> usize {
        self.tail.capacity() * (KEY_BYTES + 1)
            + self
                .runs
                .iter()
                .map(|r| r.index.capacity() * KEY_BYTES)
                .sum::<usize>()
    }

    /// Sorted runs on disk.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }
}

/// The keys of batches with `tenant_id` and `event_id` string columns.
pub fn batch_keys(batches: &[RecordBatch]) -> Result<Vec<u128>> {
    let mut out = Vec::new();
    for b in batches {
        let s = b.schema();
        let (t, e) = (s.index_of("tenant_id")?, s.index_of("event_id")?);
        let tenants = b
            .column(t)
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::Internal("tenant_id is not a string column".into()))?;
        let events = b
            .column(e)
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::Internal("event_id is not a string column".into()))?;
        out.reserve(b.num_rows());
        for i in 0..b.num_rows() {
            if tenants.is_null(i) || events.is_null(i) {
                continue;
            }
            out.push(key(tenants.value(i), events.value(i)));
        }
    }
    Ok(out)
}

/// Adds the keys of Parquet objects (curated records or dead letters) to
/// `set`, reading only their `tenant_id` and `event_id` columns.
pub async fn read_keys(
    store: &Arc<dyn ObjectStore>,
    paths: &[String],
    set: &mut KeySet,
) -> Result<()> {
    for p in paths {
        let bytes = get_bytes(store.as_ref(), &Path::from(p.as_str())).await?;
        let b = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(logferry_core::Error::Parquet)?;
        let schema = b.schema().clone();
        let cols = [schema.index_of("tenant_id")?, schema.index_of("event_id")?];
        let mask = ProjectionMask::roots(b.parquet_schema(), cols);
        for batch in b
            .with_projection(mask)
            .build()
            .map_err(logferry_core::Error::Parquet)?
        {
            set.extend(batch_keys(std::slice::from_ref(&batch?))?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tell_tenants_and_events_apart() {
        assert_ne!(key("a", "bc"), key("ab", "c"));
        assert_ne!(key("t1", "e"), key("t2", "e"));
        let mut s = KeySet::default();
        s.extend([key("t1", "e1")]).unwrap();
        assert!(s.contains("t1", "e1").unwrap());
        assert!(!s.contains("t2", "e1").unwrap());
        assert_eq!(s.len(), 1);
    }

    /// A set past its memory share answers as a set in memory does, with
    /// its memory bounded and a handful of runs on disk.
    #[test]
    fn a_spilled_set_is_the_same_set() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (u128::from(rng) << 64) | u128::from(rng.rotate_left(17))
        };
        let added: Vec<u128> = (0..50_000).map(|_| next()).collect();
        let absent: Vec<u128> = (0..50_000).map(|_| next()).collect();
        let mut s = KeySet::with_spill_at(1000);
        // Added in uneven batches, some keys twice.
        for chunk in added.chunks(777) {
            s.extend(chunk.iter().copied()).unwrap();
        }
        s.extend(added[..3000].iter().copied()).unwrap();
        // 53,000 keys in runs of 1,000 at the most: at most log2(53) + 1.
        assert!(s.runs() >= 1 && s.runs() <= 6, "{} runs", s.runs());
        assert!(s.bytes() < 200_000, "{} bytes in memory", s.bytes());
        assert!(s.contains_keys(&added).unwrap().iter().all(|&f| f));
        assert!(s.contains_keys(&absent).unwrap().iter().all(|&f| !f));
        // Lookups of both at once, in any order.
        let mixed: Vec<u128> = added
            .iter()
            .zip(&absent)
            .flat_map(|(a, b)| [*b, *a])
            .collect();
        let found = s.contains_keys(&mixed).unwrap();
        assert!(found.iter().enumerate().all(|(i, &f)| f == (i % 2 == 1)));
        // The extremes of the key space.
        s.extend([0, u128::MAX]).unwrap();
        assert_eq!(
            s.contains_keys(&[0, 1, u128::MAX]).unwrap(),
            [true, false, true]
        );
        let mut clone = s.clone();
        clone.extend(absent[..10].iter().copied()).unwrap();
        assert!(!s.contains_keys(&absent[..10]).unwrap().iter().any(|&f| f));
        assert!(
            clone
                .contains_keys(&absent[..10])
                .unwrap()
                .iter()
                .all(|&f| f)
        );
    }
}
