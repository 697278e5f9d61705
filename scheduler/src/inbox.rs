//! The inbox: an object-store prefix (a local folder on the embedded
//! default, `s3://…` in production) where raw files are dropped, by
//! Firehose, a CloudWatch Logs export task or a copy. Each new object is
//! forwarded once: the format comes from its name (`.ndjson` / `.jsonl`,
//! `.cwl` for CloudWatch Logs payload lines, either optionally `.gz`);
//! names starting with `.` or `_` are ignored (writers rename finished
//! files into place). An object forwarded is recorded in the ledger by name
//! and e-tag (`inbox/done/<name hash>-<e-tag hash>`), under a lease while
//! it is read; a changed object (new e-tag) is forwarded again, its
//! repeated records removed by dedupe. Forwarding an object twice (a crash
//! before its record) lands nothing twice: landing objects are named after
//! what they hold.
//!
//! An object that cannot be read as its name says (not gzip, gzip that
//! breaks off) is forwarded as far as it reads, and the rest is one
//! dead-letter entry (`corrupt_input`).

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, ObjectMeta, ObjectStore};
use serde::Serialize;

use logferry_core::dlq::DlqRow;
use logferry_core::ids::hash_hex;
use logferry_core::ledger::Holder;
use logferry_core::partition::UNKNOWN_TENANT;
use logferry_core::storage::{Location, list_all, writer_properties};
use logferry_forward::batcher::ChunkSink;
use logferry_forward::decode::Emit;
use logferry_forward::kinesis::land;
use logferry_forward::{Format, ForwardReport, Input};

use crate::context::Ctx;
use crate::error::{Error, Result};

/// How an inbox object's name says it is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The records' format.
    pub format: Format,
    /// Gzip-compressed.
    pub gzip: bool,
}

/// The format of an inbox object, from its name; `None`: not one to forward.
pub fn kind(name: &str) -> Option<Kind> {
    let base = name.rsplit('/').next().unwrap_or(name);
    if base.starts_with('.') || base.starts_with('_') {
        return None;
    }
    let (stem, gzip) = match base.strip_suffix(".gz") {
        Some(s) => (s, true),
        None => (base, false),
    };
    let format = if stem.ends_with(".ndjson") || stem.ends_with(".jsonl") {
        Format::Ndjson
    } else if stem.ends_with(".cwl") {
        Format::Cloudwatch
    } else {
        return None;
    };
    Some(Kind { format, gzip })
}

/// What one look at the inbox did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InboxReport {
    /// Objects forwarded, with what their forward did.
    pub forwarded: Vec<ForwardReport>,
    /// Objects skipped: done before, or named to be ignored.
    pub skipped: u64,
    /// Objects another forwarder was reading.
    pub busy: u64,
    /// Objects that could not be forwarded this time (retried next time).
    pub failed: Vec<(String, String)>,
    /// Objects that did not read whole (`corrupt_input` dead letters).
    pub corrupt: u64,
}

/// The inbox of a context, with what this process knows is done.
pub struct Inbox {
    loc: Location,
    holder: Holder,
    done: Mutex<Option<BTreeSet<String>>>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").field("url", &self.loc.url).finish()
    }
}

fn marker(name: &str, etag: &str) -> String {
    format!(
        "inbox/done/{}-{}",
        &hash_hex(name.as_bytes())[..20],
        &hash_hex(etag.as_bytes())[..12]
    )
}

/// The object's version: its e-tag, else its size and time.
fn version(m: &ObjectMeta) -> String {
    m.e_tag
        .clone()
        .unwrap_or_else(|| format!("{}-{}", m.size, m.last_modified.timestamp_micros()))
}

/// A source error seen through the decompressor: not the object's fault.
#[derive(Debug)]
struct SourceError(std::io::Error);

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading the object: {}", self.0)
    }
}

impl std::error::Error for SourceError {}

