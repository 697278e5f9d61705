//! The AWS side: the central account and each client account, as
//! CloudFormation and as Terraform (JSON syntax). Both are made from the
//! same [`Model`] and the same grants ([`super::iam`]).

use serde_json::{Map, Value, json};

use logferry_core::partition::{DLQ, LANDING};

use super::iam::{self, On, Role};
use super::{Model, ident, tf_ident};
use crate::error::Result;
use crate::schedule;

const RUNTIME: &str = "provided.al2023";
/// Where the zips keep the configuration and the Google credentials.
const CONFIG_IN_ZIP: &str = "/var/task/logferry.toml";
const GCP_KEY_IN_ZIP: &str = "/var/task/gcp-key.json";

fn arch(m: &Model) -> &str {
    &m.settings.deploy.lambda_architecture
}

/// An IAM policy document, `resources(on)` giving each grant's resources.
fn policy(role: Role, resources: &dyn Fn(On) -> Vec<Value>) -> Value {
    let statements: Vec<Value> = iam::grants(role)
        .into_iter()
        .map(|(on, actions)| {
            json!({
                "Sid": ident(&format!("{on:?}")),
                "Effect": "Allow",
                "Action": actions,
                "Resource": resources(on),
            })
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

fn trust_service(service: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }]})
}

fn lifecycle_days(days: u32) -> Option<u32> {
    (days > 0).then_some(days)
}

/// The lake's lifecycle rules, CloudFormation's shape.
fn lake_rules_cfn(m: &Model) -> Vec<Value> {
    let d = &m.settings.deploy;
    let mut rules = vec![json!({
        "Id": "abort-incomplete-multipart-uploads",
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    })];
    for (id, dir, days) in [
        ("landing-retention", LANDING, d.landing_retention_days),
        ("dead-letter-retention", DLQ, d.dlq_retention_days),
    ] {
        if let Some(days) = lifecycle_days(days) {
            rules.push(json!({
                "Id": id,
                "Status": "Enabled",
                "Prefix": format!("{}{dir}/", m.lake_prefix),
                "ExpirationInDays": days,
            }));
        }
    }
    rules
}

fn bucket_cfn(rules: Vec<Value>, name: Value) -> Value {
    json!({
        "Type": "AWS::S3::Bucket",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BucketName": name,
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [{
                "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
                "BucketKeyEnabled": true,
            }]},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": true,
                "BlockPublicPolicy": true,
                "IgnorePublicAcls": true,
                "RestrictPublicBuckets": true,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LifecycleConfiguration": {"Rules": rules},
        },
    })
}

fn tls_only_cfn(bucket_ref: &str) -> Value {
    json!({
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": {"Ref": bucket_ref},
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [
                    {"Fn::GetAtt": [bucket_ref, "Arn"]},
                    {"Fn::Sub": format!("${{{bucket_ref}.Arn}}/*")},
                ],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }]},
        },
    })
}

fn stream_id(name: &str) -> String {
    format!("Stream{}", ident(name))
}

