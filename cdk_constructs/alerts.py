"""The stage's alert topic: KMS-encrypted SNS, TLS-only, optional e-mail subscription."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct


class AlertTopic(Construct):
    """Where every alarm, failed pipeline run and security finding of the lake is published.

    :param master_key: key that encrypts messages at rest; its policy must let CloudWatch and
        EventBridge use it (:class:`~cdk_constructs.keys.LakeKeys` does for its logs key).
    :param email: address subscribed to the topic. Default: none (subscribe later).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        master_key: kms.IKey,
        display_name: str,
        email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name=display_name,
            master_key=master_key,
            enforce_ssl=True,
        )
        if email is not None:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

    def alarm_action(self) -> cloudwatch.IAlarmAction:
        return cw_actions.SnsAction(self.topic)

    def notify_on(self, *alarms: cloudwatch.Alarm) -> None:
        """Publish the alarm and its recovery to the topic."""
        for alarm in alarms:
            alarm.add_alarm_action(self.alarm_action())
            alarm.add_ok_action(self.alarm_action())
