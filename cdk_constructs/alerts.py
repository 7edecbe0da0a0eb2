"""The stage's alert topic (KMS-encrypted SNS, TLS-only, optional e-mail subscription), the alarms
and rules that publish to it, and the account's cost budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jsii
from aws_cdk import ArnFormat, Aws, Duration, IStableListProducer, Lazy, Stack
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

from cdk_constructs.nag import acknowledge
from cdk_constructs.trust import for_this_account


class AlertTopic(Construct):
    """Where every alarm, failed pipeline run and security finding of the lake is published (the
    lake's alerts), or, with ``event_rules=False``, the notices of runs that succeeded.

    :param master_key: key that encrypts messages at rest; its policy must let CloudWatch and
        EventBridge use it (:class:`~cdk_constructs.keys.LakeKeys` does for its logs key).
    :param email: address subscribed to the topic. Default: none (subscribe later).
    :param event_rules: let EventBridge rules of this account publish. Default: ``True``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        master_key: kms.IKey,
        display_name: str,
        email: str | None = None,
        event_rules: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        self.master_key = master_key
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name=display_name,
            master_key=master_key,
            enforce_ssl=True,
        )
        # EventBridge rules of any stack in this account (job failures, data-quality results,
        # Macie findings) publish here; granting by account keeps later stacks from editing this
        # policy and so from creating a reference back to them.
        if event_rules:
            self.topic.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="AllowEventBridgeRulesOfThisAccount",
                    principals=[iam.ServicePrincipal("events.amazonaws.com")],
                    actions=["sns:Publish"],
                    resources=[self.topic.topic_arn],
                    conditions=for_this_account(),
                )
            )
        if email is not None:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

    def reference(self, scope: Construct, construct_id: str) -> sns.ITopic:
        """The topic for a later stack: publishing needs no change to the topic's policy."""
        return sns.Topic.from_topic_attributes(
            scope, construct_id, topic_arn=self.topic.topic_arn, key_arn=self.master_key.key_arn
        )

    def alarm_action(self) -> cloudwatch.IAlarmAction:
        return cw_actions.SnsAction(self.topic)

    def notify_on(self, *alarms: cloudwatch.Alarm) -> None:
        """Publish the alarm and its recovery to the topic."""
        for alarm in alarms:
            alarm.add_alarm_action(self.alarm_action())
            alarm.add_ok_action(self.alarm_action())


class CostBudget(Construct):
    """A monthly cost budget of the account (AWS Budgets) that publishes to an :class:`AlertTopic`
    when the month's spend passes 80 % and 100 % of ``limit_usd``, and when AWS forecasts that it
    will pass 100 %.

    Budgets publishes as ``budgets.amazonaws.com``: the topic's policy lets it for budgets of this
    account (the statement of "Creating an Amazon SNS topic for budget notifications"), and the
    topic's key lets it encrypt for SNS topics of this account and region, which is what the
    encryption context SNS gives KMS names (``aws:sns:topicArn``). The topic's own ARN cannot be
    named there: the topic refers to the key, and the key policy would refer back.

    Credits and refunds are left out of the spend, so that promotional credits do not hide it.

    :param name: the budget's name, unique in the account.
    """

    #: (what is compared, percentage of the limit), one notification each.
    THRESHOLDS = (("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100))

    def __init__(
        self, scope: Construct, construct_id: str, *, name: str, limit_usd: int, alerts: AlertTopic
    ) -> None:
        super().__init__(scope, construct_id)
        topic = alerts.topic
        principal = iam.ServicePrincipal("budgets.amazonaws.com")
        allowed = topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowBudgetsOfThisAccount",
                principals=[principal],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions=for_this_account(f"arn:{Aws.PARTITION}:budgets::{Aws.ACCOUNT_ID}:*"),
            )
        )
        alerts.master_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowBudgetsToUseTopicKey",
                principals=[principal],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringLike": {
                        "kms:EncryptionContext:aws:sns:topicArn": f"arn:{Aws.PARTITION}:sns:{Aws.REGION}:{Aws.ACCOUNT_ID}:*"
                    }
                },
            )
        )
        subscriber = budgets.CfnBudget.SubscriberProperty(address=topic.topic_arn, subscription_type="SNS")
        self.budget = budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=name,
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=limit_usd, unit="USD"),
                cost_types=budgets.CfnBudget.CostTypesProperty(include_credit=False, include_refund=False),
            ),
            notifications_with_subscribers=[
                budgets.CfnBudget.NotificationWithSubscribersProperty(
                    notification=budgets.CfnBudget.NotificationProperty(
                        notification_type=compared,
                        comparison_operator="GREATER_THAN",
                        threshold=percent,
                        threshold_type="PERCENTAGE",
                    ),
                    subscribers=[subscriber],
                )
                for compared, percent in self.THRESHOLDS
            ],
        )
        if allowed.policy_dependable is not None:
            self.budget.node.add_dependency(allowed.policy_dependable)


