//! Schedules in EventBridge expression syntax: `rate(5 minutes)` and
//! `cron(Minutes Hours Day-of-month Month Day-of-week Year)`, with a time
//! zone, parsed and validated once. The daemon fires them; `logferry
//! schedule export` writes the same expressions for EventBridge Scheduler.
//!
//! EventBridge cron expressions map onto croner's seven-field patterns:
//! seconds are fixed at 0 and prepended, the year field is kept, and
//! croner's Quartz-style weekdays are used, so that 1-7 mean Sunday to
//! Saturday as in EventBridge; `?`, `L`, `W` and `#` mean what they mean
//! there. As in EventBridge, exactly one of day-of-month and day-of-week is
//! `?`. `rate(N seconds)` is the daemon's own addition (fast micro-batches,
//! tests): EventBridge's shortest rate is one minute, and exporting a
//! schedule that uses it is refused.

use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    /// A micro-batch pass: increments of open windows appended, windows
    /// past their lateness allowance loaded whole, due days sealed.
    Run,
    /// The nightly load: every window past its lateness allowance loaded
    /// whole, every due day sealed.
    Seal,
    /// The queued backfills (`logferry backfill --queue`).
    Backfill,
}

impl Job {
    /// The name used in configuration and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Run => "run",
            Job::Seal => "seal",
            Job::Backfill => "backfill",
        }
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[schedule]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Name: `[a-z0-9][a-z0-9-]{0,63}` (it names EventBridge schedules,
    /// systemd units and ledger keys).
    pub name: String,
    /// `run`, `seal` or `backfill`.
    pub job: Job,
    /// `rate(N unit)` or `cron(six fields)`.
    pub expression: String,
    /// IANA time zone of a cron expression (`Europe/Berlin`).
    #[serde(default = "utc")]
    pub timezone: String,
}

fn utc() -> String {
    "UTC".into()
}

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum Expression {
    /// Every period, at multiples of it since the Unix epoch (so that
    /// replicas fire together).
    Rate(Duration),
    /// A cron expression in a time zone.
    Cron {
        /// The six EventBridge fields, as written.
        fields: String,
        /// The same as a croner pattern.
        cron: Box<Cron>,
    },
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Name.
    pub name: String,
    /// What it runs.
    pub job: Job,
    /// The expression as written.
    pub text: String,
    /// When it fires.
    pub expression: Expression,
    /// Time zone.
    pub timezone: chrono_tz::Tz,
}