/// The central account, CloudFormation.
pub fn central_cfn(m: &Model) -> Result<Value> {
    let d = &m.settings.deploy;
    let mut r = Map::new();
    let mut outputs = Map::new();
    r.insert(
        "LakeBucket".into(),
        bucket_cfn(lake_rules_cfn(m), json!(m.lake_bucket)),
    );
    r.insert("LakeBucketPolicy".into(), tls_only_cfn("LakeBucket"));
    let stream_arns: Vec<Value> = m
        .streams
        .iter()
        .map(|s| json!({"Fn::GetAtt": [stream_id(&s.name), "Arn"]}))
        .collect();
    for s in &m.streams {
        r.insert(
            stream_id(&s.name),
            json!({
                "Type": "AWS::Kinesis::Stream",
                "Properties": {
                    "Name": s.name,
                    "ShardCount": s.shards,
                    "RetentionPeriodHours": 24,
                    "StreamModeDetails": {"StreamMode": "PROVISIONED"},
                    "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
                },
            }),
        );
        outputs.insert(
            format!("{}Arn", stream_id(&s.name)),
            json!({"Value": {"Fn::GetAtt": [stream_id(&s.name), "Arn"]}}),
        );
    }
    // CloudWatch Logs writes into the destinations' streams with this role.
    r.insert(
        "LogsDestinationRole".into(),
        json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": trust_service("logs.amazonaws.com"),
                "Policies": [{
                    "PolicyName": "put-into-tenant-streams",
                    "PolicyDocument": policy(Role::LogsDestination, &|_| stream_arns.clone()),
                }],
            },
        }),
    );
    for (id, accounts, _) in &m.tenants {
        let tid = ident(id);
        let own: Vec<Value> = m
            .streams
            .iter()
            .filter(|s| &s.tenant == id)
            .map(|s| json!({"Fn::GetAtt": [stream_id(&s.name), "Arn"]}))
            .collect();
        let principals: Vec<Value> = if accounts.is_empty() {
            vec![json!({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"})]
        } else {
            accounts
                .iter()
                .map(|a| json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:iam::{a}:root")}))
                .collect()
        };
        r.insert(
            format!("TenantWriter{tid}"),
            json!({
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": m.res(&["writer", id]),
                    "Description": format!("Assumed by tenant {id}'s forwarders: writes its streams only"),
                    "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                        "Effect": "Allow",
                        "Principal": {"AWS": principals},
                        "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"sts:ExternalId": id}},
                    }]},
                    "Policies": [{
                        "PolicyName": "put-records",
                        "PolicyDocument": policy(Role::TenantWriter, &|_| own.clone()),
                    }],
                },
            }),
        );
        outputs.insert(
            format!("TenantWriter{tid}Arn"),
            json!({"Value": {"Fn::GetAtt": [format!("TenantWriter{tid}"), "Arn"]}}),
        );
        // A destination for client accounts that subscribe log groups to
        // the tenant's stream directly (no forwarder).
        let dest = m.res(&["logs", id]);
        let mut props = json!({
            "DestinationName": dest,
            "RoleArn": {"Fn::GetAtt": ["LogsDestinationRole", "Arn"]},
            "TargetArn": own.first().cloned().unwrap_or(Value::Null),
        });
        if !accounts.is_empty() {
            props["DestinationPolicy"] = json!({"Fn::Sub": json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"AWS": accounts},
                    "Action": "logs:PutSubscriptionFilter",
                    "Resource": format!("arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:destination:{dest}"),
                }],
            }).to_string()});
        }
        r.insert(
            format!("LogsDestination{tid}"),
            json!({"Type": "AWS::Logs::Destination", "Properties": props}),
        );
    }
    let lake_objects = json!({"Fn::Sub": format!("${{LakeBucket.Arn}}/{}*", m.lake_prefix)});
    let lake_bucket = json!({"Fn::GetAtt": ["LakeBucket", "Arn"]});
    for (role, fname, memory, timeout, code) in [
        (
            Role::Lander,
            "lander",
            d.lander_memory_mb,
            300,
            "LanderCodeKey",
        ),
        (
            Role::Runner,
            "runner",
            d.runner_memory_mb,
            900,
            "RunnerCodeKey",
        ),
    ] {
        let fid = ident(fname);
        let function = m.res(&[fname]);
        let logs_arn = json!({"Fn::GetAtt": [format!("{fid}LogGroup"), "Arn"]});
        let runner_fn = json!({"Fn::GetAtt": ["RunnerFunction", "Arn"]});
        let resources = |on: On| -> Vec<Value> {
            match on {
                On::Streams => stream_arns.clone(),
                On::LakeBucket => vec![lake_bucket.clone()],
                On::LakeObjects => vec![lake_objects.clone()],
                On::OwnLogs => vec![logs_arn.clone()],
                On::RunnerFunction => vec![runner_fn.clone()],
                _ => vec![],
            }
        };
        r.insert(
            format!("{fid}LogGroup"),
            json!({"Type": "AWS::Logs::LogGroup", "Properties": {
                "LogGroupName": format!("/aws/lambda/{function}"),
                "RetentionInDays": 30,
            }}),
        );
        r.insert(
            format!("{fid}Role"),
            json!({"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": trust_service("lambda.amazonaws.com"),
                "Policies": [{"PolicyName": fname, "PolicyDocument": policy(role, &resources)}],
            }}),
        );
        let mut env = json!({
            "LOGFERRY_CONFIG": CONFIG_IN_ZIP,
            "LOGFERRY_DATA_DIR": "/tmp/logferry",
        });
        if role == Role::Runner {
            env["GOOGLE_APPLICATION_CREDENTIALS"] = json!(GCP_KEY_IN_ZIP);
        }
        r.insert(
            format!("{fid}Function"),
            json!({"Type": "AWS::Lambda::Function", "Properties": {
                "FunctionName": function,
                "Runtime": RUNTIME,
                "Handler": "bootstrap",
                "Architectures": [arch(m)],
                "MemorySize": memory,
                "Timeout": timeout,
                "Role": {"Fn::GetAtt": [format!("{fid}Role"), "Arn"]},
                "Code": {"S3Bucket": {"Ref": "ArtifactBucket"}, "S3Key": {"Ref": code}},
                "Environment": {"Variables": env},
                "LoggingConfig": {"LogGroup": {"Ref": format!("{fid}LogGroup")}, "LogFormat": "Text"},
            }}),
        );
    }
    for s in &m.streams {
        r.insert(
            format!("Lander{}Mapping", stream_id(&s.name)),
            json!({"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
                "EventSourceArn": {"Fn::GetAtt": [stream_id(&s.name), "Arn"]},
                "FunctionName": {"Ref": "LanderFunction"},
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 1000,
                "MaximumBatchingWindowInSeconds": 10,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "BisectBatchOnFunctionError": true,
                "MaximumRetryAttempts": -1,
                "MaximumRecordAgeInSeconds": -1,
            }}),
        );
    }
    // The schedules, invoking the runner.
    let queue_arn = json!({"Fn::GetAtt": ["ScheduleDeadLetters", "Arn"]});
    r.insert(
        "ScheduleDeadLetters".into(),
        json!({"Type": "AWS::SQS::Queue", "Properties": {
            "MessageRetentionPeriod": 1_209_600,
            "SqsManagedSseEnabled": true,
        }}),
    );
    let runner_fn = json!({"Fn::GetAtt": ["RunnerFunction", "Arn"]});
    r.insert(
        "SchedulerRole".into(),
        json!({"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": trust_service("scheduler.amazonaws.com"),
            "Policies": [{"PolicyName": "invoke-runner", "PolicyDocument": policy(Role::Scheduler, &|on| match on {
                On::RunnerFunction => vec![runner_fn.clone()],
                On::ScheduleDeadLetters => vec![queue_arn.clone()],
                _ => vec![],
            })}],
        }}),
    );
    for s in &m.settings.schedules {
        if s.eventbridge_expression().is_err() {
            continue;
        }
        let target = json!({
            "Arn": {"Fn::GetAtt": ["RunnerFunction", "Arn"]},
            "RoleArn": {"Fn::GetAtt": ["SchedulerRole", "Arn"]},
            "Input": schedule::lambda_input(s).to_string(),
            "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": schedule::max_event_age(s)},
            "DeadLetterConfig": {"Arn": {"Fn::GetAtt": ["ScheduleDeadLetters", "Arn"]}},
        });
        let mut props = schedule::properties(s, target)?;
        props["Name"] = json!(m.res(&[&s.name]));
        r.insert(
            format!("Schedule{}", schedule::resource_name(&s.name)),
            json!({"Type": "AWS::Scheduler::Schedule", "Properties": props}),
        );
    }
    // The alarms of `logferry dashboards --alarms`, notifying a topic.
    r.insert(
        "AlarmTopic".into(),
        json!({"Type": "AWS::SNS::Topic", "Properties": {"TopicName": m.res(&["alarms"])}}),
    );
    for (k, mut v) in alarms(m)? {
        replace_ref(&mut v, "AlarmTopicArn", &json!({"Ref": "AlarmTopic"}));
        r.insert(k, v);
    }
    outputs.insert(
        "LakeBucketName".into(),
        json!({"Value": {"Ref": "LakeBucket"}}),
    );
    outputs.insert(
        "AlarmTopicArn".into(),
        json!({"Value": {"Ref": "AlarmTopic"}}),
    );
    Ok(json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("{}: the central account (logferry deploy render)", m.name),
        "Parameters": {
            "ArtifactBucket": {"Type": "String", "Description": "S3 bucket holding the Lambda zips (scripts/lambda-build.sh)"},
            "LanderCodeKey": {"Type": "String", "Default": "logferry-lander.zip"},
            "RunnerCodeKey": {"Type": "String", "Default": "logferry-lambda.zip"},
        },
        "Resources": r,
        "Outputs": outputs,
    }))
}

