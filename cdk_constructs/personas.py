"""Who works with the lake: human personas and the service roles of each pipeline step.

The roles live in one place so Lake Formation can grant to them before the steps that use them
deploy. IAM policies here give each role the API calls and S3/KMS access of its job; which rows
and columns it may read is Lake Formation's part (``cdk_constructs.lake_formation``).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.keys import key_use_via
from cdk_constructs.nag import acknowledge, wildcard_findings
from cdk_constructs.trust import service_for_this_account
from datalake.dataset import DATASET_TAG, Dataset

#: The principal tag whose value (database roles, ``:``-separated) Redshift Serverless grants to
#: the database user of an IAM identity that signs in through IAM ("Defining database roles to
#: grant to federated users in Amazon Redshift Serverless").
REDSHIFT_DB_ROLES_TAG = "RedshiftDbRoles"
#: The warehouse's database roles each persona signs in with (``sql/redshift/02_roles.sql``): the
#: analyst reads as in Athena, the engineer reads PII as everywhere else.
WAREHOUSE_ROLES = {"analyst": ("analyst",), "engineer": ("pii_reader",)}

GLUE_READ = (
    "glue:GetDatabase",
    "glue:GetDatabases",
    "glue:GetTable",
    "glue:GetTables",
    "glue:GetPartition",
    "glue:GetPartitions",
    "glue:BatchGetPartition",
)
#: Human sessions are short: re-assume rather than hold credentials for a working day.
HUMAN_SESSION = Duration.hours(1)
#: What a person does in a Spark-enabled workgroup's notebooks (Athena's example policy for Spark
#: notebooks, with the calls that run, stop and read calculations and end sessions); all on the
#: workgroup's ARN.
NOTEBOOK_USE = (
    "athena:GetWorkGroup",
    "athena:StartSession",
    "athena:GetSession",
    "athena:GetSessionStatus",
    "athena:ListSessions",
    "athena:TerminateSession",
    "athena:CreateNotebook",
    "athena:ImportNotebook",
    "athena:ExportNotebook",
    "athena:UpdateNotebook",
    "athena:UpdateNotebookMetadata",
    "athena:DeleteNotebook",
    "athena:GetNotebookMetadata",
    "athena:ListNotebookMetadata",
    "athena:ListNotebookSessions",
    "athena:CreatePresignedNotebookUrl",
    "athena:StartCalculationExecution",
    "athena:StopCalculationExecution",
    "athena:GetCalculationExecution",
    "athena:GetCalculationExecutionCode",
    "athena:GetCalculationExecutionStatus",
    "athena:ListCalculationExecutions",
)


@dataclass(frozen=True)
class LakeAccess:
    """What the personas' policies point at: databases, workgroups, buckets and keys by name."""

    database_prefix: str
    curated_database: str
    analyst_workgroup: str
    #: The regional analyst's own workgroup: the analysts' results hold every row.
    regional_workgroup: str
    workgroup_prefix: str
    raw_bucket: s3.IBucket
    curated_bucket: s3.IBucket
    analytics_bucket: s3.IBucket
    athena_results_bucket: s3.IBucket
    #: The audit trail's log files; ``None`` without the lake's trail.
    audit_bucket: s3.IBucket | None
    raw_key: kms.IKey
    curated_key: kms.IKey
    analytics_key: kms.IKey
    logs_key: kms.IKey


@dataclass(frozen=True)
class PipelineRoles:
    """The service roles of one dataset's batch path (their policies come with the pipeline)."""

    job: iam.IRole
    crawler: iam.IRole
    job_name: str
    crawler_name: str

    def reference(self, scope: Construct) -> PipelineRoles:
        """The roles for use in another stack (the dataset's catalog and processing nested
        stacks), addressed by their deterministic names: no export of the governance stack's
        (four a dataset, which would cap a stage at some 47 datasets by CloudFormation's 200
        outputs a template); the stacks that use them deploy after it (``stacks.build_lake``)."""
        return PipelineRoles(
            job=iam.Role.from_role_name(scope, "JobRole", self.job_name),
            crawler=iam.Role.from_role_name(scope, "CrawlerRole", self.crawler_name),
            job_name=self.job_name,
            crawler_name=self.crawler_name,
        )