fn bad(name: &str, text: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("[[schedule]] {name}: expression {text:?}: {why}"))
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// Parses `N unit` of a rate expression, as EventBridge words it (`1
/// minute`, `5 minutes`); seconds are the daemon's own.
fn parse_rate(name: &str, text: &str, body: &str) -> Result<Duration> {
    let mut parts = body.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad(name, text, "want rate(N unit), e.g. rate(5 minutes)"));
    };
    let n: u64 = n
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| bad(name, text, "the rate must be a positive whole number"))?;
    let secs = match (unit, n == 1) {
        ("second", true) | ("seconds", false) => 1,
        ("minute", true) | ("minutes", false) => 60,
        ("hour", true) | ("hours", false) => 3600,
        ("day", true) | ("days", false) => 86_400,
        ("second" | "minute" | "hour" | "day", false)
        | ("seconds" | "minutes" | "hours" | "days", true) => {
            return Err(bad(
                name,
                text,
                "EventBridge writes the unit singular for 1 and plural otherwise (rate(1 minute), rate(5 minutes))",
            ));
        }
        _ => {
            return Err(bad(
                name,
                text,
                "the unit must be minutes, hours or days (or seconds, daemon only)",
            ));
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

fn parse_cron(name: &str, text: &str, body: &str) -> Result<Expression> {
    let fields: Vec<&str> = body.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(bad(
            name,
            text,
            format!(
                "EventBridge cron has six fields (minutes hours day-of-month month day-of-week year), found {}",
                fields.len()
            ),
        ));
    }
    let (dom, dow) = (fields[2], fields[4]);
    if (dom == "?") == (dow == "?") {
        return Err(bad(
            name,
            text,
            "exactly one of day-of-month and day-of-week must be ?",
        ));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Required)
        .alternative_weekdays(true)
        .build();
    let cron = parser
        .parse(&format!("0 {}", fields.join(" ")))
        .map_err(|e| bad(name, text, e))?;
    Ok(Expression::Cron {
        fields: fields.join(" "),
        cron: Box::new(cron),
    })
}

impl Schedule {
    /// Validates a `[[schedule]]`.
    pub fn parse(c: &ScheduleConfig) -> Result<Self> {
        if !valid_name(&c.name) {
            return Err(Error::Config(format!(
                "[[schedule]] name {:?} must match [a-z0-9][a-z0-9-]{{0,63}}",
                c.name
            )));
        }
        let text = c.expression.trim();
        let expression = if let Some(body) =
            text.strip_prefix("rate(").and_then(|r| r.strip_suffix(')'))
        {
            Expression::Rate(parse_rate(&c.name, text, body)?)
        } else if let Some(body) = text.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
            parse_cron(&c.name, text, body)?
        } else {
            return Err(bad(
                &c.name,
                text,
                "want rate(N unit) or cron(minutes hours day-of-month month day-of-week year)",
            ));
        };
        let timezone: chrono_tz::Tz = c.timezone.trim().parse().map_err(|_| {
            Error::Config(format!(
                "[[schedule]] {}: time zone {:?} is not an IANA zone name (e.g. UTC, Europe/Berlin)",
                c.name, c.timezone
            ))
        })?;
        let s = Schedule {
            name: c.name.clone(),
            job: c.job,
            text: text.to_string(),
            expression,
            timezone,
        };
        if s.next_after(Utc::now()).is_none() {
            return Err(bad(&c.name, text, "it never fires again"));
        }
        Ok(s)
    }

    /// The first fire time after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.expression {
            Expression::Rate(period) => {
                let p = i64::try_from(period.as_millis()).ok()?.max(1);
                let ms = t.timestamp_millis();
                DateTime::from_timestamp_millis((ms.div_euclid(p) + 1) * p)
            }
            Expression::Cron { cron, .. } => cron
                .find_next_occurrence(&t.with_timezone(&self.timezone), false)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
        }
    }

    /// The next `n` fire times after `t`.
    pub fn next_n(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    /// The period of a rate expression.
    pub fn rate(&self) -> Option<Duration> {
        match self.expression {
            Expression::Rate(p) => Some(p),
            Expression::Cron { .. } => None,
        }
    }

    /// The expression as EventBridge Scheduler takes it; refused for what
    /// EventBridge cannot express (rates under a minute, or not in whole
    /// minutes).
    pub fn eventbridge_expression(&self) -> Result<String> {
        match &self.expression {
            Expression::Rate(p) if p.as_secs() < 60 || p.as_secs() % 60 != 0 => {
                Err(Error::Config(format!(
                    "[[schedule]] {}: {} has no EventBridge equivalent: its rates are whole minutes, \
                     at least rate(1 minute)",
                    self.name, self.text
                )))
            }
            Expression::Rate(_) | Expression::Cron { .. } => Ok(self.text.clone()),
        }
    }
}