def rule_invocations(rule_name: str) -> cloudwatch.Metric:
    """The targets an EventBridge rule invoked (the notices or alerts it sent) per hour: the
    ``Invocations`` of ``AWS/Events`` under the rule's name."""
    return cloudwatch.Metric(
        namespace="AWS/Events",
        metric_name="Invocations",
        dimensions_map={"RuleName": rule_name},
        statistic="Sum",
        period=Duration.hours(1),
    )


#: The longest alarm name CloudWatch accepts (``PutMetricAlarm``'s ``AlarmName``).
MAX_ALARM_NAME = 255


def alarm_name(scope: Construct, construct_id: str) -> str:
    """The name of the alarm ``construct_id`` under ``scope``: its top-level stack's name, then the
    construct ids of its path below that stack, nested stacks left out, joined by ``-`` (the
    trailing ``Alarm`` dropped), e.g. ``lake-prd-processing-Orders-PipelineFailed``.

    Readable where an alarm is read (its notification's subject, the console), unique in the
    account and region as the stack names are, and known at synthesis: another stack, the
    dashboard's, builds its ARN from it instead of importing one output per alarm from the stack
    that holds it (CloudFormation's 200 outputs a stack would otherwise cap the datasets)."""
    stack = Stack.of(scope)
    while stack.nested_stack_parent is not None:
        stack = stack.nested_stack_parent
    ids: list[str] = []
    node: IConstruct | None = scope
    while node is not None and node is not stack:
        if not (isinstance(node, Stack) and node.nested):
            ids.append(node.node.id)
        node = node.node.scope
    ids.reverse()
    last = construct_id.removesuffix("Alarm") or construct_id
    name = "-".join([stack.stack_name, *ids, last])
    if len(name) > MAX_ALARM_NAME:
        raise ValueError(
            f"alarm name {name!r} has {len(name)} characters, over CloudWatch's {MAX_ALARM_NAME}"
        )
    return name


def alarm_arn(scope: Construct, alarm: cloudwatch.Alarm) -> str:
    """``alarm``'s ARN as ``scope``'s stack writes it: from its name (:func:`alarm_name`), with no
    reference to the stack that holds it."""
    cfn = alarm.node.default_child
    assert isinstance(cfn, cloudwatch.CfnAlarm) and isinstance(cfn.alarm_name, str)
    return Stack.of(scope).format_arn(
        service="cloudwatch",
        resource="alarm",
        resource_name=cfn.alarm_name,
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def alarm_above(
    scope: Construct,
    construct_id: str,
    metric: cloudwatch.IMetric,
    *,
    threshold: float,
    description: str,
    evaluation_periods: int = 1,
    comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    datapoints_to_alarm: int | None = None,
    missing_data: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
) -> cloudwatch.Alarm:
    """An alarm when ``metric`` exceeds ``threshold`` (or meets it as ``comparison`` says); no data
    (no traffic) is not a breach, unless ``missing_data`` says otherwise."""
    return cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_name=alarm_name(scope, construct_id),
        metric=metric,
        threshold=threshold,
        evaluation_periods=evaluation_periods,
        datapoints_to_alarm=datapoints_to_alarm,
        alarm_description=description,
        comparison_operator=comparison,
        treat_missing_data=missing_data,
    )


