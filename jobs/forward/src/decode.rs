//! The decoders of every source format, producing accepted records and
//! dead-letter entries into an [`Emit`] sink. One decoder serves NDJSON files,
//! CloudWatch Logs subscription payloads (base64 lines or raw gzip) and
//! single JSON records whose tenant the source already settled (Kinesis).

use std::fmt;

use logferry_core::config::{ForwardSettings, Tenant, TenantRegistry};
use logferry_core::ids::hash_hex_into;
use logferry_core::partition::UNKNOWN_TENANT;

use crate::batch::{DlqRow, LandingRow};
use crate::cwl::{self, Decoded};
use crate::reason::{Reason, Rejection};
use crate::record::{
    Limits, ParseOptions, Val, check_tenant_claim, parse_record, timestamp_micros, validate,
};

/// Where an item sits in its input, for dead-letter entries.
#[derive(Debug, Clone, Copy)]
pub enum Pos {
    /// A line of a file (1-based).
    Line(u64),
    /// An event of the envelope on a line (both 1-based).
    LineEvent(u64, usize),
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pos::Line(l) => write!(f, "line {l}"),
            Pos::LineEvent(l, e) => write!(f, "line {l} event {e}"),
        }
    }
}

/// Receives what the decoder makes of each item.
pub trait Emit {
    /// An accepted record of `tenant`.
    fn accept(&mut self, tenant: &Tenant, row: &LandingRow<'_, '_>);
    /// A refused item.
    fn reject(&mut self, row: &DlqRow<'_>);
    /// A CloudWatch Logs control message (no records; counted only).
    fn control(&mut self);
}

/// Per-item context: input name, receive time.
#[derive(Debug, Clone, Copy)]
pub struct ItemCtx<'a> {
    /// Input name for DLQ entries.
    pub input: &'a str,
    /// Receive time, microseconds.
    pub ingest_us: i64,
}

/// Stateful decoder: reuses its scratch buffers across items.
pub struct Decoder<'s> {
    settings: &'s ForwardSettings,
    tenants: &'s TenantRegistry,
    limits: Limits,
    attrs: String,
    gz: Vec<u8>,
    position: String,
}

impl fmt::Debug for Decoder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("limits", &self.limits)
            .finish()
    }
}

/// Limits for a given "now".
pub fn limits_at(settings: &ForwardSettings, now_us: i64) -> Limits {
    let age = i64::try_from(settings.max_age.as_micros()).unwrap_or(i64::MAX);
    let skew = i64::try_from(settings.max_skew.as_micros()).unwrap_or(i64::MAX);
    Limits {
        min_ts_us: now_us.saturating_sub(age),
        max_ts_us: now_us.saturating_add(skew),
        max_message_bytes: settings.max_message_bytes,
    }
}

/// The fields that describe a record's origin.
struct Origin<'r> {
    tenant: &'r Tenant,
    source: &'r str,
    source_account: Option<&'r str>,
    event_id: &'r str,
    fallback_ts_us: Option<i64>,
}

impl<'s> Decoder<'s> {
    /// A decoder validating against `now_us`.
    pub fn new(settings: &'s ForwardSettings, tenants: &'s TenantRegistry, now_us: i64) -> Self {
        Decoder {
            settings,
            tenants,
            limits: limits_at(settings, now_us),
            attrs: String::new(),
            gz: Vec::new(),
            position: String::new(),
        }
    }

    /// Moves "now" (long-running streaming inputs).
    pub fn set_now(&mut self, now_us: i64) {
        self.limits = limits_at(self.settings, now_us);
    }

