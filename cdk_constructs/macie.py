"""Macie: sensitive-data discovery over the lake's buckets, findings on the alert topic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import ArnFormat, Aws, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_macie as macie
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_constructs.alerts import AlertRules, WatchedCalls
from cdk_constructs.bootstrap import execution_role_arn
from cdk_constructs.custom_resource import CustomResourceFunction
from cdk_constructs.trust import for_this_account

#: Identifiers Macie's managed set does not cover well for our users.
#: https://docs.aws.amazon.com/macie/latest/user/custom-data-identifiers.html
CUSTOM_IDENTIFIERS = {
    "KoreanMobileNumber": {
        "regex": r"01[016789][- ]?[0-9]{3,4}[- ]?[0-9]{4}",
        "keywords": ["phone", "mobile", "tel", "휴대폰", "전화", "연락처"],
        "description": "Korean mobile numbers (010, 011, 016-019), with or without separators",
    },
    "KoreanResidentRegistrationNumber": {
        # YYMMDD-GNNNNNN: a real month and day, gender/century digit 1-8.
        "regex": r"[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])-?[1-8][0-9]{6}",
        "keywords": ["rrn", "resident", "jumin", "주민등록번호", "주민번호"],
        "description": "Korean resident registration numbers (주민등록번호), with or without the hyphen",
    },
}
#: Macie calls that can stop or blind its discovery: the session disabled or paused, a job
#: cancelled or paused, a findings filter that archives findings before anyone sees them, the
#: allow list or an identifier changed or removed (Macie's API; their CloudTrail events come from
#: ``macie2.amazonaws.com``, under EventBridge's source ``aws.macie2``: EventBridge's event
#: reference, "Amazon Macie events"; Macie's findings alone come as ``aws.macie``).
MACIE_CHANGES = (
    "DisableMacie",
    "UpdateMacieSession",
    "UpdateClassificationJob",
    "CreateFindingsFilter",
    "UpdateFindingsFilter",
    "DeleteFindingsFilter",
    "UpdateAllowList",
    "DeleteAllowList",
    "DeleteCustomDataIdentifier",
    "PutClassificationExportConfiguration",
)
#: Where Macie writes its sensitive data discovery results in their bucket.
RESULTS_PREFIX = "macie-discovery-results"
#: Text that looks sensitive but is not: the reserved documentation domains (RFC 2606).
ALLOW_LIST_REGEX = r"[A-Za-z0-9._%+-]+@example\.(com|org|net)"


def macie_service_role_arn() -> str:
    """The service-linked role Macie reads objects with (it decrypts SSE-KMS objects)."""
    return f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/aws-service-role/macie.amazonaws.com/AWSServiceRoleForAmazonMacie"


def _results_sources() -> dict[str, dict[str, object]]:
    """Macie writing discovery results for this account, as Macie's guide conditions its
    repository's bucket and key policies (its export configuration and its jobs)."""
    return for_this_account(
        [
            f"arn:{Aws.PARTITION}:macie2:{Aws.REGION}:{Aws.ACCOUNT_ID}:export-configuration:*",
            f"arn:{Aws.PARTITION}:macie2:{Aws.REGION}:{Aws.ACCOUNT_ID}:classification-job/*",
        ]
    )


def allow_macie_to_store_results(bucket: s3.Bucket, key: kms.Key) -> None:
    """Let Macie write its discovery results under :data:`RESULTS_PREFIX` of ``bucket``,
    encrypted with ``key`` ("Storing and retaining sensitive data discovery results")."""
    macie_service = iam.ServicePrincipal("macie.amazonaws.com")
    bucket.add_to_resource_policy(
        iam.PolicyStatement(
            sid="MacieWritesDiscoveryResults",
            principals=[macie_service],
            actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects(f"{RESULTS_PREFIX}/*")],
            conditions=_results_sources(),
        )
    )
    bucket.add_to_resource_policy(
        iam.PolicyStatement(
            sid="MacieLocatesTheResultsBucket",
            principals=[macie_service],
            actions=["s3:GetBucketLocation"],
            resources=[bucket.bucket_arn],
            conditions=_results_sources(),
        )
    )
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AllowMacieToEncryptDiscoveryResults",
            principals=[macie_service],
            actions=["kms:GenerateDataKey", "kms:Encrypt"],
            resources=["*"],
            conditions=_results_sources(),
        )
    )