def alarm_below(
    scope: Construct, construct_id: str, metric: cloudwatch.IMetric, *, threshold: float, description: str
) -> cloudwatch.Alarm:
    """An alarm when ``metric`` falls below ``threshold``; no data (no traffic) is not a breach."""
    return alarm_above(
        scope,
        construct_id,
        metric,
        threshold=threshold,
        description=description,
        comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
    )


def alarm_without(
    scope: Construct, construct_id: str, metric: cloudwatch.Metric, *, hours: int, description: str
) -> cloudwatch.Alarm:
    """An alarm when ``metric``, a count, has been below 1 in each of the last ``hours`` hours: no
    data is a breach here, since what it watches for is nothing happening.

    A new alarm would find those hours empty at once (before the deployment nothing ran), so it
    warms up first: it starts to evaluate ``hours`` after it is created or changed (CloudWatch's
    warm-up lasts 2 days at most)."""
    alarm = alarm_above(
        scope,
        construct_id,
        metric.with_(period=Duration.hours(1), statistic="Sum"),
        threshold=1,
        description=description,
        evaluation_periods=hours,
        datapoints_to_alarm=hours,
        comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        missing_data=cloudwatch.TreatMissingData.BREACHING,
    )
    cfn = alarm.node.default_child
    assert isinstance(cfn, cloudwatch.CfnAlarm)
    cfn.warm_up_configuration = cloudwatch.CfnAlarm.WarmUpConfigurationProperty(
        warm_up_period_duration_in_minutes=min(hours * 60, MAX_WARM_UP_MINUTES),
        only_start_evaluating_after_warm_up_period_ends=True,
    )
    return alarm


#: CloudWatch's longest alarm warm-up (``WarmUpPeriodDurationInMinutes``): 2 days.
MAX_WARM_UP_MINUTES = 2880


class WatchedCalls(NamedTuple):
    """Management calls that alert when they name one of the lake's resources."""

    construct_id: str
    what: str
    #: The prefix of the calls' ``eventSource`` (``<service>.amazonaws.com``), which is also
    #: EventBridge's ``source`` for them (``aws.<service>``: Macie's calls are ``macie2``).
    service: str
    #: Event names, or EventBridge matchers such as ``{"prefix": "UpdateFunctionCode"}`` (Lambda
    #: names its events with the API's version: ``UpdateFunctionCode20150331v2``).
    calls: tuple[str | dict[str, str], ...]
    #: The request parameter that names the resource, and the names it may take (None: any):
    #: each a name, or an EventBridge matcher such as ``{"prefix": "lake-sbx-"}``.
    parameter: str | None = None
    names: tuple[str | dict[str, str], ...] = ()
    #: Other request parameters a call may name the resource by instead (an ARN where
    #: ``parameter`` is a name), each with the names it may take.
    also: tuple[tuple[str, tuple[str | dict[str, str], ...]], ...] = ()
    #: Only calls made outside a deployment, by anyone but the CDK execution role (and the roles
    #: :meth:`AlertRules.watch` is told make such calls in their normal work).
    outside_deployments: bool = False
    #: Only calls made by a person, not by a service on a caller's behalf (CloudTrail's
    #: ``userIdentity.invokedBy``: Firehose and Redshift create grants on the keys they use).
    by_people: bool = False
    #: What the calls do, for the rule's description (default: the calls' names).
    summary: str | None = None
    #: A request parameter naming what within the resource the call acted on (an object's key),
    #: which the message gives too.
    item: str | None = None


