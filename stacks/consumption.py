"""Consumption: the analysts' Athena workgroup and named queries, a scheduled UNLOAD report, an
optional Spark workgroup, and (per stage) Redshift Serverless with Spectrum and data masking."""

from __future__ import annotations

from typing import Any

from aws_cdk import Fn, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_constructs.athena import sql_workgroup
from cdk_constructs.lake_formation import lf_grant, reader_grants, tag_key_names
from cdk_constructs.personas import WAREHOUSE_ROLES
from cdk_constructs.quicksight import QuickSightDashboard
from cdk_constructs.reports import ScheduledReport
from cdk_constructs.warehouse import RedshiftWarehouse
from config import StageConfig
from datalake import sql
from datalake.dataset import Dataset
from stacks.common import database_name, log_retention, removal_policy
from stacks.foundation import FoundationStack
from stacks.governance import REGIONAL, GovernanceStack, athena_workgroup_name

#: The shipped query the scheduled report unloads.
REPORT_QUERY = "daily_revenue_by_country"


class ConsumptionStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        datasets: tuple[Dataset, ...],
        foundation: FoundationStack,
        governance: GovernanceStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self._alerts: sns.ITopic | None = None
        keys, storage = foundation.keys, foundation.storage
        removal = removal_policy(stage)
        results = storage.athena_results.reference(self, "AthenaResults")
        curated_db = database_name(stage, "curated")
        self.workgroup = sql_workgroup(
            self,
            "AnalystsWorkgroup",
            name=athena_workgroup_name(stage),
            description="Analysts: curated data without PII (Lake Formation), per-query scan cutoff",
            results_bucket=results,
            key=keys.analytics,
            bytes_scanned_cutoff=stage.athena_bytes_scanned_cutoff,
            removal_policy=removal,
        )
        # The regional analysts query apart: the analysts' query history and results hold every
        # row, which the regional analysts' data-cells filter keeps from them.
        self.regional_workgroup = sql_workgroup(
            self,
            "RegionalAnalystsWorkgroup",
            name=athena_workgroup_name(stage, REGIONAL),
            description="Regional analysts: the curated rows of their region without PII (Lake "
            "Formation), per-query scan cutoff",
            results_bucket=results,
            key=keys.analytics,
            bytes_scanned_cutoff=stage.athena_bytes_scanned_cutoff,
            removal_policy=removal,
        )
        #: The shipped queries, in each analysts' workgroup: (workgroup name, query name) -> query.
        self.named_queries: dict[tuple[str, str], athena.CfnNamedQuery] = {}
        queries = {q.name: q for q in sql.load("athena")}
        for id_prefix, workgroup in (("", self.workgroup), ("Regional", self.regional_workgroup)):
            for query in queries.values():
                assert workgroup.name is not None
                self.named_queries[(workgroup.name, query.name)] = athena.CfnNamedQuery(
                    self,
                    id_prefix + query.name.title().replace("_", ""),
                    name=query.name.replace("_", " "),
                    description=query.description[:1024],
                    database=curated_db,
                    work_group=workgroup.ref,
                    query_string=query.text,
                )
        self.report: ScheduledReport | None = None
        if REPORT_QUERY in queries:  # a fork without the orders example drops the report with it
            self.report = self._report(
                stage,
                foundation,
                query=queries[REPORT_QUERY],
                datasets=datasets,
                curated_db=curated_db,
                results=results,
            )

        self.spark_workgroup: athena.CfnWorkGroup | None = None
        if stage.features.athena_spark:
            self.spark_workgroup = self._spark_workgroup(stage, foundation, governance)

        self.quicksight: QuickSightDashboard | None = None
        principal = stage.features.quicksight_principal_arn
        if principal is not None:
            assert governance.personas.quicksight is not None
            self.quicksight = QuickSightDashboard(
                self,
                "QuickSight",
                prefix=stage.prefix,
                principal_arn=principal,
                role=governance.personas.quicksight,
                workgroup=self.workgroup.ref,
                database=curated_db,
                datasets=datasets,
            )

        self.warehouse: RedshiftWarehouse | None = None
        if stage.features.redshift:
            personas = governance.personas
            assert personas.spectrum is not None and personas.spectrum_analyst is not None
            spectrum, analyst_spectrum = personas.spectrum, personas.spectrum_analyst
            values = {
                "curated_database": curated_db,
                "spectrum_role_arn": spectrum.role_arn,
                "analyst_spectrum_role_arn": analyst_spectrum.role_arn,
            }
            statements = [s for f in sql.load("redshift") for s in sql.statements(f.render(values))]
            self.warehouse = RedshiftWarehouse(
                self,
                "Warehouse",
                prefix=stage.prefix,
                key=keys.analytics,
                spectrum_role=spectrum,
                analyst_spectrum_role=analyst_spectrum,
                sign_in_roles=[getattr(personas, person) for person in WAREHOUSE_ROLES],
                base_rpu=stage.redshift_base_rpu,
                usage_limit_rpu_hours=stage.redshift_usage_limit_rpu_hours,
                usage_limit_action=stage.redshift_usage_limit_action,
                statements=statements,
                refresh_procedures=sql.refresh_procedures(statements),
                refresh_schedule=stage.redshift_refresh_schedule,
                refresh_stale_hours=stage.redshift_refresh_stale_hours,
                schedule_group=foundation.schedules.schedule_group_name,
                alert_topic=self._alert_topic(foundation),
                notice_topic=foundation.notices.reference(self, "NoticeTopic"),
                logs_key=keys.logs,
                log_retention=log_retention(stage),
                log_retention_days=stage.log_retention_days,
                removal_policy=removal,
            )
            foundation.alerts.notify_on(self.warehouse.usage_alarm)
            if self.warehouse.refresh_stale_alarm is not None:
                foundation.alerts.notify_on(self.warehouse.refresh_stale_alarm)

    def _alert_topic(self, foundation: FoundationStack) -> sns.ITopic:
        """The foundation's alert topic, referenced once in this stack."""
        if self._alerts is None:
            self._alerts = foundation.alerts.reference(self, "AlertTopic")
        return self._alerts

    @property
    def availability_zones(self) -> list[str]:
        """Three AZs even when the stack is environment-agnostic (CDK would otherwise assume two)."""
        return [Fn.select(i, Fn.get_azs()) for i in range(3)]

    def _report(
        self,
        stage: StageConfig,
        foundation: FoundationStack,
        *,
        query: sql.SqlFile,
        datasets: tuple[Dataset, ...],
        curated_db: str,
        results: s3.IBucket,
    ) -> ScheduledReport:
        """The daily UNLOAD of ``query`` to the analytics bucket."""
        keys, storage = foundation.keys, foundation.storage
        report = ScheduledReport(
            self,
            "DailyRevenueReport",
            name=f"{stage.prefix}-{REPORT_QUERY.replace('_', '-')}",
            query=query,
            database=curated_db,
            workgroup=self.workgroup.ref,
            bucket=storage.analytics.reference(self, "Analytics"),
            bucket_key=keys.analytics,
            results_bucket=results,
            tables=[ds.name for ds in datasets],
            alert_topic=self._alert_topic(foundation),
            logs_key=keys.logs,
            log_retention=log_retention(stage),
            removal_policy=removal_policy(stage),
            schedule_group=foundation.schedules.schedule_group_name,
        )
        report.state_machine.node.add_dependency(self.workgroup)
        if stage.features.lake_formation:
            # The UNLOAD reads the curated tables as the state machine's role, which Lake Formation
            # must let read them: what analysts read (no PII column), granted once the role exists.
            tag_keys = tag_key_names(stage.lf_tag_prefix)
            for suffix, (resource, permissions) in reader_grants(tag_keys).items():
                grant = lf_grant(
                    self, f"DailyRevenueReportReader{suffix}", report.role.role_arn, resource, permissions
                )
                report.schedule.node.add_dependency(grant)
        foundation.alerts.notify_on(*report.alarms)
        return report

    def _spark_workgroup(
        self, stage: StageConfig, foundation: FoundationStack, governance: GovernanceStack
    ) -> athena.CfnWorkGroup:
        """Athena for Apache Spark: notebooks run as the governance stack's notebook role, which
        reads the curated zone and writes calculation results under the workgroup's prefix."""
        keys, storage = foundation.keys, foundation.storage
        role = governance.personas.notebooks
        assert role is not None
        name = athena_workgroup_name(stage, "notebooks")
        results = storage.athena_results.reference(self, "NotebookResults")
        return athena.CfnWorkGroup(
            self,
            "NotebookWorkgroup",
            name=name,
            description="Athena for Apache Spark notebooks over the curated zone (data engineers)",
            recursive_delete_option=stage.destroy_on_removal,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="PySpark engine version 3"
                ),
                execution_role=role.role_arn,
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{results.bucket_name}/{name}/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=keys.analytics.key_arn
                    ),
                    expected_bucket_owner=self.account,
                ),
            ),
        )