/// Reads an object's body, streamed from the store by a task of the
/// runtime, on the forward's reader thread.
struct ObjectReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    return Err(std::io::Error::new(e.kind(), SourceError(e)));
                }
                None => return Ok(0),
            }
        }
        let n = self.cur.len().min(buf.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Where a decompressed object stopped being readable.
#[derive(Debug, Default)]
struct Broken {
    at: u64,
    error: Option<String>,
}

/// Ends the input where it stops being readable as gzip (and says so),
/// while an error of the store itself still fails the read.
struct UntilBroken<R> {
    inner: R,
    read: u64,
    broken: Arc<Mutex<Broken>>,
}

impl<R: Read> Read for UntilBroken<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.read += n as u64;
                Ok(n)
            }
            Err(e) if e.get_ref().is_some_and(|i| i.is::<SourceError>()) => Err(e),
            Err(e) => {
                let mut b = self.broken.lock().unwrap_or_else(|p| p.into_inner());
                b.at = self.read;
                b.error = Some(e.to_string());
                Ok(0)
            }
        }
    }
}

impl Inbox {
    /// The configured inbox.
    pub fn open(ctx: &Ctx) -> Result<Self> {
        let url = &ctx.settings.daemon.inbox_url;
        let loc = Location::open_with(url, &ctx.settings.aws)
            .map_err(|e| Error::from(e).context(format!("opening the inbox {url}")))?;
        Ok(Inbox {
            loc,
            holder: Holder::this_process(),
            done: Mutex::new(None),
        })
    }

    /// The inbox's URL.
    pub fn url(&self) -> &str {
        &self.loc.url
    }

