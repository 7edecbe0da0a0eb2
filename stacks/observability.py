"""Observability: one CloudWatch dashboard for the whole pipeline, across the stacks.

Built from the L2 widgets rather than cdk-monitoring-constructs: the dashboard needs a dozen
metrics the constructs already expose (``metric_*``), and the library would add a large jsii
module to every synth for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, Names, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from cdk_constructs.alerts import alarm_arn, rule_invocations
from cdk_constructs.processing import JOB_COUNTS
from cdk_constructs.warehouse import RedshiftWarehouse
from config import StageConfig
from stacks.common import DashboardQuota
from stacks.governance import REGIONAL, athena_workgroup_name
from stacks.ingestion import IngestionStack
from stacks.processing import ProcessingStack

#: The most alarms one alarm status widget shows (CloudWatch's dashboard body structure: its
#: ``alarms`` holds 1 to 100 ARNs); a lake of seven datasets has more.
ALARMS_PER_WIDGET = 100


def alarm_status_widgets(alarms: Sequence[cloudwatch.IAlarm]) -> list[cloudwatch.AlarmStatusWidget]:
    """The state of every alarm in ``alarms``, in as few full-width widgets as CloudWatch allows,
    each a little taller for every eight of its alarms, numbered when there is more than one."""
    chunks = [alarms[i : i + ALARMS_PER_WIDGET] for i in range(0, len(alarms), ALARMS_PER_WIDGET)]
    return [
        cloudwatch.AlarmStatusWidget(
            title="Alarms of the lake" + (f" ({i} of {len(chunks)})" if len(chunks) > 1 else ""),
            alarms=list(chunk),
            width=24,
            height=3 + len(chunk) // 8,
            sort_by=cloudwatch.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
        )
        for i, chunk in enumerate(chunks, start=1)
    ]


def searched(namespace: str, terms: str, statistic: str, period: int = 3600) -> cloudwatch.SearchExpression:
    """Every metric of ``namespace`` that ``terms`` find, per ``period`` seconds (an hour),
    whatever its dimensions.

    A metric given by name and dimensions shows only when those are all of its dimensions, and
    neither Glue Data Quality, Athena nor Redshift Serverless documents the dimension sets they
    publish under. A search (CloudWatch's search expression syntax: exact values in double
    quotes, dimension names as designators) finds them either way."""
    return cloudwatch.SearchExpression(
        expression=f"SEARCH(' Namespace=\"{namespace}\" {terms} ', '{statistic}', {period})", label=""
    )


class ObservabilityStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        ingestion: IngestionStack,
        processing: ProcessingStack,
        warehouse: RedshiftWarehouse | None = None,
        alarms: Sequence[cloudwatch.Alarm] = (),
        **kwargs: Any,
    ) -> None:
        """``alarms``: every alarm of the lake, shown first with its state (the app passes those
        of all its other stacks), by the ARNs their names give (:func:`alarm_arn`: no output of
        their stacks, which would otherwise need one an alarm); ``warehouse``: the consumption
        stack's, when Redshift is on."""
        super().__init__(scope, construct_id, **kwargs)
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{stage.prefix}-pipeline",
            default_interval=Duration.days(1),
        )
        self.node.add_validation(DashboardQuota(self.dashboard, len(ingestion.streams)))
        for widget in alarm_status_widgets([self._alarm(alarm) for alarm in alarms]):
            self.dashboard.add_widgets(widget)
        for name, stream in ingestion.streams.items():
            pipeline = processing.pipelines[name]
            self.dashboard.add_widgets(
                cloudwatch.TextWidget(markdown=f"## Dataset `{name}`", width=24, height=1),
            )
            self.dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title="Firehose: records in, data freshness (s)",
                    left=[stream.metric_incoming_records()],
                    right=[stream.metric_freshness()],
                    width=6,
                ),
                cloudwatch.GraphWidget(
                    title="Transform: records",
                    left=[
                        stream.metric_transform(m)
                        for m in ("RecordsOk", "RecordsRejected", "RecordsProcessingFailed")
                    ],
                    width=6,
                ),
                cloudwatch.GraphWidget(
                    title="Transform: errors and duration",
                    left=[stream.function.metric_errors()],
                    right=[stream.function.metric_duration(statistic="p99")],
                    width=6,
                ),
                cloudwatch.GraphWidget(
                    title="Pipeline runs",
                    left=[
                        pipeline.state_machine.metric_succeeded(),
                        pipeline.state_machine.metric_failed(),
                        pipeline.state_machine.metric_timed_out(),
                    ],
                    width=6,
                ),
            )
            self.dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title="Job: rows",
                    left=[pipeline.metric_rows(m) for m in JOB_COUNTS],
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title="Job: ETL time per hour (ms)",
                    left=[
                        cloudwatch.Metric(
                            namespace="Glue",
                            metric_name="glue.driver.aggregate.elapsedTime",
                            dimensions_map={"JobName": pipeline.job.ref, "JobRunId": "ALL", "Type": "count"},
                            # Glue reports it as deltas every 30 seconds (its metrics page: SUM),
                            # so an hour's sum is the ETL time its runs spent in that hour
                            statistic="Sum",
                            period=Duration.hours(1),
                        )
                    ],
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title="Data quality: rules passed and failed",
                    # rules passed and failed of each evaluation: the ruleset's name as a value
                    left=[searched("Glue Data Quality", f'"{pipeline.ruleset_name}"', "Maximum")],
                    width=8,
                ),
            )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Athena: bytes scanned (analysts' and regional analysts' workgroups)",
                left=[
                    searched("AWS/Athena", f'MetricName="ProcessedBytes" WorkGroup="{workgroup}"', "Sum")
                    for workgroup in (athena_workgroup_name(stage), athena_workgroup_name(stage, REGIONAL))
                ],
                width=24,
            )
        )
        if warehouse is not None:
            self._warehouse(warehouse)

    def _alarm(self, alarm: cloudwatch.Alarm) -> cloudwatch.IAlarm:
        """``alarm`` of another stack, by the ARN its name gives (imported once)."""
        construct_id = f"Alarm{Names.unique_id(alarm)}"
        found = self.node.try_find_child(construct_id)
        if found is not None:
            return found  # type: ignore[return-value]
        return cloudwatch.Alarm.from_alarm_arn(self, construct_id, alarm_arn(self, alarm))

    def _warehouse(self, warehouse: RedshiftWarehouse) -> None:
        """A row for the warehouse: the RPUs it runs on, its month's RPU-hours against the usage
        limit's alarm, its queries, and its refreshes."""
        name = warehouse.workgroup.workgroup_name
        # the workgroup's name, as a search term: the metrics' dimension sets are not documented
        # (the namespace bears the same name)
        serverless = "AWS/Redshift-Serverless"
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown=f"## Warehouse `{name}`", width=24, height=1),
        )
        refresh_rules = {
            "finished": warehouse.refresh_finished_rule,
            "failed or aborted": warehouse.refresh_failed_rule,
        }
        refreshes = [
            rule_invocations(rule.ref).with_(label=f"refreshes {outcome}")
            for outcome, rule in refresh_rules.items()
            if rule is not None
        ]
        # one row across the dashboard's 24 columns (no refresh widget without refresh procedures
        # in the warehouse's SQL)
        width = 24 // (4 if refreshes else 3)
        widgets: list[cloudwatch.IWidget] = [
            cloudwatch.GraphWidget(
                title="Warehouse: RPUs in use (highest per hour)",
                width=width,
                # the average RPUs of the past 30 minutes, as Redshift Serverless publishes it
                left=[searched(serverless, f'MetricName="ComputeCapacity" "{name}"', "Maximum")],
            ),
            cloudwatch.AlarmWidget(
                title="Warehouse: RPU-hours used this month, and the alarm's threshold",
                alarm=self._alarm(warehouse.usage_alarm),
                width=width,
            ),
            cloudwatch.GraphWidget(
                title="Warehouse: queries succeeded and failed (per 5 minutes)",
                # each a count of the past 5 minutes: the highest in each 5 minutes, not a sum of
                # windows that may overlap
                left=[
                    searched(serverless, f'MetricName="{metric}" "{name}"', "Maximum", 300)
                    for metric in ("QueriesSucceeded", "QueriesFailed")
                ],
                width=width,
            ),
        ]
        if refreshes:
            widgets.append(
                cloudwatch.GraphWidget(
                    title="Warehouse: refreshes finished and failed (notices and alerts sent)",
                    left=refreshes,
                    width=width,
                )
            )
        self.dashboard.add_widgets(*widgets)
