//! The keys a window already holds, for micro-batch increments: an
//! increment keeps a record only if no earlier run of the window (its full
//! run or an earlier increment) kept or refused the same `(tenant_id,
//! event_id)`. Keys are 128-bit xxh3 hashes of the pair: a set of a
//! window's keys costs about 20 bytes per record, and two distinct pairs
//! share a hash with a probability far below any hardware error rate.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use xxhash_rust::xxh3::Xxh3;

use logferry_core::storage::get_bytes;

use crate::error::{Error, Result};

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

/// A window's keys.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashSet<u128, BuildHasherDefault<Passthrough>>,
}

impl KeySet {
    /// True when the window holds this record's key.
    pub fn contains(&self, tenant: &str, event_id: &str) -> bool {
        self.keys.contains(&key(tenant, event_id))
    }

    /// Adds keys.
    pub fn extend(&mut self, keys: impl IntoIterator<Item = u128>) {
        self.keys.extend(keys);
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Approximate memory held, bytes.
    pub fn bytes(&self) -> usize {
        self.keys.capacity() * (std::mem::size_of::<u128>() + 1)
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

/// Reads the keys of Parquet objects (curated records or dead letters),
/// only their `tenant_id` and `event_id` columns.
pub async fn read_keys(store: &Arc<dyn ObjectStore>, paths: &[String]) -> Result<Vec<u128>> {
    let mut out = Vec::new();
    for p in paths {
        let bytes = get_bytes(store.as_ref(), &Path::from(p.as_str())).await?;
        let b = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(logferry_core::Error::Parquet)?;
        let schema = b.schema().clone();
        let cols = [schema.index_of("tenant_id")?, schema.index_of("event_id")?];
        let mask = ProjectionMask::roots(b.parquet_schema(), cols);
        let batches = b
            .with_projection(mask)
            .build()
            .map_err(logferry_core::Error::Parquet)?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        out.extend(batch_keys(&batches)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tell_tenants_and_events_apart() {
        assert_ne!(key("a", "bc"), key("ab", "c"));
        assert_ne!(key("t1", "e"), key("t2", "e"));
        let mut s = KeySet::default();
        s.extend([key("t1", "e1")]);
        assert!(s.contains("t1", "e1"));
        assert!(!s.contains("t2", "e1"));
        assert_eq!(s.len(), 1);
    }
}
