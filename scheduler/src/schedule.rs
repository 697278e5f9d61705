//! The `[[schedule]]` entries, shown and exported: as EventBridge Scheduler
//! definitions (a JSON list for `aws scheduler create-schedule`, a
//! CloudFormation template of `AWS::Scheduler::Schedule`, Terraform
//! `aws_scheduler_schedule`), a crontab, or systemd timer units. One source
//! of truth: each target runs the schedule's job (`logferry job NAME`, or
//! the Lambda handler with the schedule's input).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use logferry_core::schedule::{Expression, Job, Schedule};

use crate::error::{Error, Result};

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON: one `aws scheduler create-schedule --cli-input-json` document per schedule.
    Eventbridge,
    /// A CloudFormation template of `AWS::Scheduler::Schedule` resources.
    Cloudformation,
    /// Terraform `aws_scheduler_schedule` resources.
    Terraform,
    /// A crontab.
    Crontab,
    /// systemd service and timer units.
    Systemd,
}

/// What EventBridge Scheduler invokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The `logferry-lambda` function, with the schedule's input.
    Lambda,
    /// An ECS task of the container, running `logferry job NAME`.
    Ecs,
}

/// One schedule's next fire times.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    /// Name.
    pub name: String,
    /// Job.
    pub job: Job,
    /// Expression.
    pub expression: String,
    /// Time zone.
    pub timezone: String,
    /// Next fire times.
    pub next: Vec<DateTime<Utc>>,
}

/// The next `n` fire times of every schedule after `now`.
pub fn show(schedules: &[Schedule], now: DateTime<Utc>, n: usize) -> Vec<Shown> {
    schedules
        .iter()
        .map(|s| Shown {
            name: s.name.clone(),
            job: s.job,
            expression: s.text.clone(),
            timezone: s.timezone.name().to_string(),
            next: s.next_n(now, n),
        })
        .collect()
}

/// The input the Lambda handler takes for a schedule.
pub fn lambda_input(s: &Schedule) -> Value {
    json!({"logferry": {"schedule": s.name, "job": s.job}})
}

/// The container override that runs a schedule's job in an ECS task.
pub fn ecs_input(s: &Schedule) -> Value {
    json!({"containerOverrides": [{"name": "logferry", "command": ["job", s.name]}]})
}