    async fn done_set(&self, ctx: &Ctx) -> Result<BTreeSet<String>> {
        if let Some(d) = self.done.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(d);
        }
        let set: BTreeSet<String> = ctx.ledger().list("inbox/done").await?.into_iter().collect();
        *self.done.lock().unwrap_or_else(|p| p.into_inner()) = Some(set.clone());
        Ok(set)
    }

    fn remember(&self, key: String) {
        if let Some(d) = self.done.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            d.insert(key);
        }
    }

    /// Looks at the inbox once and forwards every new object, until `stop`.
    pub async fn scan(
        &self,
        ctx: &Ctx,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<InboxReport> {
        let mut report = InboxReport::default();
        let done = self.done_set(ctx).await?;
        let ledger = ctx.ledger();
        for m in list_all(self.loc.store.as_ref(), &Path::from("")).await? {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let name = m.location.to_string();
            let Some(kind) = kind(&name) else {
                report.skipped += 1;
                continue;
            };
            let key = marker(&name, &version(&m));
            if done.contains(&key) {
                report.skipped += 1;
                continue;
            }
            let lease_key = format!("leases/inbox/{}", &hash_hex(name.as_bytes())[..20]);
            let Some(lease) = ledger
                .try_lease(&lease_key, &self.holder, ctx.settings.lease_ttl)
                .await?
            else {
                report.busy += 1;
                continue;
            };
            // Another forwarder may have done it since we listed.
            if !ledger.list(&key).await?.is_empty() {
                lease.release().await?;
                self.remember(key);
                report.skipped += 1;
                continue;
            }
            let result = self.forward(ctx, &m, kind).await;
            let released = lease.release().await;
            match result {
                Ok((fwd, corrupt)) => {
                    ledger.mark(&key).await?;
                    tracing::info!(
                        object = %name,
                        received = fwd.decode.received,
                        accepted = fwd.decode.accepted,
                        dead_lettered = fwd.decode.dead_lettered,
                        corrupt,
                        "Inbox object forwarded."
                    );
                    self.remember(key);
                    report.corrupt += u64::from(corrupt);
                    report.forwarded.push(fwd);
                }
                Err(e) => {
                    tracing::error!(object = %name, error = %e, "Inbox object not forwarded; tried again next time.");
                    report.failed.push((name, e.to_string()));
                }
            }
            released?;
        }
        Ok(report)
    }

    /// Forwards one object; returns its report and whether it broke off.
    async fn forward(
        &self,
        ctx: &Ctx,
        m: &ObjectMeta,
        kind: Kind,
    ) -> Result<(ForwardReport, bool)> {
        let url = format!("{}/{}", self.loc.url.trim_end_matches('/'), m.location);
        let opts = GetOptions {
            if_match: m.e_tag.clone(),
            ..Default::default()
        };
        let got = self
            .loc
            .store
            .get_opts(&m.location, opts)
            .await
            .map_err(|e| logferry_core::Error::storage(&m.location, e))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
        let mut stream = got.into_stream();
        tokio::spawn(async move {
            while let Some(chunk) = stream.next().await {
                let item = chunk.map_err(std::io::Error::other);
                let end = item.is_err();
                if tx.send(item).await.is_err() || end {
                    break;
                }
            }
        });
        let body = ObjectReader {
            rx,
            cur: Bytes::new(),
        };
        let broken = Arc::new(Mutex::new(Broken::default()));
        let reader: Box<dyn Read + Send> = if kind.gzip {
            Box::new(UntilBroken {
                inner: flate2::read::MultiGzDecoder::new(body),
                read: 0,
                broken: broken.clone(),
            })
        } else {
            Box::new(body)
        };
        let report = crate::forward::forward_input(
            ctx,
            Input::reader(url.clone(), reader),
            kind.format,
            0,
            true,
        )
        .await?;
        let broke = std::mem::take(&mut *broken.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(error) = broke.error {
            self.dead_letter(ctx, &url, m, broke.at, &error).await?;
            return Ok((report, true));
        }
        Ok((report, false))
    }

    /// One `corrupt_input` entry for the unreadable rest of an object.
    async fn dead_letter(
        &self,
        ctx: &Ctx,
        url: &str,
        m: &ObjectMeta,
        at: u64,
        error: &str,
    ) -> Result<()> {
        let ids = ctx.tenant_ids();
        let mut sink = ChunkSink::new(ids.len(), ctx.now().timestamp_micros());
        let detail = format!(
            "{url} is not readable as gzip after {at} decompressed bytes: {error}; what came before was forwarded"
        );
        let position = format!("byte {at} (decompressed)");
        sink.reject(&DlqRow {
            stage: "forward",
            reason: "corrupt_input",
            detail: &detail,
            tenant_key: UNKNOWN_TENANT,
            source: None,
            event_id: None,
            timestamp_us: None,
            ingest_us: Utc::now().timestamp_micros(),
            input: url,
            position: &position,
            raw: &[],
            raw_bytes: m.size,
            payload: None,
        });
        let out = sink.finish(&ids).map_err(Error::Fatal)?;
        let id = format!(
            "inbox-{}",
            &hash_hex(format!("{url}@{}", version(m)).as_bytes())[..24]
        );
        let props = writer_properties(&ctx.settings.parquet)?;
        land(&ctx.lake, &ctx.ledger(), &props, &ids, out, &id).await?;
        Ok(())
    }
}

/// Forwards every new object of the inbox once (`logferry forward --inbox`).
pub async fn forward_once(ctx: &Ctx) -> Result<InboxReport> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    Inbox::open(ctx)?.scan(ctx, &stop).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_says_the_format() {
        let k = |n| kind(n).map(|k| (k.format, k.gzip));
        assert_eq!(k("a/b.ndjson"), Some((Format::Ndjson, false)));
        assert_eq!(k("x.jsonl.gz"), Some((Format::Ndjson, true)));
        assert_eq!(
            k("firehose/2026/12/01/x.cwl.gz"),
            Some((Format::Cloudwatch, true))
        );
        assert_eq!(k("x.cwl"), Some((Format::Cloudwatch, false)));
        for ignored in [
            ".x.ndjson",
            "_tmp.ndjson",
            "dir/.part.jsonl",
            "x.json",
            "x.gz",
            "x.ndjson.zip",
        ] {
            assert_eq!(k(ignored), None, "{ignored}");
        }
    }
}
