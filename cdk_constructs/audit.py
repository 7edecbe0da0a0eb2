"""Audit: a CloudTrail trail over the lake, its hourly check, the alarm on IAM changes counted in its
log group, and the Athena table and queries that read it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import ArnFormat, Aws, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.alerts import alarm_above, alarm_without
from cdk_constructs.catalog import TEXT_OUTPUT, database, external_table
from cdk_constructs.functions import Unneeded, python_function
from cdk_constructs.nag import acknowledge_regulatory
from cdk_constructs.state_machines import schedule
from datalake import sql

TRAIL_PREFIX = "cloudtrail"
TRAIL_CHECK_CODE = Path(__file__).resolve().parent.parent / "lambda" / "trail_check"
#: Namespace and service of the trail check's EMF metric (Powertools adds ``service`` as a dimension).
TRAIL_CHECK_NAMESPACE = "DataLake/Audit"
TRAIL_CHECK_SERVICE = "trail-check"
#: No check passed for this long: the alarm (the check runs every hour).
TRAIL_CHECK_ALARM_HOURS = 2
#: First day partition projection enumerates (a trail has nothing older).
PROJECTION_START = "2025/01/01"

CLOUDTRAIL_COLUMNS = (
    ("eventversion", "string", "Version of the event format."),
    (
        "useridentity",
        "struct<type:string,principalid:string,arn:string,accountid:string,invokedby:string,"
        "accesskeyid:string,username:string,onbehalfof:struct<userid:string,identitystorearn:string>,"
        "sessioncontext:struct<attributes:struct<mfaauthenticated:string,creationdate:string>,"
        "sessionissuer:struct<type:string,principalid:string,arn:string,accountid:string,username:string>,"
        "sourceidentity:string,ec2roledelivery:string>>",
        "Who made the request.",
    ),
    ("eventtime", "string", "When (UTC, ISO-8601)."),
    ("eventsource", "string", "Service endpoint, e.g. s3.amazonaws.com."),
    ("eventname", "string", "API action."),
    ("awsregion", "string", "Region of the request."),
    ("sourceipaddress", "string", "Caller's IP address or service name."),
    ("useragent", "string", "Caller's user agent."),
    ("errorcode", "string", "Error code when the request failed."),
    ("errormessage", "string", "Error message when the request failed."),
    ("requestparameters", "string", "Request parameters (JSON)."),
    ("responseelements", "string", "Response elements (JSON)."),
    ("additionaleventdata", "string", "Additional data (JSON)."),
    ("requestid", "string", "Request id."),
    ("eventid", "string", "Event id."),
    ("readonly", "string", "Whether the action only reads."),
    ("resources", "array<struct<arn:string,accountid:string,type:string>>", "Resources acted on."),
    ("eventtype", "string", "AwsApiCall, AwsServiceEvent..."),
    ("apiversion", "string", "API version."),
    ("recipientaccountid", "string", "Account that received the event."),
    ("serviceeventdetails", "string", "Service event details (JSON)."),
    ("sharedeventid", "string", "Shared event id."),
    ("vpcendpointid", "string", "VPC endpoint the request came through."),
    ("eventcategory", "string", "Management or Data."),
    (
        "tlsdetails",
        "struct<tlsversion:string,ciphersuite:string,clienthostheader:string>",
        "TLS of the request.",
    ),
)
CLOUDTRAIL_STORAGE: dict[str, object] = {
    "input_format": "com.amazon.emr.cloudtrail.CloudTrailInputFormat",
    "output_format": TEXT_OUTPUT,
    "serde_info": glue.CfnTable.SerdeInfoProperty(
        serialization_library="org.apache.hive.hcatalog.data.JsonSerDe"
    ),
}


class AuditTrail(Construct):
    """A multi-region trail: management events plus S3 data events on the lake's buckets.

    Log files are encrypted with ``key`` (CloudTrail SSE-KMS, scoped to this account's trails by
    encryption context), validated (digest files), delivered under ``cloudtrail/`` of the logs
    bucket and to a KMS-encrypted log group for alarms.

    :param data_buckets: buckets whose object reads and writes are logged (the lake's data).
    :param written_buckets: buckets whose object writes alone are logged (default: none): the CDK
        assets bucket, where the Glue jobs' scripts are read from at every run.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        bucket: s3.IBucket,
        key: kms.Key,
        data_buckets: Sequence[s3.IBucket],
        written_buckets: Sequence[s3.IBucket] = (),
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.name = name
        self.data_buckets = list(data_buckets)
        self.written_buckets = list(written_buckets)
        trail_arn = Stack.of(self).format_arn(
            service="cloudtrail",
            resource="trail",
            resource_name=name,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        # https://docs.aws.amazon.com/awscloudtrail/latest/userguide/create-kms-key-policy-for-cloudtrail.html
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudTrailToEncryptLogs",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceArn": trail_arn},
                    "StringLike": {
                        "kms:EncryptionContext:aws:cloudtrail:arn": f"arn:{Aws.PARTITION}:cloudtrail:*:{Aws.ACCOUNT_ID}:trail/*"
                    },
                },
            )
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudTrailToDescribeKey",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["kms:DescribeKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceArn": trail_arn}},
            )
        )
        self.log_group = logs.LogGroup(
            self, "Logs", encryption_key=key, retention=log_retention, removal_policy=removal_policy
        )
        # The bucket policy of CloudTrail's guide ("Amazon S3 bucket policy for CloudTrail"): only
        # this trail may check the bucket's ACL and deliver, under its prefix for this account. The
        # Trail construct's own statements name no trail, so it is handed the bucket by reference,
        # to which it cannot add them.
        trail_only = {"aws:SourceArn": trail_arn}
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailAclCheck",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["s3:GetBucketAcl"],
                resources=[bucket.bucket_arn],
                conditions={"StringEquals": trail_only},
            )
        )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailWrite",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{TRAIL_PREFIX}/AWSLogs/{Aws.ACCOUNT_ID}/*")],
                conditions={"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", **trail_only}},
            )
        )
        self.trail = cloudtrail.Trail(
            self,
            "Trail",
            trail_name=name,
            bucket=s3.Bucket.from_bucket_attributes(
                self, "Delivery", bucket_arn=bucket.bucket_arn, bucket_name=bucket.bucket_name
            ),
            s3_key_prefix=TRAIL_PREFIX,
            encryption_key=key,
            enable_file_validation=True,
            is_multi_region_trail=True,
            include_global_service_events=True,
            management_events=cloudtrail.ReadWriteType.ALL,
            send_to_cloud_watch_logs=True,
            cloud_watch_log_group=self.log_group,
        )
        self.trail.add_s3_event_selector(
            [cloudtrail.S3EventSelector(bucket=b) for b in data_buckets],
            include_management_events=False,
            read_write_type=cloudtrail.ReadWriteType.ALL,
        )
        if self.written_buckets:
            self.trail.add_s3_event_selector(
                [cloudtrail.S3EventSelector(bucket=b) for b in self.written_buckets],
                include_management_events=False,
                read_write_type=cloudtrail.ReadWriteType.WRITE_ONLY,
            )
        assert bucket.policy is not None
        self.trail.node.add_dependency(bucket.policy)  # CloudTrail checks the policy on creation
        logs_role = self.trail.node.find_child("LogsRole")
        acknowledge_regulatory(
            logs_role.node.find_child("DefaultPolicy"),
            "IAMNoInlinePolicy",
            "The CDK Trail construct creates CloudTrail's delivery role with this inline policy, which "
            "allows only CreateLogStream and PutLogEvents on the trail's own log group.",
        )


