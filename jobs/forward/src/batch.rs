//! Arrow builders for landing records and dead-letter entries, shaped by the
//! schemas in `schemas/` (a mismatch fails at the first flush and in tests).

use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder, TimestampMicrosecondBuilder};
use arrow::record_batch::RecordBatch;

pub use logferry_core::dlq::{DlqBuilder, DlqRow};
use logferry_core::schema::log_record_schema;

use crate::record::ValidRecord;

fn ts_builder(cap: usize) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC")
}

/// Columns of `log_record` under construction.
pub struct LandingBuilder {
    event_id: StringBuilder,
    tenant_id: StringBuilder,
    timestamp: TimestampMicrosecondBuilder,
    ingest_time: TimestampMicrosecondBuilder,
    level: StringBuilder,
    service: StringBuilder,
    message: StringBuilder,
    request_id: StringBuilder,
    trace_id: StringBuilder,
    source: StringBuilder,
    source_account: StringBuilder,
    attributes: StringBuilder,
    rows: usize,
    bytes: usize,
}

impl std::fmt::Debug for LandingBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LandingBuilder")
            .field("rows", &self.rows)
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// One accepted record with the fields its source supplies.
#[derive(Debug)]
pub struct LandingRow<'r, 'a> {
    /// Event id.
    pub event_id: &'r str,
    /// Tenant of the source.
    pub tenant_id: &'r str,
    /// Receive time, microseconds.
    pub ingest_us: i64,
    /// Stream or log group.
    pub source: &'r str,
    /// Source account (envelope owner, or the record's own).
    pub source_account: Option<&'r str>,
    /// Remaining fields as JSON, empty for none.
    pub attributes: &'r str,
    /// The validated record.
    pub record: &'r ValidRecord<'a>,
}

impl Default for LandingBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LandingBuilder {
    /// Empty builder, sized for a chunk's share of one partition; it grows
    /// by doubling. (Finished batches keep their capacity while they wait to
    /// be flushed, so over-sizing here costs resident memory.)
    pub fn new() -> Self {
        Self::with_capacity(64)
    }

    /// Empty builder for about `cap` rows.
    pub fn with_capacity(cap: usize) -> Self {
        LandingBuilder {
            event_id: StringBuilder::with_capacity(cap, cap * 32),
            tenant_id: StringBuilder::with_capacity(cap, cap * 12),
            timestamp: ts_builder(cap),
            ingest_time: ts_builder(cap),
            level: StringBuilder::with_capacity(cap, cap * 5),
            service: StringBuilder::with_capacity(cap, cap * 10),
            message: StringBuilder::with_capacity(cap, cap * 160),
            request_id: StringBuilder::with_capacity(cap, cap * 36),
            trace_id: StringBuilder::with_capacity(cap, cap * 32),
            source: StringBuilder::with_capacity(cap, cap * 20),
            source_account: StringBuilder::with_capacity(cap, cap * 12),
            attributes: StringBuilder::with_capacity(cap, cap * 160),
            rows: 0,
            bytes: 0,
        }
    }

    /// Appends one record.
    pub fn push(&mut self, r: &LandingRow<'_, '_>) {
        let rec = r.record;
        self.event_id.append_value(r.event_id);
        self.tenant_id.append_value(r.tenant_id);
        self.timestamp.append_value(rec.timestamp_us);
        self.ingest_time.append_value(r.ingest_us);
        self.level.append_value(&rec.level);
        self.service.append_value(&rec.service);
        self.message.append_value(&rec.message);
        self.request_id.append_option(rec.request_id.as_deref());
        self.trace_id.append_option(rec.trace_id.as_deref());
        self.source.append_value(r.source);
        self.source_account.append_option(r.source_account);
        if r.attributes.is_empty() {
            self.attributes.append_null();
        } else {
            self.attributes.append_value(r.attributes);
        }
        self.rows += 1;
        self.bytes += 16
            + r.event_id.len()
            + r.tenant_id.len()
            + rec.level.len()
            + rec.service.len()
            + rec.message.len()
            + rec.request_id.as_ref().map_or(0, |s| s.len())
            + rec.trace_id.as_ref().map_or(0, |s| s.len())
            + r.source.len()
            + r.source_account.map_or(0, str::len)
            + r.attributes.len();
    }

    /// Rows appended since the last finish.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Approximate decoded bytes appended since the last finish.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Builds the batch and resets the builder.
    pub fn finish(&mut self) -> arrow::error::Result<RecordBatch> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.tenant_id.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.ingest_time.finish()),
            Arc::new(self.level.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.message.finish()),
            Arc::new(self.request_id.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.source_account.finish()),
            Arc::new(self.attributes.finish()),
        ];
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(log_record_schema(), cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn builders_match_the_schemas() {
        let rec = ValidRecord {
            timestamp_us: 1,
            level: Cow::Borrowed("INFO"),
            service: Cow::Borrowed("s"),
            message: Cow::Borrowed("m"),
            request_id: None,
            trace_id: Some(Cow::Borrowed("t")),
            source_account: None,
        };
        let mut b = LandingBuilder::new();
        b.push(&LandingRow {
            event_id: "e",
            tenant_id: "a",
            ingest_us: 2,
            source: "logs-a",
            source_account: None,
            attributes: "",
            record: &rec,
        });
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(b.rows(), 0);
        let mut d = DlqBuilder::new();
        d.push(&DlqRow {
            stage: "forward",
            reason: "malformed_json",
            detail: "x",
            tenant_key: "_unknown",
            source: None,
            event_id: None,
            timestamp_us: None,
            ingest_us: 3,
            input: "f",
            position: "line 1",
            raw: b"abc",
            raw_bytes: 10,
            payload: Some("ndjson_line"),
        });
        let batch = d.finish().unwrap();
        assert_eq!(batch.num_rows(), 1);
    }
}