    fn raw_cut<'r>(&self, raw: &'r [u8]) -> &'r [u8] {
        &raw[..raw.len().min(self.settings.dlq_raw_limit)]
    }

    #[allow(clippy::too_many_arguments)]
    fn reject(
        &mut self,
        out: &mut dyn Emit,
        ctx: &ItemCtx<'_>,
        pos: Pos,
        rej: &Rejection,
        tenant_key: &str,
        source: Option<&str>,
        event_id: Option<&str>,
        timestamp_us: Option<i64>,
        raw: &[u8],
        raw_len: u64,
    ) {
        use std::fmt::Write;
        self.position.clear();
        let _ = write!(self.position, "{pos}");
        let raw = self.raw_cut(raw);
        out.reject(&DlqRow {
            stage: "forward",
            reason: rej.reason.as_str(),
            detail: &rej.detail,
            tenant_key,
            source,
            event_id,
            timestamp_us,
            ingest_us: ctx.ingest_us,
            input: ctx.input,
            position: &self.position,
            raw,
            raw_bytes: raw_len,
        });
    }

    /// A line longer than its format allows: refused unparsed. `prefix` is
    /// what was kept of it, `total` its full length, `limit` the bound.
    #[allow(clippy::too_many_arguments)]
    pub fn oversized(
        &mut self,
        reason: Reason,
        prefix: &[u8],
        total: u64,
        limit: usize,
        ctx: &ItemCtx<'_>,
        pos: Pos,
        out: &mut dyn Emit,
    ) {
        let rej = Rejection::new(reason, format!("line is {total} bytes, limit {limit}"));
        self.reject(
            out,
            ctx,
            pos,
            &rej,
            UNKNOWN_TENANT,
            None,
            None,
            None,
            prefix,
            total,
        );
    }

    /// One NDJSON line (without its newline). The tenant comes from the
    /// line's arrival-stream field.
    pub fn ndjson_line(&mut self, line: &[u8], ctx: &ItemCtx<'_>, pos: Pos, out: &mut dyn Emit) {
        let len = line.len() as u64;
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                let rej = Rejection::new(
                    Reason::InvalidUtf8,
                    format!("invalid UTF-8 at byte {}", e.valid_up_to()),
                );
                return self.reject(
                    out,
                    ctx,
                    pos,
                    &rej,
                    UNKNOWN_TENANT,
                    None,
                    None,
                    None,
                    line,
                    len,
                );
            }
        };
        let opts = ParseOptions {
            stream_field: Some(self.settings.stream_field.as_str()),
            source_account: true,
        };
        let mut attrs = std::mem::take(&mut self.attrs);
        match parse_record(text, opts, &mut attrs) {
            Err(rej) => {
                self.reject(
                    out,
                    ctx,
                    pos,
                    &rej,
                    UNKNOWN_TENANT,
                    None,
                    None,
                    None,
                    line,
                    len,
                );
            }
            Ok(parsed) => {
                let ts = parsed
                    .timestamp
                    .as_ref()
                    .and_then(|t| timestamp_micros(t).ok());
                let stream = match &parsed.stream {
                    Some(Val::Str(s)) => s.as_ref(),
                    other => {
                        let detail = match other {
                            None => format!(
                                "no {:?} field: the arrival stream is unknown",
                                self.settings.stream_field
                            ),
                            Some(v) => format!(
                                "{:?} must be a string, found {}",
                                self.settings.stream_field,
                                v.type_name()
                            ),
                        };
                        let rej = Rejection::new(Reason::MissingSource, detail);
                        self.reject(
                            out,
                            ctx,
                            pos,
                            &rej,
                            UNKNOWN_TENANT,
                            None,
                            None,
                            ts,
                            line,
                            len,
                        );
                        self.attrs = attrs;
                        return;
                    }
                };
                match self.tenants.by_stream(stream) {
                    None => {
                        let rej = Rejection::new(
                            Reason::UnknownTenant,
                            format!("stream {:?} belongs to no configured tenant", stream),
                        );
                        self.reject(
                            out,
                            ctx,
                            pos,
                            &rej,
                            UNKNOWN_TENANT,
                            Some(stream),
                            None,
                            ts,
                            line,
                            len,
                        );
                    }
                    Some(tenant) => {
                        let mut hex = [0u8; 32];
                        let event_id = hash_hex_into(line, &mut hex);
                        let account = match &parsed.source_account {
                            Some(Val::Str(s)) => Some(s.as_ref()),
                            _ => None,
                        };
                        let origin = Origin {
                            tenant,
                            source: stream,
                            source_account: account,
                            event_id,
                            fallback_ts_us: None,
                        };
                        self.finish(&parsed, &attrs, &origin, ctx, pos, line, out);
                    }
                }
            }
        }
        self.attrs = attrs;
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        parsed: &crate::record::Parsed<'_>,
        attrs: &str,
        o: &Origin<'_>,
        ctx: &ItemCtx<'_>,
        pos: Pos,
        raw: &[u8],
        out: &mut dyn Emit,
    ) {
        let checked = check_tenant_claim(parsed.tenant_id.as_ref(), o.tenant, self.tenants)
            .and_then(|()| validate(parsed, &self.limits, o.fallback_ts_us));
        match checked {
            Ok(rec) => {
                let account = o.source_account.or(rec.source_account.as_deref());
                out.accept(
                    o.tenant,
                    &LandingRow {
                        event_id: o.event_id,
                        tenant_id: o.tenant.id.as_str(),
                        ingest_us: ctx.ingest_us,
                        source: o.source,
                        source_account: account,
                        attributes: attrs,
                        record: &rec,
                    },
                );
            }
            Err(rej) => {
                let ts = parsed
                    .timestamp
                    .as_ref()
                    .and_then(|t| timestamp_micros(t).ok())
                    .or(o.fallback_ts_us);
                self.reject(
                    out,
                    ctx,
                    pos,
                    &rej,
                    o.tenant.id.as_str(),
                    Some(o.source),
                    Some(o.event_id),
                    ts,
                    raw,
                    raw.len() as u64,
                );
            }
        }
    }

    /// One line of a CloudWatch Logs subscription file: base64 of the gzip
    /// payload.
    pub fn cloudwatch_line(
        &mut self,
        line: &[u8],
        ctx: &ItemCtx<'_>,
        line_no: u64,
        out: &mut dyn Emit,
    ) {
        match cwl::decode_base64(line) {
            Ok(gz) => self.cloudwatch_payload(&gz, line, ctx, line_no, out),
            Err(rej) => {
                let len = line.len() as u64;
                self.reject(
                    out,
                    ctx,
                    Pos::Line(line_no),
                    &rej,
                    UNKNOWN_TENANT,
                    None,
                    None,
                    None,
                    line,
                    len,
                );
            }
        }
    }

    /// A gzip CloudWatch Logs payload (a Kinesis record, or a decoded line).
    /// `raw` is what is kept in the DLQ if the envelope is refused as a whole.
    pub fn cloudwatch_payload(
        &mut self,
        gz: &[u8],
        raw: &[u8],
        ctx: &ItemCtx<'_>,
        line_no: u64,
        out: &mut dyn Emit,
    ) {
        let pos = Pos::Line(line_no);
        let raw_len = raw.len() as u64;
        let mut buf = std::mem::take(&mut self.gz);
        if let Err(rej) = cwl::gunzip_bounded(gz, self.settings.max_envelope_bytes, &mut buf) {
            self.reject(
                out,
                ctx,
                pos,
                &rej,
                UNKNOWN_TENANT,
                None,
                None,
                None,
                raw,
                raw_len,
            );
            self.gz = buf;
            return;
        }
        match cwl::parse_envelope(&buf, self.settings.max_envelope_events) {
            Err(rej) => {
                self.reject(
                    out,
                    ctx,
                    pos,
                    &rej,
                    UNKNOWN_TENANT,
                    None,
                    None,
                    None,
                    raw,
                    raw_len,
                );
            }
            Ok(Decoded::Control) => out.control(),
            Ok(Decoded::Data(env)) => self.envelope(&env, raw, ctx, line_no, out),
        }
        self.gz = buf;
    }

    fn envelope(
        &mut self,
        env: &cwl::Envelope<'_>,
        raw: &[u8],
        ctx: &ItemCtx<'_>,
        line_no: u64,
        out: &mut dyn Emit,
    ) {
        let pos = Pos::Line(line_no);
        let raw_len = raw.len() as u64;
        let group = env.log_group.as_ref();
        let Some(tenant) = self.tenants.by_log_group(group) else {
            let rej = Rejection::new(
                Reason::UnknownTenant,
                format!("log group {group:?} belongs to no configured tenant"),
            );
            return self.reject(
                out,
                ctx,
                pos,
                &rej,
                UNKNOWN_TENANT,
                Some(group),
                None,
                None,
                raw,
                raw_len,
            );
        };
        if !tenant.allows_account(&env.owner) {
            // Not the tenant's data: kept out of its partitions.
            let rej = Rejection::new(
                Reason::AccountNotAllowed,
                format!(
                    "account {:?} may not send for tenant {} (log group {group:?})",
                    env.owner, tenant.id
                ),
            );
            return self.reject(
                out,
                ctx,
                pos,
                &rej,
                UNKNOWN_TENANT,
                Some(group),
                None,
                None,
                raw,
                raw_len,
            );
        }
        let opts = ParseOptions {
            stream_field: None,
            source_account: false,
        };
        let mut attrs = std::mem::take(&mut self.attrs);
        for (j, ev) in env.log_events.iter().enumerate() {
            let pos = Pos::LineEvent(line_no, j + 1);
            let msg = ev.message.as_bytes();
            let key = tenant.id.as_str();
            let fallback = ev.timestamp.checked_mul(1000);
            if msg.len() > self.settings.max_record_bytes {
                let rej = Rejection::new(
                    Reason::OversizedRecord,
                    format!(
                        "event is {} bytes, limit {}",
                        msg.len(),
                        self.settings.max_record_bytes
                    ),
                );
                let id = Some(ev.id.as_ref()).filter(|s| !s.is_empty());
                self.reject(
                    out,
                    ctx,
                    pos,
                    &rej,
                    key,
                    Some(group),
                    id,
                    fallback,
                    msg,
                    msg.len() as u64,
                );
                continue;
            }
            if ev.id.is_empty() {
                let rej = Rejection::new(Reason::MissingField, "CloudWatch event has no id");
                self.reject(
                    out,
                    ctx,
                    pos,
                    &rej,
                    key,
                    Some(group),
                    None,
                    fallback,
                    msg,
                    msg.len() as u64,
                );
                continue;
            }
            match parse_record(&ev.message, opts, &mut attrs) {
                Err(rej) => {
                    self.reject(
                        out,
                        ctx,
                        pos,
                        &rej,
                        key,
                        Some(group),
                        Some(&ev.id),
                        fallback,
                        msg,
                        msg.len() as u64,
                    );
                }
                Ok(parsed) => {
                    let origin = Origin {
                        tenant,
                        source: group,
                        source_account: Some(env.owner.as_ref()).filter(|s| !s.is_empty()),
                        event_id: &ev.id,
                        fallback_ts_us: fallback,
                    };
                    self.finish(&parsed, &attrs, &origin, ctx, pos, msg, out);
                }
            }
        }
        self.attrs = attrs;
    }
}