/// The alarms template's resources.
fn alarms(m: &Model) -> Result<Vec<(String, Value)>> {
    let s = &m.settings;
    let input = logferry_observe::dashboards::DashboardInput {
        namespace: s.metrics.namespace.clone(),
        environment: s.metrics.environment.clone(),
        region: m.region.clone(),
        tenants: m.tenants.iter().map(|t| t.0.clone()).collect(),
        streams: m.streams.iter().map(|p| p.name.clone()).collect(),
        forwarder_functions: Vec::new(),
        lambda_function: m.res(&["runner"]),
        gcp_project: String::new(),
        bigquery_dataset: String::new(),
        export_bucket: String::new(),
        thresholds: s.kpi,
    };
    let t: Value = serde_json::from_str(&logferry_observe::dashboards::cloudwatch_alarms(&input))?;
    Ok(t["Resources"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default())
}

/// Replaces every `{"Ref": name}` in `v` by `with`.
fn replace_ref(v: &mut Value, name: &str, with: &Value) {
    match v {
        Value::Object(o) => {
            if o.len() == 1 && o.get("Ref").and_then(Value::as_str) == Some(name) {
                *v = with.clone();
                return;
            }
            for x in o.values_mut() {
                replace_ref(x, name, with);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| replace_ref(x, name, with)),
        _ => {}
    }
}

fn forwarder_env(m: &Model, tenant: &str, stream_arn: Value, role_arn: Value, dlq: Value) -> Value {
    let s = &m.settings;
    json!({
        "LOGFERRY_FORWARDER_STREAM": stream_arn,
        "LOGFERRY_FORWARDER_ROLE_ARN": role_arn,
        "LOGFERRY_FORWARDER_EXTERNAL_ID": tenant,
        "LOGFERRY_FORWARDER_DLQ": dlq,
        "LOGFERRY_TENANT": tenant,
        "LOGFERRY_METRICS_NAMESPACE": s.metrics.namespace,
        "LOGFERRY_ENVIRONMENT": s.metrics.environment,
    })
}

fn first_stream<'a>(m: &'a Model, tenant: &str) -> &'a str {
    m.streams
        .iter()
        .find(|s| s.tenant == tenant)
        .map_or("", |s| s.name.as_str())
}