def _object_prefixes(buckets: Sequence[s3.IBucket]) -> str:
    """``arn:aws:s3:::<bucket>/`` of each bucket, comma-separated, as the trail check reads them
    (empty for none: ``Fn.join`` refuses an empty list)."""
    return Fn.join(",", [f"{b.bucket_arn}/" for b in buckets]) if buckets else ""


class TrailCheck(Construct):
    """Checks every hour that ``trail`` logs and delivers (log files and digest files to S3, events
    to CloudWatch Logs) and still logs every management event, its data buckets' S3 data events
    and its written buckets' object writes, with ``lambda/trail_check``, and alarms when no check
    passed for :data:`TRAIL_CHECK_ALARM_HOURS` hours: the trail stopped, a delivery late (a bucket
    or key policy that refuses CloudTrail, a bucket that refuses its uploads), or the check itself
    not running. CloudTrail publishes no metric of its own deliveries.

    :param schedule_group: the schedule group of the lake's schedules (a dropped start alarms there).
    :param powertools_layer: the public Powertools layer (:func:`~cdk_constructs.functions.powertools_layer`).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        trail: AuditTrail,
        schedule_group: str,
        powertools_layer: lambda_.ILayerVersion,
        logs_key: kms.IKey,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            code=TRAIL_CHECK_CODE,
            handler="trail_check.lambda_handler",
            description=f"Checks every hour that the trail {trail.name} logs and delivers",
            statements=[
                iam.PolicyStatement(
                    actions=["cloudtrail:GetTrailStatus", "cloudtrail:GetEventSelectors"],
                    resources=[trail.trail.trail_arn],
                )
            ],
            logs_key=logs_key,
            log_retention=log_retention,
            removal_policy=removal_policy,
            timeout=Duration.minutes(1),
            # a check that failed publishes nothing, which the alarm counts; the next is an hour away
            retry_attempts=0,
            layers=[powertools_layer],
            environment={
                "TRAIL_NAME": trail.name,
                "DATA_EVENT_PREFIXES": _object_prefixes(trail.data_buckets),
                "WRITE_EVENT_PREFIXES": _object_prefixes(trail.written_buckets),
                "POWERTOOLS_SERVICE_NAME": TRAIL_CHECK_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": TRAIL_CHECK_NAMESPACE,
            },
            unneeded=Unneeded(
                dead_letter="The hourly schedule's invocation carries nothing to keep: a check that "
                "failed publishes no TrailChecksPassed, which the trail check's alarm counts as a "
                "failed check.",
                reserved_concurrency="Runs once an hour; reserving concurrency would fail deployment in "
                "new accounts whose limit is 10.",
                vpc="Calls only CloudTrail's GetTrailStatus over its public TLS endpoint and handles no "
                "lake data; a VPC would add endpoints without reducing exposure.",
                tracing="One control-plane call an hour, itself in the trail, and a log line of what it "
                "found; an X-Ray trace would add nothing to either.",
            ),
        )
        self.schedule = schedule(
            self,
            "Schedule",
            name=f"{trail.name}-check",
            target_arn=self.function.function_arn,
            action="lambda:InvokeFunction",
            expression="rate(1 hour)",
            what=f"the check of the trail {trail.name}",
            group=schedule_group,
        )
        self.alarm = alarm_without(
            self,
            "Alarm",
            cloudwatch.Metric(
                namespace=TRAIL_CHECK_NAMESPACE,
                metric_name="TrailChecksPassed",
                dimensions_map={"service": TRAIL_CHECK_SERVICE, "trail": trail.name},
            ),
            hours=TRAIL_CHECK_ALARM_HOURS,
            description=f"the trail {trail.name} has not logged or delivered (log files, digest "
            f"files, CloudWatch Logs) as its hourly check expects for {TRAIL_CHECK_ALARM_HOURS} "
            "hours, or the check has not run: the check's log group says which",
        )


#: IAM calls that change what one of the lake's roles may do or who may assume it (by ``roleName``).
IAM_ROLE_CALLS = (
    "AttachRolePolicy",
    "DetachRolePolicy",
    "PutRolePolicy",
    "DeleteRolePolicy",
    "UpdateAssumeRolePolicy",
    "PutRolePermissionsBoundary",
    "DeleteRolePermissionsBoundary",
    "DeleteRole",
    # a role's tags are permissions too: RedshiftDbRoles names the warehouse roles it signs in as
    "TagRole",
    "UntagRole",
)
#: IAM calls that change one of the lake's managed policies or give it to another principal (by
#: ``policyArn``; ``AttachRolePolicy`` of a lake policy to a role outside the lake too).
IAM_POLICY_CALLS = (
    "CreatePolicyVersion",
    "SetDefaultPolicyVersion",
    "DeletePolicy",
    "AttachUserPolicy",
    "AttachGroupPolicy",
)
#: CloudWatch Logs' longest filter pattern (``PutMetricFilter``'s ``filterPattern``).
MAX_FILTER_PATTERN = 1024


def iam_change_pattern(prefix: str, deployer: str) -> str:
    """A CloudWatch Logs filter pattern for a successful IAM call of :data:`IAM_ROLE_CALLS` on a
    role named ``<prefix>-...``, or of :data:`IAM_POLICY_CALLS` on a policy named so, by anyone
    but ``deployer`` (the CDK execution role): an IAM user or the root user, which have no session
    issuer, included. Every role and managed policy of the lake is named so, by this app or by
    CloudFormation after its stack (``tests/test_templates.py`` holds the app to it); regexes,
    as CloudWatch Logs' filter syntax allows two of them in a JSON pattern."""
    issuer = "$.userIdentity.sessionContext.sessionIssuer.arn"
    calls = " || ".join(f'($.eventName = "{c}")' for c in (*IAM_ROLE_CALLS, *IAM_POLICY_CALLS))
    return (
        '{ ($.eventSource = "iam.amazonaws.com") && '
        f"({calls}) && "
        f"(($.requestParameters.roleName = %^{prefix}-%) || ($.requestParameters.policyArn = %policy/{prefix}-%)) && "
        "($.errorCode NOT EXISTS) && "
        f'(({issuer} != "{deployer}") || ({issuer} NOT EXISTS)) }}'
    )


