"""Retention for the log groups Glue creates itself for the lake's jobs and crawlers."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_constructs.alerts import AlertRules, AlertTopic, alarm_above
from cdk_constructs.functions import Unneeded, python_function

CODE = Path(__file__).resolve().parent.parent / "lambda" / "glue_log_retention"


def glue_log_group_created(prefix: str) -> dict[str, object]:
    """CloudTrail's record of a log group created under ``/aws-glue/`` by one of the stage's roles
    (``<prefix>-...``: a job's, a crawler's), whose name holds the stage's prefix.

    Glue names the groups of a role whose security configuration encrypts CloudWatch Logs after
    the role and the configuration (``/aws-glue/jobs-<role>-<configuration>/``: Glue's reference of
    ``JobRun.LogGroupName``), so the lake's are its own. The groups every other job of the account
    shares (``/aws-glue/jobs/output``...) do not hold the prefix and are left alone, even where a
    lake role created them."""
    return {
        "source": ["aws.logs"],
        "detail-type": ["AWS API Call via CloudTrail"],
        "detail": {
            "eventSource": ["logs.amazonaws.com"],
            "eventName": ["CreateLogGroup"],
            "errorCode": [{"exists": False}],
            "requestParameters": {"logGroupName": [{"wildcard": f"/aws-glue/*{prefix}-*"}]},
            "userIdentity": {
                "sessionContext": {
                    "sessionIssuer": {
                        "arn": [{"prefix": f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/{prefix}-"}]
                    }
                }
            },
        },
    }


class GlueLogRetention(Construct):
    """Sets ``retention_days`` on each log group Glue creates for the stage's jobs and crawlers,
    as it creates it: an EventBridge rule on CloudTrail's ``CreateLogGroup``
    (:func:`glue_log_group_created`, one of ``rules``) hands the event to
    ``lambda/glue_log_retention``. A failed call alarms to ``alerts`` at once, though Lambda tries
    it twice more (the function's log says whether a retry set the retention).

    It needs a trail that logs management events in the account (the lake's, or the
    organization's), as every rule on CloudTrail's records does. Groups created before it was
    deployed keep theirs (the runbook sets them).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        retention_days: int,
        rules: AlertRules,
        alerts: AlertTopic,
        logs_key: kms.IKey,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        glue_groups = Stack.of(self).format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws-glue/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.function = python_function(
            self,
            code=CODE,
            handler="glue_log_retention.lambda_handler",
            description=f"Sets {retention_days}-day retention on the log groups Glue creates for {prefix}",
            statements=[iam.PolicyStatement(actions=["logs:PutRetentionPolicy"], resources=[glue_groups])],
            logs_key=logs_key,
            log_retention=log_retention,
            removal_policy=removal_policy,
            timeout=Duration.seconds(30),
            # Lambda's own retries of an event it was handed: a throttled call succeeds on the next
            retry_attempts=2,
            environment={"RETENTION_DAYS": str(retention_days)},
            wildcard_reason="Glue names its log groups at run time, after the role and the security "
            "configuration, under /aws-glue/; the rule hands the function the stage's alone.",
            unneeded=Unneeded(
                dead_letter="An event whose three calls failed has its log group's name in the "
                "function's log, and the errors alarm says to look there; the group can be set by "
                "hand (runbook), so a queue would keep nothing else.",
                reserved_concurrency="Runs once per log group Glue creates, a handful per stage; "
                "reserving concurrency would fail deployment in new accounts whose limit is 10.",
                vpc="Calls only CloudWatch Logs' PutRetentionPolicy over its public TLS endpoint and "
                "handles no lake data; a VPC would add endpoints without reducing exposure.",
                tracing="One control-plane call per log group, itself in the trail; an X-Ray trace "
                "would add nothing to the function's log line.",
            ),
        )
        self.rule = rules.invoke(
            "GlueLogGroupCreatedRule",
            description=f"A log group Glue created for {prefix}: to the function that sets its retention",
            pattern=glue_log_group_created(prefix),
            function=self.function,
        )
        self.alarm = alarm_above(
            self,
            "ErrorsAlarm",
            self.function.metric_errors(period=Duration.minutes(5), statistic="Sum"),
            threshold=0,
            description=f"{prefix}: the retention of a log group Glue created could not be set (see "
            "the function's log for the group; runbook)",
        )
        alerts.notify_on(self.alarm)
