//! Who may do what: every AWS action logferry's code calls, by role, with
//! where in the code it is called, and the permissions the Google APIs it
//! calls need. The rendered policies are made from these lists and nothing
//! else, and the tests hold them against the code (each call site exists)
//! and against the calls the programs make on the emulators (each call is
//! granted).
//!
//! Grants that AWS services use on a role's behalf (Lambda reading a stream
//! for an event source mapping, CloudWatch Logs writing into a destination's
//! stream, Lambda writing its own logs, EventBridge Scheduler invoking the
//! runner) are listed apart, in [`SERVICE_GRANTS`]: the code does not call
//! them.

/// A role the templates create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The forwarder Lambda's own role, in a client account.
    ClientForwarder,
    /// The role in the central account a tenant's forwarder assumes (one per
    /// tenant: it can write that tenant's stream only).
    TenantWriter,
    /// The lander Lambda.
    Lander,
    /// The scheduled runner, and the daemon's container or VM.
    Runner,
    /// The role CloudWatch Logs uses to write into a destination's stream.
    LogsDestination,
    /// The role EventBridge Scheduler uses to invoke the runner.
    Scheduler,
}

/// What a grant applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum On {
    /// The tenant's stream (every tenant's for the lander and runner).
    Streams,
    /// The lake bucket itself (listing).
    LakeBucket,
    /// The lake's objects.
    LakeObjects,
    /// The forwarder's dead-letter objects (client account).
    DeadLetterObjects,
    /// The tenant writer role (the client account's forwarder assumes it).
    TenantWriterRole,
    /// The function's own log group.
    OwnLogs,
    /// The runner function.
    RunnerFunction,
    /// The queue of schedule invocations that could not be delivered.
    ScheduleDeadLetters,
}

/// One action the code calls, by which roles, and where.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// IAM action.
    pub action: &'static str,
    /// Roles that need it.
    pub roles: &'static [Role],
    /// On what.
    pub on: On,
    /// The file (from the repository root) and the code that makes the call.
    pub site: (&'static str, &'static str),
}

const LR: &[Role] = &[Role::Lander, Role::Runner];

/// Every AWS action the programs call. (`logferry loadtest` also creates
/// and writes streams: it is an operator's tool, run with the operator's
/// credentials, and no role here grants it.)
pub const CALLS: &[Call] = &[
    Call {
        action: "sts:AssumeRole",
        roles: &[Role::ClientForwarder],
        on: On::TenantWriterRole,
        site: ("lambdas/src/forwarder.rs", "AssumeRoleProvider::builder"),
    },
    Call {
        action: "s3:PutObject",
        roles: &[Role::ClientForwarder],
        on: On::DeadLetterObjects,
        site: ("lambdas/src/forwarder.rs", ".put_create("),
    },
    Call {
        action: "kinesis:PutRecords",
        roles: &[Role::TenantWriter],
        on: On::Streams,
        site: ("lambdas/src/forwarder.rs", ".put_records()"),
    },
    // The lake, through object_store: GET (ranged GET, HEAD) objects,
    // create-once PUT and multipart uploads, LIST, DELETE.
    Call {
        action: "s3:GetObject",
        roles: LR,
        on: On::LakeObjects,
        site: ("jobs/core/src/storage.rs", "store.get(path)"),
    },
    Call {
        action: "s3:PutObject",
        roles: LR,
        on: On::LakeObjects,
        site: ("jobs/core/src/storage.rs", "store.put_opts(path"),
    },
    Call {
        action: "s3:AbortMultipartUpload",
        roles: LR,
        on: On::LakeObjects,
        site: ("jobs/core/src/storage.rs", "upload.abort()"),
    },
    Call {
        action: "s3:ListBucket",
        roles: LR,
        on: On::LakeBucket,
        site: ("jobs/core/src/storage.rs", ".list(Some(prefix))"),
    },
    Call {
        action: "s3:DeleteObject",
        roles: LR,
        on: On::LakeObjects,
        site: ("jobs/core/src/storage.rs", "store.delete(path)"),
    },
    // `forward --kinesis` and the daemon follow the tenant streams.
    Call {
        action: "kinesis:ListShards",
        roles: &[Role::Runner],
        on: On::Streams,
        site: ("jobs/forward/src/kinesis.rs", ".list_shards()"),
    },
    Call {
        action: "kinesis:GetShardIterator",
        roles: &[Role::Runner],
        on: On::Streams,
        site: ("jobs/forward/src/kinesis.rs", ".get_shard_iterator()"),
    },
    Call {
        action: "kinesis:GetRecords",
        roles: &[Role::Runner],
        on: On::Streams,
        site: ("jobs/forward/src/kinesis.rs", ".get_records()"),
    },
];

const LOGS: &str = "Lambda writes the function's logs";
const ESM: &str = "the event source mapping reads the streams for the lander";

