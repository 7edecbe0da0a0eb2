"""What every state machine of the lake shares: its schedule, its role, logging and tracing, its
alarms, its failure notice and the retry policy of its tasks (the pipelines', the daily report's).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import ArnFormat, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from cdk_constructs.alerts import alarm_above
from cdk_constructs.keys import key_use_via
from cdk_constructs.trust import service_for_this_account

#: Retries of every state-machine task: exponential backoff with full jitter, capped.
RETRY_INTERVAL = Duration.seconds(30)
RETRY_MAX_DELAY = Duration.minutes(5)


def schedule_state_machine(
    scope: Construct,
    construct_id: str,
    *,
    name: str,
    state_machine: sfn.IStateMachine,
    expression: str,
    what: str,
    group: str,
) -> scheduler.CfnSchedule:
    """An EventBridge Scheduler schedule (UTC) that starts ``state_machine``, with its own role,
    in the schedule group ``group`` (``default`` is the account's)."""
    return schedule(
        scope,
        construct_id,
        name=name,
        target_arn=state_machine.state_machine_arn,
        action="states:StartExecution",
        expression=expression,
        what=what,
        group=group,
    )


def schedule(
    scope: Construct,
    construct_id: str,
    *,
    name: str,
    target_arn: str,
    expression: str,
    what: str,
    group: str,
    action: str | None = None,
    grants: Sequence[iam.PolicyStatement] = (),
    payload: Mapping[str, object] | None = None,
    role_name: str | None = None,
) -> scheduler.CfnSchedule:
    """An EventBridge Scheduler schedule (UTC) in the group ``group`` that calls ``target_arn``
    with ``payload`` (default ``{"trigger": "schedule"}``), retried for an hour. Its own role may
    do ``action`` to ``target_arn`` (``states:StartExecution``, ``lambda:InvokeFunction``), or
    what ``grants`` say (a universal target, ``arn:aws:scheduler:::aws-sdk:<service>:<call>``,
    names an API call, not a resource).

    The L1 ``CfnSchedule``, not the L2 ``Schedule``: the L2's targets grant through the role's
    inline default policy (``IAMNoInlinePolicy`` in the three regulatory packs) unless handed a
    role that takes no grants, and the L2 nests its ``CfnSchedule`` one level deeper, so moving to
    it changes every schedule's logical id: CloudFormation would create each named schedule again
    while the old one still holds its name, and the update would fail."""
    if (action is None) == (not grants):
        raise ValueError(f"{construct_id}: give the schedule's role either an action or grants")
    role = iam.Role(
        scope,
        f"{construct_id}Role",
        role_name=role_name,
        assumed_by=service_for_this_account("scheduler.amazonaws.com"),
        description=f"Starts {what} on its schedule",
    )
    iam.ManagedPolicy(
        scope,
        f"{construct_id}Policy",
        roles=[role],
        statements=[iam.PolicyStatement(actions=[action], resources=[target_arn])]
        if action
        else list(grants),
    )
    return scheduler.CfnSchedule(
        scope,
        construct_id,
        name=name,
        group_name=group,
        description=f"Runs {what} ({expression})",
        schedule_expression=expression,
        schedule_expression_timezone="UTC",
        flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
        target=scheduler.CfnSchedule.TargetProperty(
            arn=target_arn,
            role_arn=role.role_arn,
            input=json.dumps(payload if payload is not None else {"trigger": "schedule"}),
            retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                maximum_event_age_in_seconds=3600, maximum_retry_attempts=5
            ),
        ),
    )


def state_machine_observability() -> iam.PolicyStatement:
    """What a state machine needs for logging to CloudWatch Logs (vended delivery) and X-Ray;
    these APIs support no resource-level permissions."""
    return iam.PolicyStatement(
        actions=[
            "logs:CreateLogDelivery",
            "logs:GetLogDelivery",
            "logs:UpdateLogDelivery",
            "logs:DeleteLogDelivery",
            "logs:ListLogDeliveries",
            "logs:PutResourcePolicy",
            "logs:DescribeResourcePolicies",
            "logs:DescribeLogGroups",
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
            "xray:GetSamplingRules",
            "xray:GetSamplingTargets",
        ],
        resources=["*"],
    )


def alert_publish_statements(topic: sns.ITopic, key: kms.IKey) -> list[iam.PolicyStatement]:
    """Publishing to the KMS-encrypted alert topic: the topic, and its key only through SNS."""
    return [
        iam.PolicyStatement(actions=["sns:Publish"], resources=[topic.topic_arn]),
        key_use_via("sns", [key], ["kms:GenerateDataKey", "kms:Decrypt"]),
    ]


@dataclass(frozen=True)
class LoggedStateMachine:
    state_machine: sfn.StateMachine
    role: iam.Role
    policy: iam.ManagedPolicy