/// A client account of `tenant`, CloudFormation.
pub fn client_cfn(m: &Model, tenant: &str) -> Result<Value> {
    let d = &m.settings.deploy;
    let function = m.res(&["forwarder", tenant]);
    let writer = m.res(&["writer", tenant]);
    let stream = first_stream(m, tenant);
    let mut r = Map::new();
    let dlq_rules = {
        let mut rules = vec![json!({
            "Id": "abort-incomplete-multipart-uploads",
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        })];
        if let Some(days) = lifecycle_days(d.dlq_retention_days) {
            rules.push(json!({"Id": "dead-letter-retention", "Status": "Enabled", "ExpirationInDays": days}));
        }
        rules
    };
    r.insert(
        "DeadLetterBucket".into(),
        bucket_cfn(
            dlq_rules,
            json!({"Fn::Sub": format!("{function}-dlq-${{AWS::AccountId}}")}),
        ),
    );
    r.insert(
        "DeadLetterBucketPolicy".into(),
        tls_only_cfn("DeadLetterBucket"),
    );
    r.insert(
        "ForwarderLogGroup".into(),
        json!({"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": format!("/aws/lambda/{function}"),
            "RetentionInDays": 30,
        }}),
    );
    let writer_arn = json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:iam::${{CentralAccountId}}:role/{writer}")});
    let stream_arn = json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:kinesis:{}:${{CentralAccountId}}:stream/{stream}", m.region)});
    let dlq_objects = json!({"Fn::Sub": "${DeadLetterBucket.Arn}/forwarder/*"});
    let logs_arn = json!({"Fn::GetAtt": ["ForwarderLogGroup", "Arn"]});
    r.insert(
        "ForwarderRole".into(),
        json!({"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": trust_service("lambda.amazonaws.com"),
            "Policies": [{"PolicyName": "forwarder", "PolicyDocument": policy(Role::ClientForwarder, &|on| match on {
                On::TenantWriterRole => vec![writer_arn.clone()],
                On::DeadLetterObjects => vec![dlq_objects.clone()],
                On::OwnLogs => vec![logs_arn.clone()],
                _ => vec![],
            })}],
        }}),
    );
    r.insert(
        "ForwarderFunction".into(),
        json!({"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": function,
            "Runtime": RUNTIME,
            "Handler": "bootstrap",
            "Architectures": [arch(m)],
            "MemorySize": d.forwarder_memory_mb,
            "Timeout": 60,
            "Role": {"Fn::GetAtt": ["ForwarderRole", "Arn"]},
            "Code": {"S3Bucket": {"Ref": "ArtifactBucket"}, "S3Key": {"Ref": "ForwarderCodeKey"}},
            "Environment": {"Variables": forwarder_env(
                m,
                tenant,
                stream_arn,
                writer_arn.clone(),
                json!({"Fn::Sub": "s3://${DeadLetterBucket}/forwarder"}),
            )},
            "LoggingConfig": {"LogGroup": {"Ref": "ForwarderLogGroup"}, "LogFormat": "Text"},
        }}),
    );
    r.insert(
        "ForwarderInvokedByLogs".into(),
        json!({"Type": "AWS::Lambda::Permission", "Properties": {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": "ForwarderFunction"},
            "Principal": "logs.amazonaws.com",
            "SourceAccount": {"Ref": "AWS::AccountId"},
        }}),
    );
    // Every log group of the account but the forwarder's own.
    r.insert(
        "SubscriptionPolicy".into(),
        json!({"Type": "AWS::Logs::AccountPolicy", "DependsOn": "ForwarderInvokedByLogs", "Properties": {
            "PolicyName": m.res(&["subscription", tenant]),
            "PolicyType": "SUBSCRIPTION_FILTER_POLICY",
            "Scope": "ALL",
            "PolicyDocument": {"Fn::Sub": json!({
                "DestinationArn": "${ForwarderFunction.Arn}",
                "FilterPattern": "",
                "Distribution": "Random",
            }).to_string()},
            "SelectionCriteria": format!("LogGroupName NOT IN [\"/aws/lambda/{function}\"]"),
        }}),
    );
    for (id, metric, stat, threshold, what) in [
        (
            "Errors",
            "Errors",
            "Sum",
            0.0,
            "failed invocations (they are retried; a dead letter follows the last)",
        ),
        (
            "Throttles",
            "Throttles",
            "Sum",
            0.0,
            "throttled invocations",
        ),
        (
            "Duration",
            "Duration",
            "Maximum",
            5000.0,
            "invocations over the guide's 5,000 ms",
        ),
    ] {
        r.insert(
            format!("Forwarder{id}Alarm"),
            json!({"Type": "AWS::CloudWatch::Alarm", "Properties": {
                "AlarmName": format!("{function} {metric}"),
                "AlarmDescription": format!("The forwarder of tenant {tenant}: {what}."),
                "Namespace": "AWS/Lambda",
                "MetricName": metric,
                "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "ForwarderFunction"}}],
                "Statistic": stat,
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": threshold,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
            }}),
        );
    }
    Ok(json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("{}: tenant {tenant}'s client-side forwarder (logferry deploy render)", m.name),
        "Parameters": {
            "CentralAccountId": {"Type": "String", "AllowedPattern": "^[0-9]{12}$", "Description": "The account of the tenant streams"},
            "ArtifactBucket": {"Type": "String", "Description": "S3 bucket holding logferry-forwarder.zip"},
            "ForwarderCodeKey": {"Type": "String", "Default": "logferry-forwarder.zip"},
        },
        "Resources": r,
        "Outputs": {
            "ForwarderFunctionArn": {"Value": {"Fn::GetAtt": ["ForwarderFunction", "Arn"]}},
            "DeadLetterBucketName": {"Value": {"Ref": "DeadLetterBucket"}},
        },
    }))
}