class IamChanges(Construct):
    """An alarm on an IAM change to the lake's roles or managed policies outside a deployment
    (:func:`iam_change_pattern`), counted by a metric filter on ``trail``'s log group, and a saved
    Logs Insights query that lists them.

    IAM is a global service: its calls reach EventBridge in us-east-1 only, where the lake's
    other watched calls (EventBridge rules in its own region) cannot see them. A multi-region
    trail that logs global service events delivers them to its log group, in the lake's region.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, trail: AuditTrail, prefix: str, deployer: str
    ) -> None:
        super().__init__(scope, construct_id)
        self.filter = logs.MetricFilter(
            self,
            "Filter",
            log_group=trail.log_group,
            filter_pattern=logs.FilterPattern.literal(iam_change_pattern(prefix, deployer)),
            metric_namespace=TRAIL_CHECK_NAMESPACE,
            metric_name="LakeIamChanges",
            metric_value="1",
        )
        self.query = logs.QueryDefinition(
            self,
            "Query",
            query_definition_name=f"{prefix}/iam-changes",
            log_groups=[trail.log_group],
            query_string=logs.QueryString(
                fields=[
                    "eventTime",
                    "eventName",
                    "requestParameters.roleName",
                    "requestParameters.policyArn",
                    "userIdentity.arn",
                    "sourceIPAddress",
                    "errorCode",
                ],
                filter_statements=[
                    'eventSource = "iam.amazonaws.com"',
                    f"(requestParameters.roleName like /^{prefix}-/ or requestParameters.policyArn like /policy\\/{prefix}-/)",
                ],
                sort="eventTime desc",
            ),
        )
        self.alarm = alarm_above(
            self,
            "Alarm",
            self.filter.metric(statistic="Sum", period=Duration.minutes(5)),
            threshold=0,
            description=f"an IAM role or managed policy of {prefix} was changed outside a deployment "
            f"(policies, trust, permissions boundary, deletion): the saved query {prefix}/iam-changes "
            "in CloudWatch Logs Insights lists who changed what",
        )


class AuditQueries(Construct):
    """The ``cloudtrail`` table (partition projection, no crawler) and the audit named queries.

    The queries come from ``sql/audit/*.sql``; ``{{pii_key_regex}}`` becomes a regex of the
    prefixes where PII lives (``pii_prefixes``, ``bucket/key-prefix``), ``{{assets_bucket}}`` the
    CDK assets bucket (``assets_bucket``), whose object writes the trail logs.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        database_name: str,
        trail_bucket_name: str,
        workgroup: athena.CfnWorkGroup,
        pii_prefixes: Sequence[str],
        assets_bucket: str,
        lake_formation: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.database = database(
            self,
            "Database",
            name=database_name,
            description="Audit: the CloudTrail trail of the lake (who read and changed what).",
            location=f"s3://{trail_bucket_name}/{TRAIL_PREFIX}/",
            lake_formation=lake_formation,
        )
        location = (
            f"s3://{trail_bucket_name}/{TRAIL_PREFIX}/AWSLogs/{Aws.ACCOUNT_ID}/CloudTrail/{Aws.REGION}/"
        )
        self.table = external_table(
            self,
            "CloudTrailTable",
            database=database_name,
            name="cloudtrail",
            description="CloudTrail events of this account in this region; partitioned by day (projection).",
            location=location,
            columns=CLOUDTRAIL_COLUMNS,
            partition_keys=[("timestamp", "Day of delivery, yyyy/MM/dd.")],
            parameters={
                "classification": "cloudtrail",
                "projection.enabled": "true",
                "projection.timestamp.type": "date",
                "projection.timestamp.format": "yyyy/MM/dd",
                "projection.timestamp.range": f"{PROJECTION_START},NOW",
                "projection.timestamp.interval": "1",
                "projection.timestamp.interval.unit": "DAYS",
                "storage.location.template": location + "${timestamp}",
            },
            storage=CLOUDTRAIL_STORAGE,
        )
        self.table.node.add_dependency(self.database)
        self.queries: dict[str, athena.CfnNamedQuery] = {}
        values = {"pii_key_regex": sql.regex_for_prefixes(list(pii_prefixes)), "assets_bucket": assets_bucket}
        for query in sql.load("audit"):
            named = athena.CfnNamedQuery(
                self,
                query.name.title().replace("_", ""),
                name=f"audit: {query.name.replace('_', ' ')}",
                description=query.description[:1024],
                database=database_name,
                work_group=workgroup.ref,
                query_string=query.render(values),
            )
            named.node.add_dependency(self.table)
            self.queries[query.name] = named