pub(crate) fn flexible(s: &Schedule) -> Value {
    match s.job {
        // The nightly load may start within a quarter of an hour.
        Job::Seal => json!({"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}),
        Job::Run | Job::Backfill => json!({"Mode": "OFF"}),
    }
}

/// Events older than the schedule's period are not worth retrying: the
/// next firing does the same work.
pub(crate) fn max_event_age(s: &Schedule) -> u64 {
    match s.rate() {
        Some(p) => p.as_secs().clamp(60, 86_400),
        None => 3600,
    }
}

pub(crate) fn resource_name(name: &str) -> String {
    let mut out = String::from("Schedule");
    for part in name.split('-') {
        let mut c = part.chars();
        if let Some(f) = c.next() {
            out.extend(f.to_uppercase());
            out.push_str(c.as_str());
        }
    }
    out
}

/// Where the exported definitions point.
#[derive(Debug, Clone)]
pub struct Targets {
    /// Lambda or ECS.
    pub target: Target,
    /// Function ARN (lambda) or cluster ARN (ecs); a placeholder when not given.
    pub arn: Option<String>,
    /// Role EventBridge Scheduler assumes.
    pub role_arn: Option<String>,
    /// SQS queue for events that could not be delivered.
    pub dead_letter_arn: Option<String>,
    /// ECS task definition.
    pub task_definition_arn: Option<String>,
    /// Command that runs logferry (crontab, systemd).
    pub command: String,
}

/// Exports the schedules.
pub fn export(schedules: &[Schedule], format: Format, t: &Targets) -> Result<String> {
    for s in schedules {
        s.eventbridge_expression()
            .map_err(Error::from)
            .or_else(|e| {
                if matches!(format, Format::Crontab | Format::Systemd) {
                    Ok(String::new())
                } else {
                    Err(e)
                }
            })?;
    }
    Ok(match format {
        Format::Eventbridge => eventbridge(schedules, t)?,
        Format::Cloudformation => cloudformation(schedules, t)?,
        Format::Terraform => terraform(schedules, t)?,
        Format::Crontab => crontab(schedules, t)?,
        Format::Systemd => systemd(schedules, t)?
            .into_iter()
            .map(|(file, body)| format!("# ---- {file}\n{body}"))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

fn placeholder(v: &Option<String>, what: &str) -> String {
    v.clone().unwrap_or_else(|| format!("<{what}>"))
}

fn eventbridge(schedules: &[Schedule], t: &Targets) -> Result<String> {
    let mut out = Vec::new();
    for s in schedules {
        let mut target = json!({
            "Arn": placeholder(&t.arn, if t.target == Target::Lambda { "logferry-lambda function ARN" } else { "ECS cluster ARN" }),
            "RoleArn": placeholder(&t.role_arn, "scheduler role ARN"),
            "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": max_event_age(s)},
            "DeadLetterConfig": {"Arn": placeholder(&t.dead_letter_arn, "SQS dead-letter queue ARN")},
        });
        match t.target {
            Target::Lambda => target["Input"] = json!(lambda_input(s).to_string()),
            Target::Ecs => {
                target["Input"] = json!(ecs_input(s).to_string());
                target["EcsParameters"] = json!({
                    "TaskDefinitionArn": placeholder(&t.task_definition_arn, "task definition ARN"),
                    "LaunchType": "FARGATE",
                });
            }
        }
        out.push(properties(s, target)?);
    }
    Ok(serde_json::to_string_pretty(&out)?)
}

/// One EventBridge Scheduler schedule (the API's and CloudFormation's
/// field names are the same).
pub(crate) fn properties(s: &Schedule, target: Value) -> Result<Value> {
    Ok(json!({
        "Name": format!("logferry-{}", s.name),
        "Description": format!("logferry {} job", s.job),
        "ScheduleExpression": s.eventbridge_expression()?,
        "ScheduleExpressionTimezone": s.timezone.name(),
        "FlexibleTimeWindow": flexible(s),
        "State": "ENABLED",
        "Target": target,
    }))
}

fn cloudformation(schedules: &[Schedule], t: &Targets) -> Result<String> {
    let mut params = serde_json::Map::new();
    let target_desc = match t.target {
        Target::Lambda => "ARN of the logferry-lambda function",
        Target::Ecs => "ARN of the ECS cluster that runs the logferry container",
    };
    params.insert(
        "TargetArn".into(),
        json!({"Type": "String", "Description": target_desc}),
    );
    params.insert(
        "SchedulerRoleArn".into(),
        json!({"Type": "String", "Description": "Role EventBridge Scheduler assumes to invoke the target"}),
    );
    params.insert(
        "DeadLetterQueueArn".into(),
        json!({"Type": "String", "Description": "SQS queue for invocations that could not be delivered"}),
    );
    if t.target == Target::Ecs {
        params.insert("TaskDefinitionArn".into(), json!({"Type": "String"}));
        params.insert(
            "Subnets".into(),
            json!({"Type": "List<AWS::EC2::Subnet::Id>"}),
        );
        params.insert(
            "SecurityGroups".into(),
            json!({"Type": "List<AWS::EC2::SecurityGroup::Id>"}),
        );
    }
    let mut resources = serde_json::Map::new();
    for s in schedules {
        let mut target = json!({
            "Arn": {"Ref": "TargetArn"},
            "RoleArn": {"Ref": "SchedulerRoleArn"},
            "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": max_event_age(s)},
            "DeadLetterConfig": {"Arn": {"Ref": "DeadLetterQueueArn"}},
        });
        match t.target {
            Target::Lambda => target["Input"] = json!(lambda_input(s).to_string()),
            Target::Ecs => {
                target["Input"] = json!(ecs_input(s).to_string());
                target["EcsParameters"] = json!({
                    "TaskDefinitionArn": {"Ref": "TaskDefinitionArn"},
                    "LaunchType": "FARGATE",
                    "NetworkConfiguration": {"AwsvpcConfiguration": {
                        "Subnets": {"Ref": "Subnets"},
                        "SecurityGroups": {"Ref": "SecurityGroups"},
                        "AssignPublicIp": "DISABLED",
                    }},
                });
            }
        }
        resources.insert(
            resource_name(&s.name),
            json!({
                "Type": "AWS::Scheduler::Schedule",
                "Properties": properties(s, target)?,
            }),
        );
    }
    Ok(serde_json::to_string_pretty(&json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "logferry schedules, from its [[schedule]] configuration (logferry schedule export)",
        "Parameters": params,
        "Resources": resources,
    }))?)
}

/// A Terraform string literal.
fn hcl(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap_or_default()
        .replace("${", "$${")
}

fn terraform(schedules: &[Schedule], t: &Targets) -> Result<String> {
    let mut out = String::from(
        "# logferry schedules, from its [[schedule]] configuration (logferry schedule export).\n\n",
    );
    for (var, desc) in [
        (
            "target_arn",
            match t.target {
                Target::Lambda => "ARN of the logferry-lambda function",
                Target::Ecs => "ARN of the ECS cluster that runs the logferry container",
            },
        ),
        (
            "scheduler_role_arn",
            "Role EventBridge Scheduler assumes to invoke the target",
        ),
        (
            "dead_letter_arn",
            "SQS queue for invocations that could not be delivered",
        ),
    ] {
        let _ = writeln!(
            out,
            "variable \"{var}\" {{\n  type        = string\n  description = {}\n}}\n",
            hcl(desc)
        );
    }
    if t.target == Target::Ecs {
        out.push_str("variable \"task_definition_arn\" {\n  type = string\n}\n\nvariable \"subnets\" {\n  type = list(string)\n}\n\nvariable \"security_groups\" {\n  type = list(string)\n}\n\n");
    }
    for s in schedules {
        let fw = flexible(s);
        let _ = writeln!(
            out,
            "resource \"aws_scheduler_schedule\" {} {{",
            hcl(&s.name.replace('-', "_"))
        );
        let _ = writeln!(
            out,
            "  name                         = {}",
            hcl(&format!("logferry-{}", s.name))
        );
        let _ = writeln!(
            out,
            "  description                  = {}",
            hcl(&format!("logferry {} job", s.job))
        );
        let _ = writeln!(
            out,
            "  schedule_expression          = {}",
            hcl(&s.eventbridge_expression()?)
        );
        let _ = writeln!(
            out,
            "  schedule_expression_timezone = {}",
            hcl(s.timezone.name())
        );
        let _ = writeln!(out, "  state                        = \"ENABLED\"\n");
        let _ = writeln!(out, "  flexible_time_window {{");
        let _ = writeln!(
            out,
            "    mode = {}",
            hcl(fw["Mode"].as_str().unwrap_or("OFF"))
        );
        if let Some(m) = fw["MaximumWindowInMinutes"].as_u64() {
            let _ = writeln!(out, "    maximum_window_in_minutes = {m}");
        }
        let _ = writeln!(out, "  }}\n\n  target {{");
        let _ = writeln!(
            out,
            "    arn      = var.target_arn\n    role_arn = var.scheduler_role_arn"
        );
        let input = match t.target {
            Target::Lambda => lambda_input(s),
            Target::Ecs => ecs_input(s),
        };
        let _ = writeln!(out, "    input    = {}", hcl(&input.to_string()));
        if t.target == Target::Ecs {
            out.push_str("\n    ecs_parameters {\n      task_definition_arn = var.task_definition_arn\n      launch_type         = \"FARGATE\"\n\n      network_configuration {\n        subnets          = var.subnets\n        security_groups  = var.security_groups\n        assign_public_ip = false\n      }\n    }\n");
        }
        let _ = writeln!(
            out,
            "\n    retry_policy {{\n      maximum_retry_attempts       = 2\n      maximum_event_age_in_seconds = {}\n    }}\n\n    dead_letter_config {{\n      arn = var.dead_letter_arn\n    }}\n  }}\n}}\n",
            max_event_age(s)
        );
    }
    Ok(out)
}

/// Day-of-week numbers of EventBridge (1 = Sunday) as names.
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn refuse(s: &Schedule, to: &str, why: &str) -> Error {
    Error::Config(format!(
        "[[schedule]] {}: {} cannot be written as {to}: {why}",
        s.name, s.text
    ))
}

/// One EventBridge cron field in crontab syntax (`?` is `*`); day of week
/// numbers become names (cron counts from 0, EventBridge from 1).
fn cron_field(s: &Schedule, field: &str, dow: bool) -> Result<String> {
    if field.contains(['L', 'W', '#']) {
        return Err(refuse(
            s,
            "a crontab line",
            "L, W and # have no crontab equivalent",
        ));
    }
    if field == "?" {
        return Ok("*".into());
    }
    if !dow {
        return Ok(field.to_string());
    }
    let name = |n: &str| -> Result<String> {
        match n.parse::<usize>() {
            Ok(d) if (1..=7).contains(&d) => Ok(DAYS[d - 1].to_string()),
            Ok(_) => Err(refuse(s, "a crontab line", "day of week out of 1-7")),
            Err(_) => Ok(n.to_string()),
        }
    };
    field
        .split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => Ok(format!("{}-{}", name(a)?, name(b)?)),
            None => name(part),
        })
        .collect::<Result<Vec<_>>>()
        .map(|v| v.join(","))
}

