//! CloudWatch Logs subscription payloads: `base64(gzip(JSON envelope))` in
//! files, raw gzip in Kinesis records. Decompression is bounded so that a
//! small payload cannot expand without limit (gzip bombs).

use std::borrow::Cow;
use std::io::Read;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;

use crate::reason::{Reason, Rejection};

/// Standard alphabet; padding may be present or absent. Whitespace inside
/// the payload is an error.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// True when bytes start with the gzip magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// Decodes the base64 text of a payload line.
pub fn decode_base64(text: &[u8]) -> Result<Vec<u8>, Rejection> {
    B64.decode(text)
        .map_err(|e| Rejection::new(Reason::CorruptEnvelope, format!("bad base64: {e}")))
}

/// Decompresses gzip, failing once the output would pass `max_bytes`.
pub fn gunzip_bounded(bytes: &[u8], max_bytes: usize, out: &mut Vec<u8>) -> Result<(), Rejection> {
    if !is_gzip(bytes) {
        return Err(Rejection::new(
            Reason::CorruptEnvelope,
            "payload is not gzip (no gzip magic number)",
        ));
    }
    out.clear();
    let mut dec = flate2::read::MultiGzDecoder::new(bytes).take(max_bytes as u64 + 1);
    dec.read_to_end(out)
        .map_err(|e| Rejection::new(Reason::CorruptEnvelope, format!("bad gzip: {e}")))?;
    if out.len() > max_bytes {
        return Err(Rejection::new(
            Reason::EnvelopeTooLarge,
            format!("payload decompresses past {max_bytes} bytes"),
        ));
    }
    Ok(())
}

/// A CloudWatch Logs subscription envelope.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// `DATA_MESSAGE` or `CONTROL_MESSAGE`.
    #[serde(rename = "messageType", borrow)]
    pub message_type: Cow<'a, str>,
    /// Account that owns the log group.
    #[serde(default, borrow)]
    pub owner: Cow<'a, str>,
    /// Log group.
    #[serde(rename = "logGroup", default, borrow)]
    pub log_group: Cow<'a, str>,
    /// Log stream.
    #[serde(rename = "logStream", default, borrow)]
    pub log_stream: Cow<'a, str>,
    /// Events.
    #[serde(rename = "logEvents", default, borrow)]
    pub log_events: Vec<LogEvent<'a>>,
}

/// One event of an envelope.
#[derive(Debug, Deserialize)]
pub struct LogEvent<'a> {
    /// CloudWatch event id (stable across redeliveries), as written: AWS
    /// sends a string of digits, some stand-ins (moto) a JSON integer. Read
    /// it with [`LogEvent::id`].
    #[serde(borrow)]
    pub id: &'a serde_json::value::RawValue,
    /// Event time, epoch milliseconds.
    pub timestamp: i64,
    /// The log line, here a JSON record.
    #[serde(borrow)]
    pub message: Cow<'a, str>,
}

impl LogEvent<'_> {
    /// The event id: a JSON string as its text, or a JSON integer as its
    /// decimal digits, exactly as written (no conversion, so no precision
    /// is lost however long it is). Anything else is `wrong_type`.
    pub fn id(&self) -> Result<Cow<'_, str>, Rejection> {
        let raw = self.id.get();
        if raw.starts_with('"') {
            return serde_json::from_str::<Cow<'_, str>>(raw).map_err(|e| {
                Rejection::new(Reason::WrongType, format!("CloudWatch event id: {e}"))
            });
        }
        let digits = raw.strip_prefix('-').unwrap_or(raw);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Cow::Borrowed(raw));
        }
        Err(Rejection::new(
            Reason::WrongType,
            format!(
                "CloudWatch event id must be a string or an integer, found {}",
                raw.chars().take(40).collect::<String>()
            ),
        ))
    }
}

/// What an envelope turned out to be.
#[derive(Debug)]
pub enum Decoded<'a> {
    /// A data message with events.
    Data(Envelope<'a>),
    /// A control message (CloudWatch checking the destination): no records.
    Control,
}