class Personas(Construct):
    """IAM roles of the people and services that use the lake.

    * ``engineer``: builds and runs pipelines; reads and writes every zone, runs Athena in any of
      the lake's workgroups, reads the audit trail.
    * ``analyst``: queries curated data in the analysts' workgroup; with Lake Formation on it
      sees no PII column.
    * ``regional_analyst``: like ``analyst``, limited by the worked data-cells filter to some rows,
      in a workgroup of its own (the analysts' query history and results hold every row).
    * per dataset a Glue ``job`` and ``crawler`` role (policies added by ``DatasetPipeline``).
    * ``spectrum`` and ``spectrum_analyst`` (when Redshift is on): the roles of the warehouse's
      two external schemas over the curated database. Redshift Spectrum reads a schema's tables
      as its role, for every database user who may use the schema, so Lake Formation's grants
      to the role decide what they see: ``spectrum`` reads the tables whole (the warehouse's
      admin, its refresh procedures, ``pii_reader``), ``spectrum_analyst`` as analysts do, no
      PII column (Redshift's ``analyst`` role).
    * ``quicksight`` (when a QuickSight principal is configured): the role QuickSight's Athena data
      source runs queries as; it reads what analysts read, so the account-wide QuickSight service
      role needs no access to the lake's buckets or keys.
    * ``notebooks`` (when ``notebook_workgroup`` is given): the role the Spark notebooks of that
      Athena workgroup run as. Athena's PySpark engine version 3 does not support Lake Formation,
      so it reads the curated zone whole from S3, PII included; only ``engineer`` may open its
      notebooks.

    Human personas trust the account: who may assume them is decided by the account's IAM
    (an identity centre permission set or a policy naming them), not by this template.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        datasets: tuple[Dataset, ...],
        access: LakeAccess,
        lake_formation: bool,
        spectrum: bool,
        quicksight: bool = False,
        notebook_workgroup: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._access = access
        self._lake_formation = lake_formation
        self.engineer = self._human(
            "DataEngineer", f"{prefix}-data-engineer", "Builds and operates the lake's pipelines."
        )
        self.analyst = self._human(
            "DataAnalyst", f"{prefix}-data-analyst", "Queries curated data without PII in Athena."
        )
        self.regional_analyst = self._human(
            "RegionalAnalyst",
            f"{prefix}-regional-analyst",
            "Queries the curated rows of some countries only (data-cells filter), without PII.",
        )
        self._engineer_policy(notebook_workgroup)
        self._analyst_policy("Analyst", self.analyst, access.analyst_workgroup)
        self._analyst_policy("RegionalAnalyst", self.regional_analyst, access.regional_workgroup)

        self.pipelines: dict[str, PipelineRoles] = {}
        for ds in datasets:
            cid = ds.construct_id
            job_name, crawler_name = (
                f"{prefix}-{ds.resource_name}-job",
                f"{prefix}-{ds.resource_name}-crawler",
            )
            self.pipelines[ds.name] = PipelineRoles(
                job=iam.Role(
                    self,
                    f"{cid}JobRole",
                    role_name=job_name,
                    assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
                    description=f"Glue job and data-quality runs of {ds.name}: raw prefix in, curated out",
                ),
                crawler=iam.Role(
                    self,
                    f"{cid}CrawlerRole",
                    role_name=crawler_name,
                    assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
                    description=f"Crawler of the curated {ds.name} tables: logs drift, adds partitions",
                ),
                job_name=job_name,
                crawler_name=crawler_name,
            )
            for role in (self.pipelines[ds.name].job, self.pipelines[ds.name].crawler):
                Tags.of(role).add(DATASET_TAG, ds.name)
        self.spectrum: iam.Role | None = None
        self.spectrum_analyst: iam.Role | None = None
        if spectrum:
            self.spectrum = self._spectrum_role(
                "SpectrumRole",
                f"{prefix}-redshift-spectrum",
                "Redshift Serverless: external schema over the curated Glue database, PII columns included",
            )
            self.spectrum_analyst = self._spectrum_role(
                "SpectrumAnalystRole",
                f"{prefix}-redshift-spectrum-analyst",
                "Redshift Serverless: the analysts' external schema over the curated Glue database, "
                "read as analysts read it",
            )
            # Signed in to the warehouse with their role (the Data API, JDBC or query editor v2
            # through IAM), a persona's database user gets the database roles this tag names.
            for person, db_roles in WAREHOUSE_ROLES.items():
                Tags.of(getattr(self, person)).add(REDSHIFT_DB_ROLES_TAG, ":".join(db_roles))
        self.quicksight: iam.Role | None = None
        if quicksight:
            self.quicksight = self._service_of_this_account(
                "QuickSightRole",
                f"{prefix}-quicksight-athena",
                "quicksight.amazonaws.com",
                "QuickSight's Athena data source: analysts' workgroup, curated data without PII",
            )
            # QuickSight lists the catalog's databases and tables before it runs a query.
            catalog = iam.PolicyStatement(
                actions=[
                    "athena:GetDataCatalog",
                    "athena:ListDatabases",
                    "athena:GetDatabase",
                    "athena:ListTableMetadata",
                    "athena:GetTableMetadata",
                ],
                resources=[self._arn("athena", "datacatalog", "AwsDataCatalog")],
            )
            self._analyst_policy("QuickSight", self.quicksight, access.analyst_workgroup, catalog)
        self.notebooks: iam.Role | None = None
        if notebook_workgroup is not None:
            self.notebooks = self._service_of_this_account(
                "NotebookRole",
                f"{prefix}-athena-notebooks",
                "athena.amazonaws.com",
                "Athena Spark notebooks: read the curated zone whole, write calculation results",
            )
            self._notebook_policy(self.notebooks, notebook_workgroup)

    # --- helpers ----------------------------------------------------------------------------

    def _human(self, construct_id: str, name: str, description: str) -> iam.Role:
        return iam.Role(
            self,
            construct_id,
            role_name=name,
            assumed_by=iam.AccountRootPrincipal(),
            description=description,
            max_session_duration=HUMAN_SESSION,
        )

    def _service_of_this_account(
        self, construct_id: str, name: str, service: str, description: str
    ) -> iam.Role:
        """A role ``service`` may assume only on behalf of this account (``aws:SourceAccount``)."""
        return iam.Role(
            self,
            construct_id,
            role_name=name,
            assumed_by=service_for_this_account(service),
            description=description,
        )

    def _arn(self, service: str, resource: str, name: str, sep: ArnFormat | None = None) -> str:
        return Stack.of(self).format_arn(
            service=service,
            resource=resource,
            resource_name=name,
            arn_format=sep or ArnFormat.SLASH_RESOURCE_NAME,
        )

    def _glue_read(self, databases: str) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            actions=list(GLUE_READ),
            resources=[
                self._arn("glue", "catalog", "", ArnFormat.NO_RESOURCE_NAME),
                self._arn("glue", "database", databases),
                self._arn("glue", "table", f"{databases}/*"),
            ],
        )

    def _lake_formation_access(self) -> list[iam.PolicyStatement]:
        if not self._lake_formation:
            return []
        return [iam.PolicyStatement(actions=["lakeformation:GetDataAccess"], resources=["*"])]

    def _curated_read(self) -> list[iam.PolicyStatement]:
        """Reading curated data: Lake Formation vends credentials for the columns and rows granted
        (no S3 grant); IAM-only mode cannot hide columns, so the reader gets the zone as it is."""
        a = self._access
        if self._lake_formation:
            return self._lake_formation_access()
        return [
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[a.curated_bucket.arn_for_objects("*")]),
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[a.curated_bucket.bucket_arn]),
            key_use_via("s3", [a.curated_key], ["kms:Decrypt"]),
        ]

    def _athena(self, workgroups: str) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            actions=[
                "athena:StartQueryExecution",
                "athena:StopQueryExecution",
                "athena:GetQueryExecution",
                "athena:GetQueryResults",
                "athena:GetQueryResultsStream",
                "athena:BatchGetQueryExecution",
                "athena:ListQueryExecutions",
                "athena:GetWorkGroup",
                "athena:GetNamedQuery",
                "athena:ListNamedQueries",
                "athena:BatchGetNamedQuery",
            ],
            resources=[self._arn("athena", "workgroup", workgroups)],
        )

    def _engineer_policy(self, notebook_workgroup: str | None) -> None:
        a = self._access
        zones = (a.raw_bucket, a.curated_bucket, a.analytics_bucket)
        audit = [a.audit_bucket] if a.audit_bucket is not None else []
        notebooks: list[iam.PolicyStatement] = []
        if notebook_workgroup is not None:
            notebooks = [
                iam.PolicyStatement(
                    actions=list(NOTEBOOK_USE),
                    resources=[self._arn("athena", "workgroup", notebook_workgroup)],
                ),
                # The console lists workgroups and engine versions before it opens a notebook;
                # neither action takes a resource.
                iam.PolicyStatement(
                    actions=["athena:ListWorkGroups", "athena:ListEngineVersions"], resources=["*"]
                ),
            ]
        policy = iam.ManagedPolicy(
            self,
            "EngineerPolicy",
            roles=[self.engineer],
            statements=[
                self._athena(f"{a.workgroup_prefix}-*"),
                iam.PolicyStatement(
                    actions=[
                        *GLUE_READ,
                        "glue:GetCrawler",
                        "glue:GetJobRun",
                        "glue:GetJobRuns",
                        "glue:GetDataQualityResult",
                        "glue:CreatePartition",
                        "glue:BatchCreatePartition",
                        "glue:UpdatePartition",
                        "glue:DeletePartition",
                        "glue:BatchDeletePartition",
                        "glue:UpdateTable",
                        "glue:StartCrawler",
                        "glue:StartJobRun",
                    ],
                    resources=[
                        self._arn("glue", "catalog", "", ArnFormat.NO_RESOURCE_NAME),
                        self._arn("glue", "database", f"{a.database_prefix}_*"),
                        self._arn("glue", "table", f"{a.database_prefix}_*/*"),
                        self._arn("glue", "crawler", f"{a.workgroup_prefix}-*"),
                        self._arn("glue", "job", f"{a.workgroup_prefix}-*"),
                    ],
                ),
                iam.PolicyStatement(
                    actions=["states:StartExecution", "states:DescribeExecution", "states:ListExecutions"],
                    resources=[
                        self._arn(
                            "states", "stateMachine", f"{a.workgroup_prefix}-*", ArnFormat.COLON_RESOURCE_NAME
                        ),
                        self._arn(
                            "states", "execution", f"{a.workgroup_prefix}-*", ArnFormat.COLON_RESOURCE_NAME
                        ),
                    ],
                ),
                iam.PolicyStatement(
                    actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    resources=[b.arn_for_objects("*") for b in (*zones, a.athena_results_bucket)],
                ),
                *(
                    iam.PolicyStatement(actions=["s3:GetObject"], resources=[b.arn_for_objects("*")])
                    for b in audit
                ),
                iam.PolicyStatement(
                    actions=["s3:ListBucket", "s3:GetBucketLocation"],
                    resources=[b.bucket_arn for b in (*zones, a.athena_results_bucket, *audit)],
                ),
                key_use_via(
                    "s3",
                    [a.raw_key, a.curated_key, a.analytics_key],
                    ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                ),
                # CloudTrail log files are encrypted by CloudTrail, not through S3.
                iam.PolicyStatement(actions=["kms:Decrypt"], resources=[a.logs_key.key_arn]),
                *self._lake_formation_access(),
                # make replay: records back into a dataset's stream, or into the Kinesis data
                # stream a stream reads (encrypted with the raw key). make backfill and make
                # erase need only the zones' objects above; purging versions is an admin's.
                iam.PolicyStatement(
                    actions=["firehose:DescribeDeliveryStream", "firehose:PutRecordBatch"],
                    resources=[self._arn("firehose", "deliverystream", f"{a.workgroup_prefix}-*")],
                ),
                iam.PolicyStatement(
                    actions=["kinesis:PutRecords"],
                    resources=[self._arn("kinesis", "stream", f"{a.workgroup_prefix}-*")],
                ),
                key_use_via("kinesis", [a.raw_key], ["kms:GenerateDataKey"]),
                *notebooks,
            ],
        )
        acknowledge(
            policy,
            "Engineers operate every dataset of this stage: the wildcards are the stage's own name "
            "prefix (databases, tables, crawlers, jobs, workgroups, state machines, delivery and data "
            "streams), generated object "
            "keys in the lake's buckets, Glue read actions, and lakeformation:GetDataAccess, "
            "athena:ListWorkGroups and athena:ListEngineVersions, which support no resource-level "
            "permission.",
            *wildcard_findings(policy),
        )

    def _analyst_policy(
        self, construct_id: str, role: iam.Role, workgroup: str, *extra: iam.PolicyStatement
    ) -> None:
        """Queries in ``workgroup`` alone, whose results (under its prefix) the role reads: a role
        that may see fewer rows or columns than another never shares its workgroup, whose query
        history and results would show it the other's."""
        a = self._access
        statements = [
            *extra,
            self._athena(workgroup),
            self._glue_read(a.curated_database),
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[a.athena_results_bucket.arn_for_objects(f"{workgroup}/*")],
            ),
            iam.PolicyStatement(
                actions=["s3:ListBucket", "s3:GetBucketLocation"],
                resources=[a.athena_results_bucket.bucket_arn],
            ),
            key_use_via("s3", [a.analytics_key], ["kms:Decrypt", "kms:GenerateDataKey"]),
        ]
        statements += self._curated_read()
        policy = iam.ManagedPolicy(self, f"{construct_id}Policy", roles=[role], statements=statements)
        acknowledge(
            policy,
            "Analysts read query results under their workgroup's prefix and the curated database's "
            "tables; object keys are generated, Glue read actions need table wildcards, and "
            "lakeformation:GetDataAccess supports no resource-level permission.",
            *wildcard_findings(policy),
        )

    def _spectrum_role(self, construct_id: str, name: str, description: str) -> iam.Role:
        """A role Redshift Serverless reads an external schema over the curated database as;
        Lake Formation's grants to it decide which columns it reads."""
        role = iam.Role(
            self,
            construct_id,
            role_name=name,
            assumed_by=iam.CompositePrincipal(
                iam.ServicePrincipal("redshift.amazonaws.com"),
                iam.ServicePrincipal("redshift-serverless.amazonaws.com"),
            ),
            description=description,
        )
        a = self._access
        statements = [self._glue_read(a.curated_database), *self._curated_read()]
        policy = iam.ManagedPolicy(
            self, construct_id.removesuffix("Role") + "Policy", roles=[role], statements=statements
        )
        acknowledge(
            policy,
            "Redshift Spectrum reads the curated database's tables through the Glue catalog; table "
            "and object wildcards stay inside that database and bucket, and "
            "lakeformation:GetDataAccess supports no resource-level permission.",
            *wildcard_findings(policy),
        )
        return role

    def _notebook_policy(self, role: iam.Role, workgroup: str) -> None:
        """Sessions and calculations of ``workgroup``, the curated zone read from S3 (the engine
        does not support Lake Formation), results under the workgroup's prefix."""
        a = self._access
        statements = [
            iam.PolicyStatement(
                actions=[
                    "athena:GetWorkGroup",
                    "athena:CreatePresignedNotebookUrl",
                    "athena:GetSession",
                    "athena:GetSessionStatus",
                    "athena:TerminateSession",
                    "athena:GetCalculationExecution",
                    "athena:GetCalculationExecutionCode",
                    "athena:StartCalculationExecution",
                    "athena:StopCalculationExecution",
                ],
                resources=[self._arn("athena", "workgroup", workgroup)],
            ),
            self._glue_read(a.curated_database),
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[a.curated_bucket.arn_for_objects("*")]),
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[a.athena_results_bucket.arn_for_objects(f"{workgroup}/*")],
            ),
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[a.curated_bucket.bucket_arn, a.athena_results_bucket.bucket_arn],
            ),
            key_use_via("s3", [a.curated_key], ["kms:Decrypt"]),
            key_use_via("s3", [a.analytics_key], ["kms:Decrypt", "kms:GenerateDataKey"]),
        ]
        policy = iam.ManagedPolicy(self, "NotebookPolicy", roles=[role], statements=statements)
        acknowledge(
            policy,
            "Notebook sessions read any curated object (generated keys) and the curated database's "
            "tables, and write results under their own workgroup's prefix only.",
            *wildcard_findings(policy),
        )