/// Validates every schedule: names are unique.
pub fn parse_all(configs: &[ScheduleConfig]) -> Result<Vec<Schedule>> {
    let mut out: Vec<Schedule> = Vec::with_capacity(configs.len());
    for c in configs {
        let s = Schedule::parse(c)?;
        if out.iter().any(|o| o.name == s.name) {
            return Err(Error::Config(format!(
                "[[schedule]] {} is configured twice",
                s.name
            )));
        }
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn sched(expr: &str, tz: &str) -> Result<Schedule> {
        Schedule::parse(&ScheduleConfig {
            name: "s".into(),
            job: Job::Run,
            expression: expr.into(),
            timezone: tz.into(),
        })
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn rates_fire_at_multiples_of_the_period() {
        let s = sched("rate(5 minutes)", "UTC").unwrap();
        assert_eq!(
            s.next_after(at("2026-12-01T10:02:30Z")).unwrap(),
            at("2026-12-01T10:05:00Z")
        );
        assert_eq!(
            s.next_after(at("2026-12-01T10:05:00Z")).unwrap(),
            at("2026-12-01T10:10:00Z")
        );
        let s = sched("rate(1 second)", "UTC").unwrap();
        assert_eq!(s.rate(), Some(Duration::from_secs(1)));
        assert!(s.eventbridge_expression().is_err());
        assert_eq!(
            sched("rate(1 hour)", "UTC")
                .unwrap()
                .eventbridge_expression()
                .unwrap(),
            "rate(1 hour)"
        );
        for bad in [
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(0 minutes)",
            "rate(5 weeks)",
            "rate(five minutes)",
            "rate(5)",
            "every 5 minutes",
        ] {
            assert!(sched(bad, "UTC").is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn eventbridge_cron_maps_onto_croner() {
        // 02:30 every day, in Berlin: 01:30 UTC in winter.
        let s = sched("cron(30 2 * * ? *)", "Europe/Berlin").unwrap();
        assert_eq!(
            s.next_after(at("2026-12-01T00:00:00Z")).unwrap(),
            at("2026-12-01T01:30:00Z")
        );
        // Day-of-week 2 is Monday in EventBridge (1 is Sunday).
        let s = sched("cron(0 12 ? * 2 *)", "UTC").unwrap();
        let next = s.next_after(at("2026-12-01T00:00:00Z")).unwrap();
        assert_eq!(next.weekday(), Weekday::Mon);
        assert_eq!((next.hour(), next.minute()), (12, 0));
        // MON-FRI, and the last day of the month.
        let s = sched("cron(0 18 ? * MON-FRI *)", "UTC").unwrap();
        for t in s.next_n(at("2026-12-04T19:00:00Z"), 5) {
            assert!(!matches!(t.weekday(), Weekday::Sat | Weekday::Sun), "{t}");
        }
        let s = sched("cron(0 0 L * ? *)", "UTC").unwrap();
        assert_eq!(
            s.next_after(at("2026-02-10T00:00:00Z")).unwrap(),
            Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap()
        );
        // The third Friday (6#3).
        let s = sched("cron(0 9 ? * 6#3 *)", "UTC").unwrap();
        let t = s.next_after(at("2026-12-01T00:00:00Z")).unwrap();
        assert_eq!((t.day(), t.weekday()), (18, Weekday::Fri));
        // The year field.
        let s = sched("cron(0 0 1 1 ? 2030)", "UTC").unwrap();
        assert_eq!(
            s.next_after(at("2026-12-01T00:00:00Z")).unwrap(),
            at("2030-01-01T00:00:00Z")
        );
        for bad in [
            "cron(30 2 * * * *)",
            "cron(30 2 ? * ? *)",
            "cron(30 2 * * ?)",
            "cron(61 2 * * ? *)",
            "cron(0 0 1 1 ? 2020)",
        ] {
            assert!(sched(bad, "UTC").is_err(), "{bad} accepted");
        }
        assert!(sched("cron(30 2 * * ? *)", "Mars/Olympus").is_err());
    }

    #[test]
    fn names_are_checked_and_unique() {
        let c = |name: &str| ScheduleConfig {
            name: name.into(),
            job: Job::Seal,
            expression: "rate(1 day)".into(),
            timezone: utc(),
        };
        assert!(parse_all(&[c("nightly"), c("Nightly")]).is_err());
        assert!(parse_all(&[c("nightly"), c("nightly")]).is_err());
        assert_eq!(parse_all(&[c("a"), c("b")]).unwrap().len(), 2);
    }
}