/// Parses decompressed envelope JSON.
pub fn parse_envelope(json: &[u8], max_events: usize) -> Result<Decoded<'_>, Rejection> {
    let text = std::str::from_utf8(json).map_err(|e| {
        Rejection::new(
            Reason::CorruptEnvelope,
            format!("envelope is not UTF-8: {e}"),
        )
    })?;
    let env: Envelope<'_> = serde_json::from_str(text)
        .map_err(|e| Rejection::new(Reason::CorruptEnvelope, format!("bad envelope JSON: {e}")))?;
    match env.message_type.as_ref() {
        "CONTROL_MESSAGE" => Ok(Decoded::Control),
        "DATA_MESSAGE" => {
            if env.log_events.len() > max_events {
                return Err(Rejection::new(
                    Reason::EnvelopeTooLarge,
                    format!(
                        "envelope holds {} events, limit {max_events}",
                        env.log_events.len()
                    ),
                ));
            }
            if env.log_group.is_empty() {
                return Err(Rejection::new(
                    Reason::CorruptEnvelope,
                    "envelope has no logGroup",
                ));
            }
            // CloudWatch Logs never sends a data message without events:
            // one is kept for inspection rather than passed over unseen.
            if env.log_events.is_empty() {
                return Err(Rejection::new(
                    Reason::CorruptEnvelope,
                    "DATA_MESSAGE envelope without events",
                ));
            }
            Ok(Decoded::Data(env))
        }
        other => Err(Rejection::new(
            Reason::CorruptEnvelope,
            format!(
                "unknown messageType {:?}",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn bounded_gunzip() {
        let mut out = Vec::new();
        gunzip_bounded(&gzip(b"hello"), 5, &mut out).unwrap();
        assert_eq!(out, b"hello");
        let e = gunzip_bounded(&gzip(b"hello!"), 5, &mut out).unwrap_err();
        assert_eq!(e.reason, Reason::EnvelopeTooLarge);
        // A bomb: 64 MiB of zeros in ~64 KiB; stops at the limit.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 1 << 20);
        let e = gunzip_bounded(&bomb, 1 << 20, &mut out).unwrap_err();
        assert_eq!(e.reason, Reason::EnvelopeTooLarge);
        assert!(out.len() <= (1 << 20) + 1);
        let z = gzip(b"some longer text to truncate");
        let e = gunzip_bounded(&z[..z.len() / 2], 100, &mut out).unwrap_err();
        assert_eq!(e.reason, Reason::CorruptEnvelope);
        let e = gunzip_bounded(b"{}", 100, &mut out).unwrap_err();
        assert_eq!(e.reason, Reason::CorruptEnvelope);
    }

    #[test]
    fn base64_padding_and_whitespace() {
        assert_eq!(decode_base64(b"aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64(b"aGk").unwrap(), b"hi");
        assert!(decode_base64(b"aG k=").is_err());
        assert!(decode_base64(b"aGk!").is_err());
    }

    #[test]
    fn envelopes() {
        let data = br#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/g","logStream":"s","subscriptionFilters":["f"],"logEvents":[{"id":"1","timestamp":5,"message":"{\"a\":1}"}]}"#;
        match parse_envelope(data, 10).unwrap() {
            Decoded::Data(e) => {
                assert_eq!(e.log_group, "/g");
                assert_eq!(e.log_events[0].message, "{\"a\":1}");
            }
            Decoded::Control => panic!("data expected"),
        }
        let ctl = br#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE"}]}"#;
        assert!(matches!(parse_envelope(ctl, 10).unwrap(), Decoded::Control));
        assert_eq!(
            parse_envelope(data, 0).unwrap_err().reason,
            Reason::EnvelopeTooLarge
        );
        assert_eq!(
            parse_envelope(&data[..50], 10).unwrap_err().reason,
            Reason::CorruptEnvelope
        );
        // Event ids: a string, or an integer read as its digits, exactly.
        let ids = br#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"/g","logEvents":[{"id":"0042","timestamp":5,"message":"m"},{"id":12,"timestamp":5,"message":"m"},{"id":36937394755306962437640913425634509817813219046893240320,"timestamp":5,"message":"m"},{"id":1.5,"timestamp":5,"message":"m"},{"id":null,"timestamp":5,"message":"m"}]}"#;
        match parse_envelope(ids, 10).unwrap() {
            Decoded::Data(e) => {
                let got: Vec<_> = e
                    .log_events
                    .iter()
                    .map(|ev| ev.id().map(|i| i.into_owned()))
                    .collect();
                assert_eq!(got[0].as_deref().unwrap(), "0042");
                assert_eq!(got[1].as_deref().unwrap(), "12");
                assert_eq!(
                    got[2].as_deref().unwrap(),
                    "36937394755306962437640913425634509817813219046893240320"
                );
                assert_eq!(got[3].as_ref().unwrap_err().reason, Reason::WrongType);
                assert_eq!(got[4].as_ref().unwrap_err().reason, Reason::WrongType);
            }
            Decoded::Control => panic!("data expected"),
        }
        assert_eq!(
            parse_envelope(br#"{"messageType":"X"}"#, 10)
                .unwrap_err()
                .reason,
            Reason::CorruptEnvelope
        );
    }
}