/// What AWS services do with a role (not the code's calls).
pub const SERVICE_GRANTS: &[(Role, &str, On, &str)] = &[
    (
        Role::ClientForwarder,
        "logs:CreateLogStream",
        On::OwnLogs,
        LOGS,
    ),
    (
        Role::ClientForwarder,
        "logs:PutLogEvents",
        On::OwnLogs,
        LOGS,
    ),
    (Role::Lander, "logs:CreateLogStream", On::OwnLogs, LOGS),
    (Role::Lander, "logs:PutLogEvents", On::OwnLogs, LOGS),
    (Role::Runner, "logs:CreateLogStream", On::OwnLogs, LOGS),
    (Role::Runner, "logs:PutLogEvents", On::OwnLogs, LOGS),
    (Role::Lander, "kinesis:DescribeStream", On::Streams, ESM),
    (
        Role::Lander,
        "kinesis:DescribeStreamSummary",
        On::Streams,
        ESM,
    ),
    (Role::Lander, "kinesis:GetRecords", On::Streams, ESM),
    (Role::Lander, "kinesis:GetShardIterator", On::Streams, ESM),
    (Role::Lander, "kinesis:ListShards", On::Streams, ESM),
    (
        Role::LogsDestination,
        "kinesis:PutRecord",
        On::Streams,
        "CloudWatch Logs writes subscribed events into the stream",
    ),
    (
        Role::Scheduler,
        "lambda:InvokeFunction",
        On::RunnerFunction,
        "EventBridge Scheduler invokes the runner",
    ),
    (
        Role::Scheduler,
        "sqs:SendMessage",
        On::ScheduleDeadLetters,
        "EventBridge Scheduler keeps invocations it could not deliver",
    ),
];

/// The actions a role is granted, by what they apply to: code calls and
/// service grants together, sorted.
pub fn grants(role: Role) -> Vec<(On, Vec<&'static str>)> {
    let mut by: std::collections::BTreeMap<On, std::collections::BTreeSet<&'static str>> =
        Default::default();
    for c in CALLS.iter().filter(|c| c.roles.contains(&role)) {
        by.entry(c.on).or_default().insert(c.action);
    }
    for (r, a, on, _) in SERVICE_GRANTS {
        if *r == role {
            by.entry(*on).or_default().insert(a);
        }
    }
    by.into_iter()
        .map(|(on, a)| (on, a.into_iter().collect()))
        .collect()
}

/// Where a Google permission is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GcpScope {
    /// On the export bucket.
    Bucket,
    /// On the dataset.
    Dataset,
    /// On the project (BigQuery jobs, and datasets, belong to the project).
    Project,
}

/// One Google API call of the exporter and the permissions it needs.
#[derive(Debug, Clone, Copy)]
pub struct GcpCall {
    /// The REST method.
    pub method: &'static str,
    /// The permissions it needs.
    pub permissions: &'static [&'static str],
    /// Where they are granted.
    pub scope: GcpScope,
    /// The file and the code that makes the call.
    pub site: (&'static str, &'static str),
}

/// Every Google API call the exporter makes.
pub const GCP_CALLS: &[GcpCall] = &[
    GcpCall {
        method: "storage.objects.get",
        permissions: &["storage.objects.get"],
        scope: GcpScope::Bucket,
        site: ("jobs/export/src/store.rs", "self.client.get_object(&req)"),
    },
    GcpCall {
        method: "storage.objects.insert (ifGenerationMatch=0)",
        permissions: &["storage.objects.create"],
        scope: GcpScope::Bucket,
        site: ("jobs/export/src/store.rs", ".upload_object(&req"),
    },
    GcpCall {
        method: "storage.objects.get (alt=media)",
        permissions: &["storage.objects.get"],
        scope: GcpScope::Bucket,
        site: ("jobs/export/src/store.rs", ".download_object(&req"),
    },
    GcpCall {
        method: "storage.objects.delete",
        permissions: &["storage.objects.delete"],
        scope: GcpScope::Bucket,
        site: (
            "jobs/export/src/store.rs",
            "self.client.delete_object(&req)",
        ),
    },
    GcpCall {
        method: "bigquery.datasets.insert (409 when it exists)",
        permissions: &["bigquery.datasets.create"],
        scope: GcpScope::Project,
        site: (
            "jobs/export/src/bigquery.rs",
            "self.client.dataset().create(",
        ),
    },
    GcpCall {
        method: "bigquery.tables.insert",
        permissions: &["bigquery.tables.create"],
        scope: GcpScope::Dataset,
        site: ("jobs/export/src/bigquery.rs", "self.client.table().create("),
    },
    GcpCall {
        method: "bigquery.tables.get",
        permissions: &["bigquery.tables.get"],
        scope: GcpScope::Dataset,
        site: ("jobs/export/src/bigquery.rs", "self.client.table().get("),
    },
    GcpCall {
        method: "bigquery.jobs.insert (LOAD: WRITE_APPEND, WRITE_TRUNCATE of a partition)",
        permissions: &["bigquery.tables.update", "bigquery.tables.updateData"],
        scope: GcpScope::Dataset,
        site: (
            "jobs/export/src/bigquery.rs",
            "self.client.job().insert(&s.project",
        ),
    },
    GcpCall {
        method: "bigquery.jobs.insert",
        permissions: &["bigquery.jobs.create"],
        scope: GcpScope::Project,
        site: (
            "jobs/export/src/bigquery.rs",
            "self.client.job().insert(&s.project",
        ),
    },
    GcpCall {
        method: "bigquery.jobs.get",
        permissions: &["bigquery.jobs.get"],
        scope: GcpScope::Project,
        site: ("jobs/export/src/bigquery.rs", ".get_job(&s.project"),
    },
    GcpCall {
        method: "bigquery.jobs.query, jobs.getQueryResults (reconcile, verify, sql)",
        permissions: &["bigquery.tables.getData"],
        scope: GcpScope::Dataset,
        site: (
            "jobs/export/src/bigquery.rs",
            "self.client.job().query(&s.project",
        ),
    },
];

/// The permissions granted at `scope`, sorted.
pub fn gcp_permissions(scope: GcpScope) -> Vec<&'static str> {
    let set: std::collections::BTreeSet<&'static str> = GCP_CALLS
        .iter()
        .filter(|c| c.scope == scope)
        .flat_map(|c| c.permissions.iter().copied())
        .collect();
    set.into_iter().collect()
}