// Terraform, JSON syntax.

fn tf_policy(role: Role, resources: &dyn Fn(On) -> Vec<Value>) -> String {
    policy(role, resources).to_string()
}

fn tf_bucket(res: &mut Map<String, Value>, key: &str, bucket: Value, rules: Vec<Value>) {
    let ins = |res: &mut Map<String, Value>, t: &str, body: Value| {
        res.entry(t.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|o| o.insert(key.to_string(), body));
    };
    let id = format!("${{aws_s3_bucket.{key}.id}}");
    ins(
        res,
        "aws_s3_bucket",
        json!({"bucket": bucket, "lifecycle": {"prevent_destroy": true}}),
    );
    ins(
        res,
        "aws_s3_bucket_public_access_block",
        json!({"bucket": id, "block_public_acls": true, "block_public_policy": true,
               "ignore_public_acls": true, "restrict_public_buckets": true}),
    );
    ins(
        res,
        "aws_s3_bucket_ownership_controls",
        json!({"bucket": id, "rule": {"object_ownership": "BucketOwnerEnforced"}}),
    );
    ins(
        res,
        "aws_s3_bucket_server_side_encryption_configuration",
        json!({"bucket": id, "rule": {"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}, "bucket_key_enabled": true}}),
    );
    let rules: Vec<Value> = rules
        .into_iter()
        .map(|r| {
            let mut out = json!({"id": r["Id"], "status": "Enabled"});
            out["filter"] = match r.get("Prefix") {
                Some(p) => json!({"prefix": p}),
                None => json!({}),
            };
            if let Some(a) = r.pointer("/AbortIncompleteMultipartUpload/DaysAfterInitiation") {
                out["abort_incomplete_multipart_upload"] = json!({"days_after_initiation": a});
            }
            if let Some(e) = r.get("ExpirationInDays") {
                out["expiration"] = json!({"days": e});
            }
            out
        })
        .collect();
    ins(
        res,
        "aws_s3_bucket_lifecycle_configuration",
        json!({"bucket": id, "rule": rules}),
    );
    ins(
        res,
        "aws_s3_bucket_policy",
        json!({"bucket": id, "policy": json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [format!("${{aws_s3_bucket.{key}.arn}}"), format!("${{aws_s3_bucket.{key}.arn}}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }]}).to_string()}),
    );
}

fn add(res: &mut Map<String, Value>, ty: &str, name: &str, body: Value) {
    if let Some(o) = res
        .entry(ty.to_string())
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        o.insert(name.to_string(), body);
    }
}

fn tf_trust(service: &str) -> String {
    trust_service(service).to_string()
}

fn providers(m: &Model) -> Value {
    json!({
        "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": ">= 5.70"}}},
        "provider": {"aws": {"region": m.region}},
    })
}

fn tf_alarm(p: &Value, topic: &str) -> Value {
    let mut a = json!({
        "alarm_name": p["AlarmName"],
        "alarm_description": p["AlarmDescription"],
        "comparison_operator": p["ComparisonOperator"],
        "evaluation_periods": p["EvaluationPeriods"],
        "threshold": p["Threshold"],
        "treat_missing_data": p.get("TreatMissingData").cloned().unwrap_or(json!("missing")),
    });
    if p.get("AlarmActions").is_some() {
        a["alarm_actions"] = json!([topic]);
        a["ok_actions"] = json!([topic]);
    }
    for (from, to) in [
        ("DatapointsToAlarm", "datapoints_to_alarm"),
        ("MetricName", "metric_name"),
        ("Namespace", "namespace"),
        ("Period", "period"),
        ("Statistic", "statistic"),
        ("ExtendedStatistic", "extended_statistic"),
    ] {
        if let Some(v) = p.get(from) {
            a[to] = v.clone();
        }
    }
    if let Some(dims) = p.get("Dimensions").and_then(Value::as_array) {
        let map: Map<String, Value> = dims
            .iter()
            .filter_map(|d| Some((d["Name"].as_str()?.to_string(), d["Value"].clone())))
            .collect();
        a["dimensions"] = Value::Object(map);
    }
    if let Some(q) = p.get("Metrics").and_then(Value::as_array) {
        a["metric_query"] = Value::Array(
            q.iter()
                .map(|q| {
                    json!({"id": q["Id"], "expression": q["Expression"], "label": q["Label"],
                           "period": q["Period"], "return_data": q["ReturnData"]})
                })
                .collect(),
        );
    }
    a
}

/// The central account, Terraform.
pub fn central_tf(m: &Model) -> Result<Value> {
    let d = &m.settings.deploy;
    let mut res = Map::new();
    tf_bucket(&mut res, "lake", json!(m.lake_bucket), lake_rules_cfn(m));
    let stream_arns: Vec<Value> = m
        .streams
        .iter()
        .map(|s| json!(format!("${{aws_kinesis_stream.{}.arn}}", tf_ident(&s.name))))
        .collect();
    for s in &m.streams {
        add(
            &mut res,
            "aws_kinesis_stream",
            &tf_ident(&s.name),
            json!({"name": s.name, "shard_count": s.shards, "retention_period": 24,
                   "encryption_type": "KMS", "kms_key_id": "alias/aws/kinesis",
                   "stream_mode_details": {"stream_mode": "PROVISIONED"}}),
        );
    }
    add(
        &mut res,
        "aws_iam_role",
        "logs_destination",
        json!({"name_prefix": m.res(&["logs-dest-"]), "assume_role_policy": tf_trust("logs.amazonaws.com")}),
    );
    add(
        &mut res,
        "aws_iam_role_policy",
        "logs_destination",
        json!({"role": "${aws_iam_role.logs_destination.id}",
               "policy": tf_policy(Role::LogsDestination, &|_| stream_arns.clone())}),
    );
    for (id, accounts, _) in &m.tenants {
        let t = tf_ident(id);
        let own: Vec<Value> = m
            .streams
            .iter()
            .filter(|s| &s.tenant == id)
            .map(|s| json!(format!("${{aws_kinesis_stream.{}.arn}}", tf_ident(&s.name))))
            .collect();
        let principals: Vec<String> = if accounts.is_empty() {
            vec!["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root".into()]
        } else {
            accounts
                .iter()
                .map(|a| format!("arn:aws:iam::{a}:root"))
                .collect()
        };
        add(
            &mut res,
            "aws_iam_role",
            &format!("writer_{t}"),
            json!({"name": m.res(&["writer", id]),
                   "description": format!("Assumed by tenant {id}'s forwarders: writes its streams only"),
                   "assume_role_policy": json!({"Version": "2012-10-17", "Statement": [{
                       "Effect": "Allow", "Principal": {"AWS": principals}, "Action": "sts:AssumeRole",
                       "Condition": {"StringEquals": {"sts:ExternalId": id}}}]}).to_string()}),
        );
        add(
            &mut res,
            "aws_iam_role_policy",
            &format!("writer_{t}"),
            json!({"role": format!("${{aws_iam_role.writer_{t}.id}}"),
                   "policy": tf_policy(Role::TenantWriter, &|_| own.clone())}),
        );
        let dest = m.res(&["logs", id]);
        add(
            &mut res,
            "aws_cloudwatch_log_destination",
            &t,
            json!({"name": dest, "role_arn": "${aws_iam_role.logs_destination.arn}",
                   "target_arn": own.first().cloned().unwrap_or(Value::Null),
                   "depends_on": ["aws_iam_role_policy.logs_destination"]}),
        );
        if !accounts.is_empty() {
            add(
                &mut res,
                "aws_cloudwatch_log_destination_policy",
                &t,
                json!({"destination_name": format!("${{aws_cloudwatch_log_destination.{t}.name}}"),
                       "access_policy": json!({"Version": "2012-10-17", "Statement": [{
                           "Effect": "Allow", "Principal": {"AWS": accounts},
                           "Action": "logs:PutSubscriptionFilter",
                           "Resource": format!("${{aws_cloudwatch_log_destination.{t}.arn}}")}]}).to_string()}),
            );
        }
    }
    let lake_objects = json!(format!("${{aws_s3_bucket.lake.arn}}/{}*", m.lake_prefix));
    for (role, fname, memory, timeout, code) in [
        (
            Role::Lander,
            "lander",
            d.lander_memory_mb,
            300,
            "lander_zip",
        ),
        (
            Role::Runner,
            "runner",
            d.runner_memory_mb,
            900,
            "runner_zip",
        ),
    ] {
        let function = m.res(&[fname]);
        let logs = json!(format!("${{aws_cloudwatch_log_group.{fname}.arn}}:*"));
        let runner_fn = json!("${aws_lambda_function.runner.arn}");
        let resources = |on: On| -> Vec<Value> {
            match on {
                On::Streams => stream_arns.clone(),
                On::LakeBucket => vec![json!("${aws_s3_bucket.lake.arn}")],
                On::LakeObjects => vec![lake_objects.clone()],
                On::OwnLogs => vec![logs.clone()],
                On::RunnerFunction => vec![runner_fn.clone()],
                _ => vec![],
            }
        };
        add(
            &mut res,
            "aws_cloudwatch_log_group",
            fname,
            json!({"name": format!("/aws/lambda/{function}"), "retention_in_days": 30}),
        );
        add(
            &mut res,
            "aws_iam_role",
            fname,
            json!({"name_prefix": format!("{function}-"), "assume_role_policy": tf_trust("lambda.amazonaws.com")}),
        );
        add(
            &mut res,
            "aws_iam_role_policy",
            fname,
            json!({"role": format!("${{aws_iam_role.{fname}.id}}"), "policy": tf_policy(role, &resources)}),
        );
        let mut env =
            json!({"LOGFERRY_CONFIG": CONFIG_IN_ZIP, "LOGFERRY_DATA_DIR": "/tmp/logferry"});
        if role == Role::Runner {
            env["GOOGLE_APPLICATION_CREDENTIALS"] = json!(GCP_KEY_IN_ZIP);
        }
        add(
            &mut res,
            "aws_lambda_function",
            fname,
            json!({"function_name": function, "runtime": RUNTIME, "handler": "bootstrap",
                   "architectures": [arch(m)], "memory_size": memory, "timeout": timeout,
                   "role": format!("${{aws_iam_role.{fname}.arn}}"),
                   "s3_bucket": "${var.artifact_bucket}", "s3_key": format!("${{var.{code}}}"),
                   "environment": {"variables": env},
                   "logging_config": {"log_format": "Text", "log_group": format!("${{aws_cloudwatch_log_group.{fname}.name}}")}}),
        );
    }
    for s in &m.streams {
        add(
            &mut res,
            "aws_lambda_event_source_mapping",
            &format!("lander_{}", tf_ident(&s.name)),
            json!({"event_source_arn": format!("${{aws_kinesis_stream.{}.arn}}", tf_ident(&s.name)),
                   "function_name": "${aws_lambda_function.lander.arn}",
                   "starting_position": "TRIM_HORIZON", "batch_size": 1000,
                   "maximum_batching_window_in_seconds": 10,
                   "function_response_types": ["ReportBatchItemFailures"],
                   "bisect_batch_on_function_error": true,
                   "maximum_retry_attempts": -1, "maximum_record_age_in_seconds": -1}),
        );
    }
    add(
        &mut res,
        "aws_sqs_queue",
        "schedule_dead_letters",
        json!({"name_prefix": m.res(&["schedule-dlq-"]), "message_retention_seconds": 1_209_600, "sqs_managed_sse_enabled": true}),
    );
    add(
        &mut res,
        "aws_iam_role",
        "scheduler",
        json!({"name_prefix": m.res(&["scheduler-"]), "assume_role_policy": tf_trust("scheduler.amazonaws.com")}),
    );
    add(
        &mut res,
        "aws_iam_role_policy",
        "scheduler",
        json!({"role": "${aws_iam_role.scheduler.id}", "policy": tf_policy(Role::Scheduler, &|on| match on {
            On::RunnerFunction => vec![json!("${aws_lambda_function.runner.arn}")],
            On::ScheduleDeadLetters => vec![json!("${aws_sqs_queue.schedule_dead_letters.arn}")],
            _ => vec![],
        })}),
    );
    for s in &m.settings.schedules {
        let Ok(expr) = s.eventbridge_expression() else {
            continue;
        };
        let fw = schedule::flexible(s);
        let mut window = json!({"mode": fw["Mode"]});
        if let Some(w) = fw.get("MaximumWindowInMinutes") {
            window["maximum_window_in_minutes"] = w.clone();
        }
        add(
            &mut res,
            "aws_scheduler_schedule",
            &tf_ident(&s.name),
            json!({"name": m.res(&[&s.name]), "description": format!("logferry {} job", s.job),
                   "schedule_expression": expr, "schedule_expression_timezone": s.timezone.name(),
                   "state": "ENABLED", "flexible_time_window": window,
                   "target": {"arn": "${aws_lambda_function.runner.arn}", "role_arn": "${aws_iam_role.scheduler.arn}",
                              "input": schedule::lambda_input(s).to_string().replace("${", "$${"),
                              "retry_policy": {"maximum_retry_attempts": 2, "maximum_event_age_in_seconds": schedule::max_event_age(s)},
                              "dead_letter_config": {"arn": "${aws_sqs_queue.schedule_dead_letters.arn}"}}}),
        );
    }
    add(
        &mut res,
        "aws_sns_topic",
        "alarms",
        json!({"name": m.res(&["alarms"])}),
    );
    for (k, v) in alarms(m)? {
        add(
            &mut res,
            "aws_cloudwatch_metric_alarm",
            &tf_ident(&k),
            tf_alarm(&v["Properties"], "${aws_sns_topic.alarms.arn}"),
        );
    }
    let mut out = providers(m);
    out["variable"] = json!({
        "artifact_bucket": {"type": "string", "description": "S3 bucket holding the Lambda zips (scripts/lambda-build.sh)"},
        "lander_zip": {"type": "string", "default": "logferry-lander.zip"},
        "runner_zip": {"type": "string", "default": "logferry-lambda.zip"},
    });
    out["data"] = json!({"aws_caller_identity": {"current": {}}});
    out["resource"] = Value::Object(res);
    let mut outputs = Map::new();
    for (id, _, _) in &m.tenants {
        outputs.insert(
            format!("writer_role_arn_{}", tf_ident(id)),
            json!({"value": format!("${{aws_iam_role.writer_{}.arn}}", tf_ident(id))}),
        );
    }
    for s in &m.streams {
        outputs.insert(
            format!("stream_arn_{}", tf_ident(&s.name)),
            json!({"value": format!("${{aws_kinesis_stream.{}.arn}}", tf_ident(&s.name))}),
        );
    }
    outputs.insert(
        "lake_bucket".into(),
        json!({"value": "${aws_s3_bucket.lake.id}"}),
    );
    out["output"] = Value::Object(outputs);
    Ok(out)
}

/// A client account of `tenant`, Terraform.
pub fn client_tf(m: &Model, tenant: &str) -> Result<Value> {
    let d = &m.settings.deploy;
    let function = m.res(&["forwarder", tenant]);
    let writer = m.res(&["writer", tenant]);
    let stream = first_stream(m, tenant);
    let mut res = Map::new();
    let mut rules = vec![
        json!({"Id": "abort-incomplete-multipart-uploads", "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}),
    ];
    if let Some(days) = lifecycle_days(d.dlq_retention_days) {
        rules.push(json!({"Id": "dead-letter-retention", "ExpirationInDays": days}));
    }
    tf_bucket(
        &mut res,
        "dead_letters",
        json!(format!(
            "{function}-dlq-${{data.aws_caller_identity.current.account_id}}"
        )),
        rules,
    );
    let writer_arn = format!("arn:aws:iam::${{var.central_account_id}}:role/{writer}");
    let stream_arn = format!(
        "arn:aws:kinesis:{}:${{var.central_account_id}}:stream/{stream}",
        m.region
    );
    add(
        &mut res,
        "aws_cloudwatch_log_group",
        "forwarder",
        json!({"name": format!("/aws/lambda/{function}"), "retention_in_days": 30}),
    );
    add(
        &mut res,
        "aws_iam_role",
        "forwarder",
        json!({"name_prefix": format!("{function}-"), "assume_role_policy": tf_trust("lambda.amazonaws.com")}),
    );
    add(
        &mut res,
        "aws_iam_role_policy",
        "forwarder",
        json!({"role": "${aws_iam_role.forwarder.id}", "policy": tf_policy(Role::ClientForwarder, &|on| match on {
            On::TenantWriterRole => vec![json!(writer_arn.clone())],
            On::DeadLetterObjects => vec![json!("${aws_s3_bucket.dead_letters.arn}/forwarder/*")],
            On::OwnLogs => vec![json!("${aws_cloudwatch_log_group.forwarder.arn}:*")],
            _ => vec![],
        })}),
    );
    add(
        &mut res,
        "aws_lambda_function",
        "forwarder",
        json!({"function_name": function, "runtime": RUNTIME, "handler": "bootstrap",
               "architectures": [arch(m)], "memory_size": d.forwarder_memory_mb, "timeout": 60,
               "role": "${aws_iam_role.forwarder.arn}",
               "s3_bucket": "${var.artifact_bucket}", "s3_key": "${var.forwarder_zip}",
               "environment": {"variables": forwarder_env(m, tenant, json!(stream_arn), json!(writer_arn),
                   json!("s3://${aws_s3_bucket.dead_letters.id}/forwarder"))},
               "logging_config": {"log_format": "Text", "log_group": "${aws_cloudwatch_log_group.forwarder.name}"}}),
    );
    add(
        &mut res,
        "aws_lambda_permission",
        "logs",
        json!({"action": "lambda:InvokeFunction", "function_name": "${aws_lambda_function.forwarder.function_name}",
               "principal": "logs.amazonaws.com", "source_account": "${data.aws_caller_identity.current.account_id}"}),
    );
    add(
        &mut res,
        "aws_cloudwatch_log_account_policy",
        "subscription",
        json!({"policy_name": m.res(&["subscription", tenant]), "policy_type": "SUBSCRIPTION_FILTER_POLICY",
               "scope": "ALL",
               "policy_document": json!({"DestinationArn": "${aws_lambda_function.forwarder.arn}", "FilterPattern": "", "Distribution": "Random"}).to_string(),
               "selection_criteria": format!("LogGroupName NOT IN [\"/aws/lambda/{function}\"]"),
               "depends_on": ["aws_lambda_permission.logs"]}),
    );
    for (id, metric, stat, threshold) in [
        ("errors", "Errors", "Sum", 0.0),
        ("throttles", "Throttles", "Sum", 0.0),
        ("duration", "Duration", "Maximum", 5000.0),
    ] {
        add(
            &mut res,
            "aws_cloudwatch_metric_alarm",
            &format!("forwarder_{id}"),
            json!({"alarm_name": format!("{function} {metric}"), "namespace": "AWS/Lambda", "metric_name": metric,
                   "dimensions": {"FunctionName": "${aws_lambda_function.forwarder.function_name}"},
                   "statistic": stat, "period": 300, "evaluation_periods": 1, "threshold": threshold,
                   "comparison_operator": "GreaterThanThreshold", "treat_missing_data": "notBreaching"}),
        );
    }
    let mut out = providers(m);
    out["variable"] = json!({
        "central_account_id": {"type": "string", "description": "The account of the tenant streams"},
        "artifact_bucket": {"type": "string", "description": "S3 bucket holding logferry-forwarder.zip"},
        "forwarder_zip": {"type": "string", "default": "logferry-forwarder.zip"},
    });
    out["data"] = json!({"aws_caller_identity": {"current": {}}});
    out["resource"] = Value::Object(res);
    out["output"] = json!({
        "forwarder_function_arn": {"value": "${aws_lambda_function.forwarder.arn}"},
        "dead_letter_bucket": {"value": "${aws_s3_bucket.dead_letters.id}"},
    });
    Ok(out)
}
