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
    Limits, ParseOptions, Val, check_tenant_claim, parse_record, timestamp_micros, utf8, validate,
};

/// Where an item sits in its input, for dead-letter entries.
#[derive(Debug, Clone, Copy)]
pub enum Pos<'a> {
    /// A line of a file (1-based).
    Line(u64),
    /// An event of the envelope on a line (both 1-based).
    LineEvent(u64, usize),
    /// A Kinesis record: its sequence number.
    Record(&'a str),
    /// An event of the envelope in a Kinesis record (1-based).
    RecordEvent(&'a str, usize),
    /// A line of a Kinesis record holding several JSON lines (1-based).
    RecordLine(&'a str, usize),
}

impl Pos<'_> {
    /// The position of event `j` (1-based) of the envelope here.
    pub fn event(self, j: usize) -> Self {
        match self {
            Pos::Line(l) | Pos::LineEvent(l, _) => Pos::LineEvent(l, j),
            Pos::Record(s) | Pos::RecordEvent(s, _) | Pos::RecordLine(s, _) => {
                Pos::RecordEvent(s, j)
            }
        }
    }
}

impl fmt::Display for Pos<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pos::Line(l) => write!(f, "line {l}"),
            Pos::LineEvent(l, e) => write!(f, "line {l} event {e}"),
            Pos::Record(s) => write!(f, "sequence {s}"),
            Pos::RecordEvent(s, e) => write!(f, "sequence {s} event {e}"),
            Pos::RecordLine(s, l) => write!(f, "sequence {s} line {l}"),
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
    /// What a refused line holds: `ndjson_line` or `cloudwatch_line`.
    line_kind: &'static str,
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
            line_kind: "ndjson_line",
        }
    }

    /// Moves "now" (long-running streaming inputs).
    pub fn set_now(&mut self, now_us: i64) {
        self.limits = limits_at(self.settings, now_us);
    }

    fn raw_cut<'r>(&self, raw: &'r [u8]) -> &'r [u8] {
        &raw[..raw.len().min(self.settings.dlq_raw_limit)]
    }

    /// Files a refused item with its whole payload `raw`.
    #[allow(clippy::too_many_arguments)]
    fn reject(
        &mut self,
        out: &mut dyn Emit,
        ctx: &ItemCtx<'_>,
        pos: Pos<'_>,
        rej: &Rejection,
        tenant_key: &str,
        source: Option<&str>,
        event_id: Option<&str>,
        timestamp_us: Option<i64>,
        raw: &[u8],
    ) {
        let len = raw.len() as u64;
        let at = (tenant_key, source, event_id, timestamp_us);
        self.reject_sized(out, ctx, pos, rej, at, raw, len);
    }

    /// Files a refused item that came before any tenant was known.
    fn reject_unknown(
        &mut self,
        out: &mut dyn Emit,
        ctx: &ItemCtx<'_>,
        pos: Pos<'_>,
        rej: &Rejection,
        raw: &[u8],
    ) {
        self.reject(out, ctx, pos, rej, UNKNOWN_TENANT, None, None, None, raw);
    }

    /// Files a refused item of `raw_len` bytes of which `raw` was kept;
    /// `at` is (tenant key, source, event id, event time).
    #[allow(clippy::too_many_arguments)]
    fn reject_sized(
        &mut self,
        out: &mut dyn Emit,
        ctx: &ItemCtx<'_>,
        pos: Pos<'_>,
        rej: &Rejection,
        at: (&str, Option<&str>, Option<&str>, Option<i64>),
        raw: &[u8],
        raw_len: u64,
    ) {
        use std::fmt::Write;
        let (tenant_key, source, event_id, timestamp_us) = at;
        self.position.clear();
        let _ = write!(self.position, "{pos}");
        let raw = self.raw_cut(raw);
        let payload = match pos {
            Pos::Line(_) => self.line_kind,
            Pos::LineEvent(..) | Pos::RecordEvent(..) => "cloudwatch_event",
            Pos::Record(_) => "kinesis_record",
            Pos::RecordLine(..) => "record_line",
        };
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
            payload: Some(payload),
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
        pos: Pos<'_>,
        out: &mut dyn Emit,
    ) {
        self.line_kind = if reason == Reason::EnvelopeTooLarge {
            "cloudwatch_line"
        } else {
            "ndjson_line"
        };
        let rej = Rejection::new(reason, format!("line is {total} bytes, limit {limit}"));
        let at = (UNKNOWN_TENANT, None, None, None);
        self.reject_sized(out, ctx, pos, &rej, at, prefix, total);
    }

    /// One NDJSON line (without its newline). The tenant comes from the
    /// line's arrival-stream field.
    pub fn ndjson_line(
        &mut self,
        line: &[u8],
        ctx: &ItemCtx<'_>,
        pos: Pos<'_>,
        out: &mut dyn Emit,
    ) {
        self.line_kind = "ndjson_line";
        let text = match utf8(line) {
            Ok(t) => t,
            Err(rej) => return self.reject_unknown(out, ctx, pos, &rej, line),
        };
        let opts = ParseOptions {
            stream_field: Some(self.settings.stream_field.as_str()),
            source_account: true,
        };
        let mut attrs = std::mem::take(&mut self.attrs);
        match parse_record(text, opts, &mut attrs) {
            Err(rej) => {
                self.reject_unknown(out, ctx, pos, &rej, line);
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
                        self.reject(out, ctx, pos, &rej, UNKNOWN_TENANT, None, None, ts, line);
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
        pos: Pos<'_>,
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
                );
            }
        }
    }

    /// One Kinesis record of a tenant's stream: a CloudWatch Logs
    /// subscription payload (gzip), or one or more JSON records, one per
    /// line. Event ids are the shard and sequence number (with the line
    /// number when a record holds several lines), or the CloudWatch event ids.
    #[allow(clippy::too_many_arguments)]
    pub fn kinesis_record(
        &mut self,
        data: &[u8],
        tenant: &Tenant,
        stream: &str,
        shard: &str,
        seq: &str,
        ctx: &ItemCtx<'_>,
        out: &mut dyn Emit,
    ) {
        let pos = Pos::Record(seq);
        if cwl::is_gzip(data) {
            return self.cloudwatch_payload(data, data, ctx, pos, Some((tenant, stream)), out);
        }
        let lines: Vec<&[u8]> = data
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .collect();
        if lines.is_empty() {
            // A record is an item even when it holds nothing: refused, so
            // that it is seen and counted.
            let rej = Rejection::new(Reason::MalformedJson, "record is empty or blank");
            let id = format!("{shard}:{seq}");
            let key = tenant.id.as_str();
            self.reject(
                out,
                ctx,
                pos,
                &rej,
                key,
                Some(stream),
                Some(&id),
                None,
                data,
            );
            return;
        }
        let several = lines.len() > 1;
        for (i, line) in lines.into_iter().enumerate() {
            let (id, pos) = if several {
                (
                    format!("{shard}:{seq}:{}", i + 1),
                    Pos::RecordLine(seq, i + 1),
                )
            } else {
                (format!("{shard}:{seq}"), pos)
            };
            self.json_record(line, tenant, stream, &id, ctx, pos, out);
        }
    }

    /// A record from a stream no tenant owns: refused whole.
    pub fn unknown_stream(
        &mut self,
        data: &[u8],
        stream: &str,
        ctx: &ItemCtx<'_>,
        pos: Pos<'_>,
        out: &mut dyn Emit,
    ) {
        let rej = Rejection::new(
            Reason::UnknownTenant,
            format!("stream {stream:?} belongs to no configured tenant"),
        );
        self.reject(
            out,
            ctx,
            pos,
            &rej,
            UNKNOWN_TENANT,
            Some(stream),
            None,
            None,
            data,
        );
    }

    /// One JSON record whose tenant the source settled.
    #[allow(clippy::too_many_arguments)]
    pub fn json_record(
        &mut self,
        line: &[u8],
        tenant: &Tenant,
        source: &str,
        event_id: &str,
        ctx: &ItemCtx<'_>,
        pos: Pos<'_>,
        out: &mut dyn Emit,
    ) {
        let len = line.len() as u64;
        let key = tenant.id.as_str();
        if line.len() > self.settings.max_record_bytes {
            let rej = Rejection::new(
                Reason::OversizedRecord,
                format!(
                    "record is {len} bytes, limit {}",
                    self.settings.max_record_bytes
                ),
            );
            return self.reject(
                out,
                ctx,
                pos,
                &rej,
                key,
                Some(source),
                Some(event_id),
                None,
                line,
            );
        }
        let text = match utf8(line) {
            Ok(t) => t,
            Err(rej) => {
                return self.reject(
                    out,
                    ctx,
                    pos,
                    &rej,
                    key,
                    Some(source),
                    Some(event_id),
                    None,
                    line,
                );
            }
        };
        let opts = ParseOptions {
            stream_field: None,
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
                    key,
                    Some(source),
                    Some(event_id),
                    None,
                    line,
                );
            }
            Ok(parsed) => {
                let account = match &parsed.source_account {
                    Some(Val::Str(s)) => Some(s.as_ref()),
                    _ => None,
                };
                let origin = Origin {
                    tenant,
                    source,
                    source_account: account,
                    event_id,
                    fallback_ts_us: None,
                };
                self.finish(&parsed, &attrs, &origin, ctx, pos, line, out);
            }
        }
        self.attrs = attrs;
    }

    /// One CloudWatch Logs event again, out of its envelope (a dead letter
    /// replayed): its log group settled `tenant` when it arrived, and its id
    /// and time are the event's.
    #[allow(clippy::too_many_arguments)]
    pub fn cloudwatch_event(
        &mut self,
        message: &[u8],
        tenant: &Tenant,
        group: &str,
        event_id: &str,
        event_time_us: Option<i64>,
        ctx: &ItemCtx<'_>,
        pos: Pos<'_>,
        out: &mut dyn Emit,
    ) {
        let key = tenant.id.as_str();
        let text = match utf8(message) {
            Ok(t) => t,
            Err(rej) => {
                return self.reject(
                    out,
                    ctx,
                    pos,
                    &rej,
                    key,
                    Some(group),
                    Some(event_id),
                    event_time_us,
                    message,
                );
            }
        };
        let opts = ParseOptions {
            stream_field: None,
            source_account: false,
        };
        let mut attrs = std::mem::take(&mut self.attrs);
        match parse_record(text, opts, &mut attrs) {
            Err(rej) => {
                self.reject(
                    out,
                    ctx,
                    pos,
                    &rej,
                    key,
                    Some(group),
                    Some(event_id),
                    event_time_us,
                    message,
                );
            }
            Ok(parsed) => {
                let origin = Origin {
                    tenant,
                    source: group,
                    source_account: None,
                    event_id,
                    fallback_ts_us: event_time_us,
                };
                self.finish(&parsed, &attrs, &origin, ctx, pos, message, out);
            }
        }
        self.attrs = attrs;
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
        self.line_kind = "cloudwatch_line";
        match cwl::decode_base64(line) {
            Ok(gz) => self.cloudwatch_payload(&gz, line, ctx, Pos::Line(line_no), None, out),
            Err(rej) => {
                self.reject_unknown(out, ctx, Pos::Line(line_no), &rej, line);
            }
        }
    }

    /// A gzip CloudWatch Logs payload (a Kinesis record, or a decoded line).
    /// `raw` is what is kept in the DLQ if the envelope is refused as a whole.
    /// `source` is the tenant of the stream it arrived on, if any: the log
    /// group must then belong to that same tenant.
    #[allow(clippy::too_many_arguments)]
    pub fn cloudwatch_payload(
        &mut self,
        gz: &[u8],
        raw: &[u8],
        ctx: &ItemCtx<'_>,
        pos: Pos<'_>,
        source: Option<(&Tenant, &str)>,
        out: &mut dyn Emit,
    ) {
        let mut buf = std::mem::take(&mut self.gz);
        if let Err(rej) = cwl::gunzip_bounded(gz, self.settings.max_envelope_bytes, &mut buf) {
            self.reject_unknown(out, ctx, pos, &rej, raw);
            self.gz = buf;
            return;
        }
        match cwl::parse_envelope(&buf, self.settings.max_envelope_events) {
            Err(rej) => {
                self.reject_unknown(out, ctx, pos, &rej, raw);
            }
            Ok(Decoded::Control) => out.control(),
            Ok(Decoded::Data(env)) => self.envelope(&env, raw, ctx, pos, source, out),
        }
        self.gz = buf;
    }

    #[allow(clippy::too_many_arguments)]
    fn envelope(
        &mut self,
        env: &cwl::Envelope<'_>,
        raw: &[u8],
        ctx: &ItemCtx<'_>,
        pos: Pos<'_>,
        source: Option<(&Tenant, &str)>,
        out: &mut dyn Emit,
    ) {
        let group = env.log_group.as_ref();
        if let Some((stream_tenant, stream)) = source {
            // Arrived on a tenant's stream: the log group must be that
            // tenant's too.
            let owner = self.tenants.by_log_group(group);
            if owner.is_none_or(|o| o.index != stream_tenant.index) {
                let rej = match owner {
                    Some(o) => Rejection::new(
                        Reason::CrossTenant,
                        format!(
                            "log group {group:?} belongs to {} but arrived on stream {stream:?} of {}",
                            o.id, stream_tenant.id
                        ),
                    ),
                    None => Rejection::new(
                        Reason::UnknownTenant,
                        format!(
                            "log group {group:?} belongs to no configured tenant (stream {stream:?} of {})",
                            stream_tenant.id
                        ),
                    ),
                };
                let key = stream_tenant.id.as_str();
                return self.reject(out, ctx, pos, &rej, key, Some(stream), None, None, raw);
            }
        }
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
            );
        }
        let opts = ParseOptions {
            stream_field: None,
            source_account: false,
        };
        let mut attrs = std::mem::take(&mut self.attrs);
        for (j, ev) in env.log_events.iter().enumerate() {
            let pos = pos.event(j + 1);
            let msg = ev.message.as_bytes();
            let key = tenant.id.as_str();
            // Out of range either way saturates, and is then refused by the
            // time range check (ts_future / ts_past) like any other.
            let fallback = Some(ev.timestamp.saturating_mul(1000));
            let id = match ev.id() {
                Ok(id) => id,
                Err(rej) => {
                    self.reject(out, ctx, pos, &rej, key, Some(group), None, fallback, msg);
                    continue;
                }
            };
            if msg.len() > self.settings.max_record_bytes {
                let rej = Rejection::new(
                    Reason::OversizedRecord,
                    format!(
                        "event is {} bytes, limit {}",
                        msg.len(),
                        self.settings.max_record_bytes
                    ),
                );
                let id = Some(id.as_ref()).filter(|s| !s.is_empty());
                self.reject(out, ctx, pos, &rej, key, Some(group), id, fallback, msg);
                continue;
            }
            if id.is_empty() {
                let rej = Rejection::new(Reason::MissingField, "CloudWatch event has no id");
                self.reject(out, ctx, pos, &rej, key, Some(group), None, fallback, msg);
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
                        Some(&id),
                        fallback,
                        msg,
                    );
                }
                Ok(parsed) => {
                    let origin = Origin {
                        tenant,
                        source: group,
                        source_account: Some(env.owner.as_ref()).filter(|s| !s.is_empty()),
                        event_id: &id,
                        fallback_ts_us: fallback,
                    };
                    self.finish(&parsed, &attrs, &origin, ctx, pos, msg, out);
                }
            }
        }
        self.attrs = attrs;
    }
}
