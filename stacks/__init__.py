"""Deployment units of the lake, composed by :func:`build_lake` in dependency order."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import App, Environment, Stack, Tags
from aws_cdk import aws_cloudwatch as cloudwatch

from cdk_constructs.ingestion import raw_expirations
from cdk_constructs.quicksight import check_dashboard_dataset
from config import StageConfig
from config.stages import PROJECT_TAG, STAGE_TAG, check_producers
from datalake import sql
from datalake.dataset import Dataset, check_name_lengths
from datalake.quality import check_rulesets
from stacks.catalog import CatalogStack
from stacks.common import StackQuotas, permissions_boundary
from stacks.consumption import ConsumptionStack
from stacks.foundation import FoundationStack
from stacks.governance import GovernanceStack
from stacks.ingestion import IngestionStack
from stacks.observability import ObservabilityStack
from stacks.processing import ProcessingStack


@dataclass
class Lake:
    """The stacks of one stage, for tests and tools that read the app."""

    foundation: FoundationStack
    governance: GovernanceStack
    catalog: CatalogStack
    ingestion: IngestionStack
    processing: ProcessingStack
    consumption: ConsumptionStack
    observability: ObservabilityStack

    @property
    def stacks(self) -> list[Stack]:
        return [
            self.foundation,
            self.governance,
            self.catalog,
            self.ingestion,
            self.processing,
            self.consumption,
            self.observability,
        ]


def check_inputs(stage: StageConfig, datasets: tuple[Dataset, ...]) -> None:
    """What the stage and the dataset files must agree on before any construct is built; raises
    one clear error (``DatasetConfigError`` or ``ValueError``) naming the file and the fix."""
    check_name_lengths(datasets, stage.prefix)
    check_producers(stage, [ds.name for ds in datasets])
    check_rulesets(datasets)
    sql.check_tables({t for ds in datasets for t in (ds.name, ds.quarantine_name)})
    if stage.features.redshift:
        sql.check_refresh_procedures()
    if stage.features.quicksight_principal_arn:
        check_dashboard_dataset(datasets)


def build_lake(app: App, stage: StageConfig, datasets: tuple[Dataset, ...]) -> Lake:
    """Add every stack of ``stage`` to ``app``. Dependencies flow one way: stateful to stateless."""
    env = Environment(account=stage.account, region=stage.region) if stage.account or stage.region else None
    common = {
        "env": env,
        "termination_protection": stage.termination_protection,
        "permissions_boundary": permissions_boundary(stage),
    }
    foundation = FoundationStack(
        app,
        f"{stage.prefix}-foundation",
        stage=stage,
        raw_expirations=raw_expirations(datasets, stage.lifecycle.rejected_expire_after),
        description=f"Governed data lake ({stage.name}): keys, zone buckets, alert topic",
        **common,  # type: ignore[arg-type]
    )
    governance = GovernanceStack(
        app,
        f"{stage.prefix}-governance",
        stage=stage,
        datasets=datasets,
        foundation=foundation,
        description=f"Governed data lake ({stage.name}): personas, Lake Formation settings and tags, Macie",
        **common,  # type: ignore[arg-type]
    )
    catalog = CatalogStack(
        app,
        f"{stage.prefix}-catalog",
        stage=stage,
        datasets=datasets,
        storage=foundation.storage,
        governance=governance,
        description=f"Governed data lake ({stage.name}): Glue databases and tables from the dataset files",
        **common,  # type: ignore[arg-type]
    )
    ingestion = IngestionStack(
        app,
        f"{stage.prefix}-ingestion",
        stage=stage,
        datasets=datasets,
        keys=foundation.keys,
        storage=foundation.storage,
        alerts=foundation.alerts,
        description=f"Governed data lake ({stage.name}): Firehose per dataset, transform, alarms",
        **common,  # type: ignore[arg-type]
    )
    processing = ProcessingStack(
        app,
        f"{stage.prefix}-processing",
        stage=stage,
        datasets=datasets,
        keys=foundation.keys,
        storage=foundation.storage,
        alerts=foundation.alerts,
        notices=foundation.notices,
        schedule_group=foundation.schedules.schedule_group_name,
        catalog=catalog,
        personas=governance.personas,
        description=f"Governed data lake ({stage.name}): Glue jobs, crawlers, data quality, state machines",
        **common,  # type: ignore[arg-type]
    )
    # Explicit, as stacks address foundation resources by name too (no token reference).
    # Lake Formation's order: settings, registration, tags (governance), then tables, tag
    # associations and grants (catalog), then the jobs and crawlers that use them (processing).
    governance.add_stack_dependency(foundation)
    catalog.add_stack_dependency(governance)
    ingestion.add_stack_dependency(foundation)
    processing.add_stack_dependency(catalog)
    consumption = ConsumptionStack(
        app,
        f"{stage.prefix}-consumption",
        stage=stage,
        datasets=datasets,
        foundation=foundation,
        governance=governance,
        description=f"Governed data lake ({stage.name}): Athena workgroups, queries and reports, Redshift Serverless",
        **common,  # type: ignore[arg-type]
    )
    consumption.add_stack_dependency(catalog)
    stacks = (foundation, governance, catalog, ingestion, processing, consumption)
    observability = ObservabilityStack(
        app,
        f"{stage.prefix}-observability",
        stage=stage,
        ingestion=ingestion,
        processing=processing,
        warehouse=consumption.warehouse,
        alarms=[c for s in stacks for c in s.node.find_all() if isinstance(c, cloudwatch.Alarm)],
        description=f"Governed data lake ({stage.name}): pipeline dashboard",
        **common,  # type: ignore[arg-type]
    )
    # The dashboard shows every stack's alarms by name, not by reference: deployed after them.
    for shown in stacks:
        observability.add_stack_dependency(shown)
    lake = Lake(
        foundation=foundation,
        governance=governance,
        catalog=catalog,
        ingestion=ingestion,
        processing=processing,
        consumption=consumption,
        observability=observability,
    )
    for stack in lake.stacks:
        Tags.of(stack).add(PROJECT_TAG, "governed-data-lake")
        Tags.of(stack).add(STAGE_TAG, stage.name)
        for key, value in stage.tags.items():
            Tags.of(stack).add(key, value)
        stack.node.add_validation(StackQuotas(stack, len(datasets)))
    return lake
