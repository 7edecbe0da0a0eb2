"""Observability: one CloudWatch dashboard for the whole pipeline, across the stacks.

Built from the L2 widgets rather than cdk-monitoring-constructs: the dashboard needs a dozen
metrics the constructs already expose (``metric_*``), and the library would add a large jsii
module to every synth for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from cdk_constructs.processing import JOB_COUNTS
from config import StageConfig
from stacks.governance import REGIONAL, athena_workgroup_name
from stacks.ingestion import IngestionStack
from stacks.processing import ProcessingStack


def searched(namespace: str, terms: str, statistic: str) -> cloudwatch.SearchExpression:
    """Every metric of ``namespace`` that ``terms`` find, per hour, whatever its dimensions.

    A metric given by name and dimensions shows only when those are all of its dimensions, and
    neither Glue Data Quality nor Athena documents the dimension sets they publish under. A
    search (CloudWatch's search expression syntax: exact values in double quotes, dimension
    names as designators) finds them either way."""
    return cloudwatch.SearchExpression(
        expression=f"SEARCH(' Namespace=\"{namespace}\" {terms} ', '{statistic}', 3600)", label=""
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
        alarms: Sequence[cloudwatch.IAlarm] = (),
        **kwargs: Any,
    ) -> None:
        """``alarms``: every alarm of the lake, shown first with its state (the app passes those
        of all its other stacks)."""
        super().__init__(scope, construct_id, **kwargs)
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{stage.prefix}-pipeline",
            default_interval=Duration.days(1),
        )
        if alarms:
            # Across the full width, a little taller for every eight alarms.
            self.dashboard.add_widgets(
                cloudwatch.AlarmStatusWidget(
                    title="Alarms of the lake",
                    alarms=list(alarms),
                    width=24,
                    height=3 + len(alarms) // 8,
                    sort_by=cloudwatch.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
                )
            )
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