/// A rate as a crontab (or systemd) pattern: only periods that divide the
/// hour or the day evenly.
fn rate_fields(s: &Schedule, p: std::time::Duration) -> Result<(String, String)> {
    let secs = p.as_secs();
    match secs {
        _ if secs < 60 || !secs.is_multiple_of(60) => Err(refuse(
            s,
            "a crontab line",
            "cron counts in minutes (the daemon runs rates in seconds itself)",
        )),
        60 => Ok(("*".into(), "*".into())),
        _ if secs < 3600 && 3600u64.is_multiple_of(secs) => {
            Ok((format!("*/{}", secs / 60), "*".into()))
        }
        3600 => Ok(("0".into(), "*".into())),
        _ if secs < 86_400 && secs.is_multiple_of(3600) && 86_400u64.is_multiple_of(secs) => {
            Ok(("0".into(), format!("*/{}", secs / 3600)))
        }
        86_400 => Ok(("0".into(), "0".into())),
        _ => Err(refuse(
            s,
            "a crontab line",
            "the period does not divide an hour or a day evenly",
        )),
    }
}

fn crontab(schedules: &[Schedule], t: &Targets) -> Result<String> {
    let mut out = String::from(
        "# logferry schedules, from its [[schedule]] configuration (logferry schedule export).\n\
         # Install with `crontab FILE` (cronie honours CRON_TZ).\n",
    );
    for s in schedules {
        let line = match &s.expression {
            Expression::Rate(p) => {
                let (m, h) = rate_fields(s, *p)?;
                format!("{m} {h} * * *")
            }
            Expression::Cron { fields, .. } => {
                let f: Vec<&str> = fields.split_whitespace().collect();
                if f[5] != "*" {
                    return Err(refuse(s, "a crontab line", "crontab has no year field"));
                }
                format!(
                    "{} {} {} {} {}",
                    cron_field(s, f[0], false)?,
                    cron_field(s, f[1], false)?,
                    cron_field(s, f[2], false)?,
                    cron_field(s, f[3], false)?,
                    cron_field(s, f[4], true)?
                )
            }
        };
        let _ = writeln!(
            out,
            "\n# {} ({} job, {})\nCRON_TZ={}\n{line} {} job {}",
            s.name,
            s.job,
            s.text,
            s.timezone.name(),
            t.command,
            s.name
        );
    }
    Ok(out)
}