def logged_state_machine(
    scope: Construct,
    *,
    ids: str,
    name: str,
    description: str,
    definition: sfn.IChainable,
    timeout: Duration,
    statements: list[iam.PolicyStatement],
    alert_topic: sns.ITopic,
    logs_key: kms.IKey,
    log_retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
) -> LoggedStateMachine:
    """A traced state machine logging to a KMS-encrypted group, with a role of its own whose one
    managed policy holds ``statements`` plus alert publishing, logging and tracing.

    ``ids`` prefixes the construct ids of the log group, role and policy (``f"{ids}Logs"``...),
    so the logical ids of existing stacks stay as they are.
    """
    log_group = logs.LogGroup(
        scope, f"{ids}Logs", encryption_key=logs_key, retention=log_retention, removal_policy=removal_policy
    )
    role = iam.Role(
        scope,
        f"{ids}Role",
        # The confused-deputy guard of Step Functions' guide ("Creating an IAM role for your state
        # machine"): only this account's state machines in this region may assume the role.
        assumed_by=service_for_this_account(
            "states.amazonaws.com",
            Stack.of(scope).format_arn(
                service="states",
                resource="stateMachine",
                resource_name="*",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            ),
        ),
        description=description,
    )
    state_machine = sfn.StateMachine(
        scope,
        "StateMachine",
        state_machine_name=name,
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        role=role.without_policy_updates(),
        tracing_enabled=True,
        timeout=timeout,
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
    )
    policy = iam.ManagedPolicy(
        scope,
        f"{ids}Policy",
        roles=[role],
        statements=[
            *statements,
            *alert_publish_statements(alert_topic, logs_key),
            state_machine_observability(),
        ],
    )
    state_machine.node.add_dependency(policy)
    return LoggedStateMachine(state_machine, role, policy)


def execution_alarms(
    scope: Construct, state_machine: sfn.StateMachine, *, ids: str, subject: str
) -> list[cloudwatch.Alarm]:
    """Alarms on ``state_machine``'s failed and timed-out executions, at the first in 5 minutes.
    Beside the failure notices a catch publishes, they take what no catch can
    (``States.Runtime``, ``States.DataLimitExceeded``) and the execution's own timeout.

    ``ids`` prefixes the construct ids (``f"{ids}FailedAlarm"``); ``subject`` starts the
    descriptions (``f"{subject} failed"``)."""
    period = Duration.minutes(5)
    return [
        alarm_above(
            scope,
            f"{ids}{cid}",
            metric,
            threshold=0,
            description=f"{subject} {what}",
        )
        for cid, metric, what in (
            ("FailedAlarm", state_machine.metric_failed(period=period), "failed"),
            ("TimedOutAlarm", state_machine.metric_timed_out(period=period), "timed out"),
        )
    ]


def failure_notice(
    scope: Construct,
    *,
    topic: sns.ITopic,
    subject: str,
    summary: str,
    fail_id: str,
    step_path: str | None = None,
) -> tasks.SnsPublish:
    """A ``NotifyFailure`` state: publishes "<summary> failed [at step <step>]: <error> - <cause>.
    Execution: <console link>" (retried), then fails the execution as ``fail_id`` with the caught
    error and its cause as the cause.

    Catches route here with ``result_path="$.error"``; ``step_path`` names the failed step. The
    caught error is not re-raised by name: it is often a reserved ``States.*`` name (a failed Glue
    run is ``States.TaskFailed``), which a Fail state must not raise; the Step Functions
    interpreter the tests run (moto's port of LocalStack's) fails the execution with
    ``States.Runtime`` instead."""
    values = [sfn.JsonPath.string_at(step_path)] if step_path else []
    message = sfn.JsonPath.format(
        f"{summary} failed{' at step {}' if step_path else ''}: {{}} - {{}}. Execution: "
        f"https://console.aws.amazon.com/states/home?region={Aws.REGION}#/v2/executions/details/{{}}",
        *values,
        sfn.JsonPath.string_at("$.error.Error"),
        sfn.JsonPath.string_at("$.error.Cause"),
        sfn.JsonPath.execution_id,
    )
    notify = tasks.SnsPublish(
        scope,
        "NotifyFailure",
        topic=topic,
        subject=subject,
        message=sfn.TaskInput.from_text(message),
        result_path=sfn.JsonPath.DISCARD,
    )
    retry(notify)
    cause = sfn.JsonPath.format(
        "{}: {}", sfn.JsonPath.string_at("$.error.Error"), sfn.JsonPath.string_at("$.error.Cause")
    )
    notify.next(sfn.Fail(scope, fail_id, error=fail_id, cause_path=cause))
    return notify


def execution_token() -> str:
    """The idempotency token of a start call made once per execution: the SHA-256 of the
    execution's ARN (64 hex characters, within Athena's 32 to 128 and Glue's 1 to 255). A retried
    call that the service had in fact carried out (a timeout or a service error after the run was
    created) gets the run it started back instead of starting a second one."""
    return sfn.JsonPath.hash(sfn.JsonPath.string_at("$$.Execution.Id"), "SHA-256")


def retry(state: sfn.TaskStateBase, errors: list[str] | None = None, max_attempts: int = 3) -> None:
    state.add_retry(
        errors=errors or ["States.ALL"],
        interval=RETRY_INTERVAL,
        backoff_rate=2,
        max_attempts=max_attempts,
        max_delay=RETRY_MAX_DELAY,
        jitter_strategy=sfn.JitterType.FULL,
    )
