"""Customer-managed KMS keys: one per lake zone plus one for logs and alerts."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from cdk_constructs.trust import for_this_account

ZONES = ("raw", "curated", "analytics")


def key_use_via(service: str, keys: list[kms.IKey], actions: list[str]) -> iam.PolicyStatement:
    """``actions`` on ``keys``, only through ``service`` (``s3``, ``sns``...) in this region."""
    return iam.PolicyStatement(
        actions=actions,
        resources=[k.key_arn for k in keys],
        conditions={"StringEquals": {"kms:ViaService": f"{service}.{Aws.REGION}.amazonaws.com"}},
    )


class LakeKeys(Construct):
    """One symmetric CMK per zone (``raw``, ``curated``, ``analytics``) and one for ``logs``.

    Each key has rotation on, an alias ``alias/<prefix>/<zone>`` and a key policy that keeps key
    administration with the account (the CDK default root statement, which lets IAM policies
    decide) and grants service principals only the actions they need, scoped by encryption
    context or source account. Data access is granted per role through :meth:`grant_*` helpers on
    the buckets and streams, i.e. in IAM policies, so later stacks never edit these key policies.

    :param prefix: naming prefix of the stage, used in aliases.
    :param removal_policy: what ``cdk destroy`` does with the keys. Default: ``RETAIN``.
    :param pending_window: waiting period before a destroyed key is deleted. Default: 7 days
        when destroyed with the stack, 30 days otherwise.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        removal_policy: RemovalPolicy | None = None,
        pending_window: Duration | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if removal_policy is None:
            removal_policy = RemovalPolicy.RETAIN
        if pending_window is None:
            pending_window = Duration.days(7 if removal_policy == RemovalPolicy.DESTROY else 30)
        self.zone_keys: dict[str, kms.Key] = {}
        for zone in ZONES:
            self.zone_keys[zone] = kms.Key(
                self,
                f"{zone.capitalize()}Key",
                alias=f"alias/{prefix}/{zone}",
                description=f"{prefix}: encrypts the {zone} zone of the data lake",
                enable_key_rotation=True,
                removal_policy=removal_policy,
                pending_window=pending_window,
            )
        self.logs = kms.Key(
            self,
            "LogsKey",
            alias=f"alias/{prefix}/logs",
            description=f"{prefix}: encrypts log groups, the alert topic and pipeline state logs",
            enable_key_rotation=True,
            removal_policy=removal_policy,
            pending_window=pending_window,
        )
        # CloudWatch Logs encrypts log groups with the logs key; the encryption context pins the
        # grant to log groups of this account and region.
        # https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html
        self.logs.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsForThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                    }
                },
            )
        )
        # CloudWatch alarms and EventBridge rules publish to the encrypted alert topic.
        # https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services
        self.logs.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlarmAndEventPublishersToUseTopicKey",
                principals=[
                    iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                    iam.ServicePrincipal("events.amazonaws.com"),
                ],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions=for_this_account(),
            )
        )

    @property
    def raw(self) -> kms.Key:
        return self.zone_keys["raw"]

    @property
    def curated(self) -> kms.Key:
        return self.zone_keys["curated"]

    @property
    def analytics(self) -> kms.Key:
        return self.zone_keys["analytics"]
