"""Governance: personas and service roles, Lake Formation foundations, Macie scanning.

Deploys after the foundation and before the catalog, so that the CDK execution role is a data
lake admin and the zones are registered and tagged before any database or table exists.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from cdk_constructs.lake_formation import LakeFormationSetup, Zone
from cdk_constructs.macie import MacieScanning
from cdk_constructs.personas import LakeAccess, Personas
from config import StageConfig
from datalake.dataset import Dataset
from stacks.common import database_name, log_retention, removal_policy
from stacks.foundation import FoundationStack


def athena_workgroup_name(stage: StageConfig, purpose: str = "analysts") -> str:
    return f"{stage.prefix}-{purpose}"


#: The regional analysts' workgroup (``<prefix>-regional-analysts``): apart from the analysts', so
#: that the regional analyst reads none of the analysts' query results, which hold rows it may not see.
REGIONAL = "regional-analysts"


class GovernanceStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        datasets: tuple[Dataset, ...],
        foundation: FoundationStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        features = stage.features
        keys, storage = foundation.keys, foundation.storage
        # Deterministic names: no export, so the foundation can change without blocking on us.
        buckets = {
            zone: getattr(storage, zone).reference(self, f"{zone.title().replace('_', '')}Bucket")
            for zone in ("raw", "curated", "analytics", "athena_results")
        }
        audit_bucket = storage.audit.reference(self, "AuditBucket") if storage.audit is not None else None
        self.personas = Personas(
            self,
            "Personas",
            prefix=stage.prefix,
            datasets=datasets,
            access=LakeAccess(
                database_prefix=stage.prefix.replace("-", "_"),
                curated_database=database_name(stage, "curated"),
                analyst_workgroup=athena_workgroup_name(stage),
                regional_workgroup=athena_workgroup_name(stage, REGIONAL),
                workgroup_prefix=stage.prefix,
                raw_bucket=buckets["raw"],
                curated_bucket=buckets["curated"],
                analytics_bucket=buckets["analytics"],
                athena_results_bucket=buckets["athena_results"],
                audit_bucket=audit_bucket,
                raw_key=keys.raw,
                curated_key=keys.curated,
                analytics_key=keys.analytics,
                logs_key=keys.logs,
            ),
            lake_formation=features.lake_formation,
            spectrum=features.redshift,
            quicksight=features.quicksight_principal_arn is not None,
            notebook_workgroup=athena_workgroup_name(stage, "notebooks") if features.athena_spark else None,
        )
        self.lake_formation: LakeFormationSetup | None = None
        if features.lake_formation:
            self.lake_formation = LakeFormationSetup(
                self,
                "LakeFormation",
                prefix=stage.prefix,
                admins=stage.lake_admin_arns,
                zones=[Zone(z, buckets[z], keys.zone_keys[z]) for z in ("raw", "curated", "analytics")],
                tag_prefix=stage.lf_tag_prefix,
            )
        self.macie: MacieScanning | None = None
        if features.macie:
            self.macie = MacieScanning(
                self,
                "Macie",
                prefix=stage.prefix,
                buckets=[buckets["raw"].bucket_name, buckets["curated"].bucket_name],
                expected_pii_bucket=buckets["curated"].bucket_name,
                alert_topic=foundation.alerts.reference(self, "AlertTopic"),
                logs_key=keys.logs,
                log_retention=log_retention(stage),
                removal_policy=removal_policy(stage),
                frequency=stage.macie_job_frequency,
                results=foundation.macie_results,
            )