/// systemd's names of the days.
const SYSTEMD_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// An EventBridge cron field as a systemd calendar component.
fn calendar_field(s: &Schedule, field: &str) -> Result<String> {
    if field.contains(['L', 'W', '#']) {
        return Err(refuse(
            s,
            "a systemd timer",
            "L, W and # have no OnCalendar equivalent",
        ));
    }
    if field == "*" || field == "?" {
        return Ok("*".into());
    }
    Ok(field
        .split(',')
        .map(|p| {
            let p = p.replace('-', "..");
            match p.split_once('/') {
                Some(("*", step)) => format!("0/{step}"),
                _ => p,
            }
        })
        .collect::<Vec<_>>()
        .join(","))
}

fn calendar_days(s: &Schedule, field: &str) -> Result<String> {
    if field == "?" || field == "*" {
        return Ok(String::new());
    }
    if field.contains(['L', 'W', '#', '/']) {
        return Err(refuse(
            s,
            "a systemd timer",
            "this day-of-week form has no OnCalendar equivalent",
        ));
    }
    let name = |n: &str| -> Result<String> {
        match n.parse::<usize>() {
            Ok(d) if (1..=7).contains(&d) => Ok(SYSTEMD_DAYS[d - 1].to_string()),
            Ok(_) => Err(refuse(s, "a systemd timer", "day of week out of 1-7")),
            Err(_) => {
                let up = n.to_ascii_uppercase();
                DAYS.iter()
                    .position(|d| *d == up)
                    .map(|i| SYSTEMD_DAYS[i].to_string())
                    .ok_or_else(|| refuse(s, "a systemd timer", "unknown day name"))
            }
        }
    };
    let parts = field
        .split(',')
        .map(|p| match p.split_once('-') {
            Some((a, b)) => Ok(format!("{}..{}", name(a)?, name(b)?)),
            None => name(p),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(format!("{} ", parts.join(",")))
}

/// systemd units: a oneshot service running the job and a timer firing it,
/// per schedule: (file name, contents).
pub fn systemd(schedules: &[Schedule], t: &Targets) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for s in schedules {
        let unit = format!("logferry-{}", s.name);
        let when = match &s.expression {
            // A monotonic timer fires every period after the last start:
            // any period, seconds included.
            Expression::Rate(p) => format!(
                "OnActiveSec={secs}s\nOnUnitActiveSec={secs}s\nAccuracySec=1s",
                secs = p.as_secs()
            ),
            Expression::Cron { fields, .. } => {
                let f: Vec<&str> = fields.split_whitespace().collect();
                format!(
                    "OnCalendar={}{}-{}-{} {}:{}:00 {}\nPersistent=true",
                    calendar_days(s, f[4])?,
                    if f[5] == "*" {
                        "*".to_string()
                    } else {
                        calendar_field(s, f[5])?
                    },
                    calendar_field(s, f[3])?,
                    calendar_field(s, f[2])?,
                    calendar_field(s, f[1])?,
                    calendar_field(s, f[0])?,
                    s.timezone.name()
                )
            }
        };
        out.push((
            format!("{unit}.service"),
            format!(
                "# logferry {} job ({}), from its [[schedule]] configuration.\n[Unit]\nDescription=logferry {} ({})\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\nType=oneshot\nExecStart={} job {}\n",
                s.job, s.text, s.name, s.job, t.command, s.name
            ),
        ));
        out.push((
            format!("{unit}.timer"),
            format!(
                "[Unit]\nDescription=logferry {} ({})\n\n[Timer]\n{when}\nUnit={unit}.service\n\n[Install]\nWantedBy=timers.target\n",
                s.name, s.text
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use logferry_core::schedule::ScheduleConfig;

    fn sched(name: &str, job: Job, expr: &str, tz: &str) -> Schedule {
        Schedule::parse(&ScheduleConfig {
            name: name.into(),
            job,
            expression: expr.into(),
            timezone: tz.into(),
        })
        .unwrap()
    }

    fn targets() -> Targets {
        Targets {
            target: Target::Lambda,
            arn: Some("arn:aws:lambda:eu-west-1:123456789012:function:logferry".into()),
            role_arn: None,
            dead_letter_arn: None,
            task_definition_arn: None,
            command: "logferry".into(),
        }
    }

    #[test]
    fn crontab_and_systemd_say_the_same() {
        let all = [
            sched("micro-batch", Job::Run, "rate(5 minutes)", "UTC"),
            sched(
                "nightly",
                Job::Seal,
                "cron(30 2 ? * 2-6 *)",
                "Europe/Berlin",
            ),
        ];
        let c = export(&all, Format::Crontab, &targets()).unwrap();
        assert!(
            c.contains("CRON_TZ=UTC\n*/5 * * * * logferry job micro-batch"),
            "{c}"
        );
        assert!(
            c.contains("CRON_TZ=Europe/Berlin\n30 2 * * MON-FRI logferry job nightly"),
            "{c}"
        );
        let units = systemd(&all, &targets()).unwrap();
        let timer = &units
            .iter()
            .find(|(f, _)| f == "logferry-nightly.timer")
            .unwrap()
            .1;
        assert!(
            timer.contains("OnCalendar=Mon..Fri *-*-* 2:30:00 Europe/Berlin"),
            "{timer}"
        );
        let fast = &units
            .iter()
            .find(|(f, _)| f == "logferry-micro-batch.timer")
            .unwrap()
            .1;
        assert!(fast.contains("OnUnitActiveSec=300s"), "{fast}");
    }

    #[test]
    fn what_a_target_cannot_express_is_refused() {
        let secs = [sched("fast", Job::Run, "rate(10 seconds)", "UTC")];
        for f in [
            Format::Eventbridge,
            Format::Cloudformation,
            Format::Terraform,
            Format::Crontab,
        ] {
            let e = export(&secs, f, &targets()).unwrap_err().to_string();
            assert!(e.contains("rate(10 seconds)"), "{f:?}: {e}");
        }
        // systemd timers take seconds.
        assert!(export(&secs, Format::Systemd, &targets()).is_ok());
        let last = [sched("eom", Job::Seal, "cron(0 1 L * ? *)", "UTC")];
        assert!(export(&last, Format::Crontab, &targets()).is_err());
        assert!(export(&last, Format::Eventbridge, &targets()).is_ok());
        let odd = [sched("odd", Job::Run, "rate(7 minutes)", "UTC")];
        assert!(export(&odd, Format::Crontab, &targets()).is_err());
    }

    #[test]
    fn eventbridge_definitions_carry_the_handler_input() {
        let all = [sched("micro-batch", Job::Run, "rate(2 minutes)", "UTC")];
        let v: Value =
            serde_json::from_str(&export(&all, Format::Eventbridge, &targets()).unwrap()).unwrap();
        let d = &v[0];
        assert_eq!(d["ScheduleExpression"], "rate(2 minutes)");
        assert_eq!(d["FlexibleTimeWindow"]["Mode"], "OFF");
        assert_eq!(d["Target"]["RetryPolicy"]["MaximumEventAgeInSeconds"], 120);
        let input: Value = serde_json::from_str(d["Target"]["Input"].as_str().unwrap()).unwrap();
        assert_eq!(
            input,
            json!({"logferry": {"schedule": "micro-batch", "job": "run"}})
        );
    }
}