@jsii.implements(IStableListProducer)
class _RuleArns:
    """The ARNs of ``rules`` as the list stands at synthesis."""

    def __init__(self, rules: list[events.CfnRule]) -> None:
        self._rules = rules

    def produce(self) -> list[str]:
        return [rule.attr_arn for rule in self._rules]


def _nested(path: tuple[str, ...], leaf: object) -> dict[str, object]:
    """``{"a": {"b": leaf}}`` for the path ``("a", "b")``."""
    node: object = leaf
    for key in reversed(path):
        node = {key: node}
    assert isinstance(node, dict)
    return node


class AlertRules(Construct):
    """EventBridge rules that turn service events into readable messages on the alert topic (and
    hand a few to a function of the lake: :meth:`invoke`).

    Undeliverable alerts (a key or topic policy broken by hand) land in an encrypted dead-letter
    queue after a day of retries instead of vanishing, and a message waiting there alarms (to the
    same topic: CloudWatch publishes as another principal than EventBridge, and the alarm shows
    in the console either way).

    :param key: encrypts the dead-letter queue (the logs key).
    """

    def __init__(self, scope: Construct, construct_id: str, *, topic: sns.ITopic, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self._topic = topic
        self.dead_letter_queue = sqs.Queue(
            self,
            "Dlq",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            self.dead_letter_queue,
            "This queue is itself the dead-letter queue of the alert rules; a DLQ of a DLQ would "
            "only move the same undeliverable alerts once more.",
            "AwsSolutions-SQS3",
            "Serverless-SQSRedrivePolicy",
        )
        self.undelivered_alarm = alarm_above(
            self,
            "UndeliveredAlarm",
            self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"
            ),
            threshold=0,
            description="alerts that EventBridge could not deliver to the alert topic wait in this "
            "dead-letter queue (check the topic's policy and its key's)",
        )
        self.undelivered_alarm.add_alarm_action(cw_actions.SnsAction(topic))
        self.undelivered_alarm.add_ok_action(cw_actions.SnsAction(topic))
        self.rules: list[events.CfnRule] = []
        # One statement for every rule of the group, added as it is (an SQS policy holds at most
        # 20 statements: SQS's policy quotas), the rules' ARNs filled in at synthesis.
        self.dead_letter_queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlertRulesOfThisGroup",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.dead_letter_queue.queue_arn],
                conditions={"ArnEquals": {"aws:SourceArn": Lazy.list(_RuleArns(self.rules))}},
            )
        )

    def add(
        self,
        construct_id: str,
        *,
        description: str,
        pattern: dict[str, object],
        template: str,
        paths: dict[str, str],
        topic: sns.ITopic | None = None,
        name: str | None = None,
    ) -> events.CfnRule:
        """A rule matching ``pattern`` that publishes ``template`` (``<name>`` filled from ``paths``)
        to the alert topic, or to ``topic`` (the notices'); ``name`` names the rule, for a metric."""
        return self._rule(
            construct_id,
            description=description,
            pattern=pattern,
            target_id="AlertTopic" if topic is None else "Topic",
            arn=(topic or self._topic).topic_arn,
            input_transformer=events.CfnRule.InputTransformerProperty(
                input_paths_map=paths, input_template=template
            ),
            name=name,
        )

    def invoke(
        self, construct_id: str, *, description: str, pattern: dict[str, object], function: lambda_.IFunction
    ) -> events.CfnRule:
        """A rule matching ``pattern`` that hands the event to ``function`` (asynchronously), with
        the same retries and dead-letter queue as the alerts, and leave to invoke it for this rule
        alone."""
        rule = self._rule(
            construct_id,
            description=description,
            pattern=pattern,
            target_id="Function",
            arn=function.function_arn,
        )
        lambda_.CfnPermission(
            self,
            f"{construct_id}Invoke",
            action="lambda:InvokeFunction",
            function_name=function.function_arn,
            principal="events.amazonaws.com",
            source_arn=rule.attr_arn,
        )
        return rule

    def _rule(
        self,
        construct_id: str,
        *,
        description: str,
        pattern: dict[str, object],
        target_id: str,
        arn: str,
        input_transformer: events.CfnRule.InputTransformerProperty | None = None,
        name: str | None = None,
    ) -> events.CfnRule:
        """A rule of this group with its one target: a day of retries, then the dead-letter queue,
        whose policy lets every rule of the group send."""
        rule = events.CfnRule(
            self,
            construct_id,
            name=name,
            description=description,
            event_pattern=pattern,
            targets=[
                events.CfnRule.TargetProperty(
                    id=target_id,
                    arn=arn,
                    input_transformer=input_transformer,
                    dead_letter_config=events.CfnRule.DeadLetterConfigProperty(
                        arn=self.dead_letter_queue.queue_arn
                    ),
                    retry_policy=events.CfnRule.RetryPolicyProperty(
                        maximum_event_age_in_seconds=86400, maximum_retry_attempts=20
                    ),
                )
            ],
        )
        self.rules.append(rule)
        return rule

    def watch(self, watched: WatchedCalls, *, deployer: str, expected: Sequence[str] = ()) -> events.CfnRule:
        """A successful call of ``watched.calls`` (whose request names one of ``watched.names``,
        made outside a deployment if so watched), published to the alert topic. EventBridge gets
        these management calls from CloudTrail when a trail logs management events in the account
        ("AWS API Call via CloudTrail" needs one, EventBridge's guide): the lake's own
        (``features.cloudtrail``) or the organization's.

        :param deployer: the CDK execution role, whose calls are the deployments'.
        :param expected: roles that make such calls in their normal work (a custom resource's
            function), left out with the deployer."""
        w = watched
        detail: dict[str, object] = {
            "eventSource": [f"{w.service}.amazonaws.com"],
            "eventName": list(w.calls),
            "errorCode": [{"exists": False}],  # the call succeeded
        }
        paths = {
            "call": "$.detail.eventName",
            "caller": "$.detail.userIdentity.arn",
            "time": "$.detail.eventTime",
        }
        subject = w.what
        if w.parameter is not None:
            named = [{w.parameter: list(w.names)}, *({p: list(n)} for p, n in w.also)]
            detail["requestParameters"] = named[0] if len(named) == 1 else {"$or": named}
            paths["name"] = f"$.detail.requestParameters.{w.parameter}"
            subject += " <name>"
        call = "<call>"
        if w.item is not None:
            paths["item"] = f"$.detail.requestParameters.{w.item}"
            call += " of <item>"
        where = ""
        identity: dict[str, object] = {"invokedBy": [{"exists": False}]} if w.by_people else {}
        if w.outside_deployments:
            # A caller without a session issuer (an IAM user, the root user) is outside a
            # deployment too: anything-but does not match a field that is absent. Each branch
            # holds the whole identity condition (a field's path appears once in a branch).
            issuer = ("sessionContext", "sessionIssuer", "arn")
            detail["$or"] = [
                {"userIdentity": {**_nested(issuer, [{"anything-but": [deployer, *expected]}]), **identity}},
                {"userIdentity": {**_nested(issuer, [{"exists": False}]), **identity}},
            ]
            where = ", outside a deployment"
        elif identity:
            detail["userIdentity"] = identity
        return self.add(
            w.construct_id,
            description=f"{w.what}: {w.summary or ' or '.join(map(str, w.calls))}{where}, to the alert topic",
            pattern={
                "source": [f"aws.{w.service}"],
                "detail-type": ["AWS API Call via CloudTrail"],
                "detail": detail,
            },
            template=f'"{subject}: {call} by <caller> at <time>{where}"',
            paths=paths,
        )