@dataclass(frozen=True)
class ResultsRepository:
    """The bucket (by name) and key Macie keeps its discovery results with."""

    bucket_name: str
    key_arn: str


def allow_macie_to_decrypt(key: kms.Key) -> None:
    """Let Macie's service-linked role decrypt the key's objects, and only through S3."""
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AllowMacieToDecryptObjectsThroughS3",
            principals=[iam.ArnPrincipal(macie_service_role_arn())],
            actions=["kms:Decrypt"],
            resources=["*"],
            conditions={"StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"}},
        )
    )


class MacieScanning(Construct):
    """Custom identifiers, an allow list, a findings filter, a scheduled job and finding alerts.

    :param buckets: names of the buckets the job scans.
    :param session: the session this stack created, or None when the account's is reused.
    :param expected_pii_bucket: findings of PII already declared and governed here (the curated
        bucket's tagged PII columns) are archived at low severity by the findings filter, so the
        alerts are about PII where nobody declared it.
    :param frequency: ``DAILY``, ``WEEKLY`` or ``MONTHLY``.
    :param results: where Macie keeps its discovery results past its own 90 days (the account's
        setting, so only where this app enabled Macie); None leaves the setting as it is.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        buckets: Sequence[str],
        expected_pii_bucket: str,
        alert_topic: sns.ITopic,
        logs_key: kms.IKey,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        frequency: str,
        results: ResultsRepository | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.identifiers = [
            macie.CfnCustomDataIdentifier(
                self,
                name,
                name=f"{prefix}-{name}",
                description=spec["description"],  # type: ignore[arg-type]
                regex=spec["regex"],  # type: ignore[arg-type]
                keywords=spec["keywords"],  # type: ignore[arg-type]
                maximum_match_distance=50,
            )
            for name, spec in CUSTOM_IDENTIFIERS.items()
        ]
        self.allow_list = macie.CfnAllowList(
            self,
            "AllowList",
            name=f"{prefix}-documentation-addresses",
            description="E-mail addresses of the reserved documentation domains (sample and test data)",
            criteria=macie.CfnAllowList.CriteriaProperty(regex=ALLOW_LIST_REGEX),
        )
        self.findings_filter = macie.CfnFindingsFilter(
            self,
            "ExpectedPiiFilter",
            name=f"{prefix}-expected-pii",
            description="Archive low-severity personal-data findings in the curated bucket, where PII "
            "columns are declared and hidden by Lake Formation column tags",
            action="ARCHIVE",
            position=1,
            finding_criteria=macie.CfnFindingsFilter.FindingCriteriaProperty(
                criterion={
                    "resourcesAffected.s3Bucket.name": macie.CfnFindingsFilter.CriterionAdditionalPropertiesProperty(
                        eq=[expected_pii_bucket]
                    ),
                    "type": macie.CfnFindingsFilter.CriterionAdditionalPropertiesProperty(
                        eq=["SensitiveData:S3Object/Personal"]
                    ),
                    "severity.description": macie.CfnFindingsFilter.CriterionAdditionalPropertiesProperty(
                        eq=["Low"]
                    ),
                }
            ),
        )

        def arn(resource: str) -> str:
            return Stack.of(self).format_arn(
                service="macie2",
                resource=resource,
                resource_name="*",
                arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            )

        self.job_function = CustomResourceFunction(
            self,
            "ClassificationJobFunction",
            handler="macie_job.handler",
            description="Creates, replaces and cancels the lake's scheduled Macie classification job",
            statements=[
                iam.PolicyStatement(
                    actions=[
                        "macie2:CreateClassificationJob",
                        "macie2:DescribeClassificationJob",
                        "macie2:UpdateClassificationJob",
                        "macie2:TagResource",
                    ],
                    resources=[arn("classification-job")],
                ),
                iam.PolicyStatement(
                    actions=["macie2:GetCustomDataIdentifier", "macie2:GetAllowList"],
                    resources=[arn("custom-data-identifier"), arn("allow-list")],
                ),
            ],
            wildcard_reason="Macie names jobs, identifiers and allow lists by generated ids; the "
            "wildcards stay within this account and region's Macie resources of those types.",
            logs_key=logs_key,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        self.job = self.job_function.resource(
            self,
            "ClassificationJob",
            resource_type="Custom::MacieClassificationJob",
            properties={
                "Name": f"{prefix}-lake-scan",
                "Description": "Scheduled sensitive-data discovery over the raw and curated zones",
                "AccountId": Aws.ACCOUNT_ID,
                "Buckets": list(buckets),
                "Frequency": frequency,
                "SamplingPercentage": "100",
                "CustomDataIdentifierIds": [i.attr_id for i in self.identifiers],
                "AllowListIds": [self.allow_list.attr_id],
            },
        )
        self.results_function: CustomResourceFunction | None = None
        if results is not None:
            self.results_function = CustomResourceFunction(
                self,
                "ResultsRepositoryFunction",
                handler="macie_results.handler",
                description="Points Macie's sensitive data discovery results at the lake's Macie results bucket",
                statements=[
                    iam.PolicyStatement(
                        actions=["macie2:PutClassificationExportConfiguration"], resources=["*"]
                    )
                ],
                wildcard_reason="Macie's export configuration is a setting of the account, not a resource "
                "an IAM policy can name.",
                logs_key=logs_key,
                log_retention=log_retention,
                removal_policy=removal_policy,
            )
            self.results_repository = self.results_function.resource(
                self,
                "ResultsRepository",
                resource_type="Custom::MacieResultsRepository",
                properties={
                    "Bucket": results.bucket_name,
                    "KeyPrefix": RESULTS_PREFIX,
                    "KmsKeyArn": results.key_arn,
                },
            )
            # the job's first run, at its creation, already keeps its results there
            self.job.node.add_dependency(self.results_repository)

        self.alerts = AlertRules(self, "FindingAlerts", topic=alert_topic, key=logs_key)
        # Discovery stopped or blinded by hand alerts: the deployments' own changes and the job
        # function's (it cancels a replaced job) are left out. Macie's settings are the account's,
        # so in an account whose Macie other teams use, their changes alert too.
        self.alerts.watch(
            WatchedCalls(
                "ChangedRule",
                "Macie",
                "macie2",
                MACIE_CHANGES,
                outside_deployments=True,
                summary="session, job, findings filter, allow list, identifier or results location changed",
            ),
            deployer=execution_role_arn(Stack.of(self)),
            expected=[
                f.function.role.role_arn  # type: ignore[union-attr]
                for f in (self.job_function, self.results_function)
                if f is not None
            ],
        )
        self.alerts.add(
            "FindingRule",
            description="Macie findings to the alert topic, with their severity",
            pattern={"source": ["aws.macie"], "detail-type": ["Macie Finding"]},
            template='"Macie finding, severity <severity> (<score>): <type> in s3://<bucket>/<key>. <title> (finding <id>)"',
            paths={
                "severity": "$.detail.severity.description",
                "score": "$.detail.severity.score",
                "type": "$.detail.type",
                "bucket": "$.detail.resourcesAffected.s3Bucket.name",
                "key": "$.detail.resourcesAffected.s3Object.key",
                "title": "$.detail.title",
                "id": "$.detail.id",
            },
        )
