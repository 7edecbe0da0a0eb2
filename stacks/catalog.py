"""Catalog: Glue databases and tables from the dataset files, the audit table, and who may read them.

With Lake Formation on, the tables are tagged (zone, classification, PII columns) and the
personas and service roles are granted access here, after the tables and tag associations
exist and before the processing stack's jobs and crawlers deploy.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_glue as glue
from constructs import Construct

from cdk_constructs.athena import sql_workgroup
from cdk_constructs.audit import AuditQueries
from cdk_constructs.bootstrap import assets_bucket_name
from cdk_constructs.catalog import CuratedTables, RawTables, database
from cdk_constructs.ingestion import error_prefix, raw_prefix, rejected_prefix
from cdk_constructs.lake_formation import CatalogPermissions, GovernedTable, RowFilter, TableGrant
from cdk_constructs.storage import LakeStorage
from config import StageConfig
from datalake.dataset import Dataset
from stacks.common import database_name, removal_policy
from stacks.governance import GovernanceStack


def pii_key_prefixes(datasets: tuple[Dataset, ...]) -> list[str]:
    """Object-key prefixes (raw and curated buckets) that hold PII, for the audit queries."""
    prefixes: list[str] = []
    for ds in datasets:
        if ds.pii_columns:
            prefixes += [
                raw_prefix(ds),
                rejected_prefix(ds),
                error_prefix(ds),
                f"{ds.name}/",
                f"{ds.quarantine_name}/",
            ]
    return list(dict.fromkeys(prefixes))


class CatalogStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        datasets: tuple[Dataset, ...],
        storage: LakeStorage,
        governance: GovernanceStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        lake_formation = stage.features.lake_formation
        self.raw_database = database(
            self,
            "RawDatabase",
            name=database_name(stage, "raw"),
            description="Raw zone: records as Firehose delivered them (JSON, gzip), rejects and delivery errors.",
            location=f"s3://{storage.raw.bucket_name}/",
            lake_formation=lake_formation,
        )
        self.raw_tables: dict[str, RawTables] = {}
        for ds in datasets:
            self.raw_tables[ds.name] = RawTables(
                self,
                f"Raw{ds.name.title().replace('_', '')}",
                dataset=ds,
                database=self.raw_database,
                raw_bucket=storage.raw.bucket,
                data_prefix=raw_prefix(ds),
                rejected_prefix=rejected_prefix(ds),
                error_prefix=error_prefix(ds),
            )
        self.curated_database_name = database_name(stage, "curated")
        self.curated_database = database(
            self,
            "CuratedDatabase",
            name=self.curated_database_name,
            description="Curated zone: typed, validated, deduplicated Parquet partitioned by event day (UTC).",
            location=f"s3://{storage.curated.bucket_name}/",
            lake_formation=lake_formation,
        )
        self.curated_tables: dict[str, CuratedTables] = {}
        for ds in datasets:
            self.curated_tables[ds.name] = CuratedTables(
                self,
                f"Curated{ds.name.title().replace('_', '')}",
                dataset=ds,
                database=self.curated_database,
                curated_bucket=storage.curated.bucket,
            )

        self.audit: AuditQueries | None = None
        if storage.audit is not None:
            self.audit_workgroup = sql_workgroup(
                self,
                "AuditWorkgroup",
                name=f"{stage.prefix}-audit",
                description="Audit queries over the CloudTrail trail (who read PII, who changed permissions)",
                results_bucket=storage.athena_results.bucket,
                key=storage.athena_results.bucket.encryption_key,  # type: ignore[arg-type]
                bytes_scanned_cutoff=stage.athena_bytes_scanned_cutoff,
                removal_policy=removal_policy(stage),
            )
            self.audit = AuditQueries(
                self,
                "Audit",
                database_name=database_name(stage, "audit"),
                trail_bucket_name=storage.audit.bucket_name,
                workgroup=self.audit_workgroup,
                pii_prefixes=pii_key_prefixes(datasets),
                assets_bucket=assets_bucket_name(self),
                lake_formation=lake_formation,
            )

        self.permissions: CatalogPermissions | None = None
        if governance.lake_formation is not None:
            self.permissions = self._permissions(stage, datasets, governance, storage)

    def _permissions(
        self,
        stage: StageConfig,
        datasets: tuple[Dataset, ...],
        governance: GovernanceStack,
        storage: LakeStorage,
    ) -> CatalogPermissions:
        setup = governance.lake_formation
        assert setup is not None
        personas = governance.personas
        raw_db, curated_db = database_name(stage, "raw"), self.curated_database_name
        tables: list[GovernedTable] = []
        curated: dict[str, tuple[GovernedTable, GovernedTable]] = {}
        for ds in datasets:
            cls = ds.governance.classification
            # Rejects, delivery errors and quarantine keep whole raw records: PII when any column is.
            whole = "pii" if ds.pii_columns else cls
            raw = self.raw_tables[ds.name]
            tables += [
                GovernedTable(raw.table, raw_db, ds.name, cls, ds.pii_columns),
                GovernedTable(raw.rejected_table, raw_db, f"{ds.name}_rejected", whole),
                GovernedTable(raw.errors_table, raw_db, f"{ds.name}_delivery_errors", whole),
            ]
            ct = self.curated_tables[ds.name]
            pair = (
                GovernedTable(ct.table, curated_db, ct.table_name, cls, ds.pii_columns),
                GovernedTable(ct.quarantine_table, curated_db, ct.quarantine_table_name, whole),
            )
            curated[ds.name] = pair
            tables += pair
        databases: dict[str, tuple[glue.CfnDatabase, str]] = {
            raw_db: (self.raw_database, "raw"),
            curated_db: (self.curated_database, "curated"),
        }
        if self.audit is not None:
            databases[database_name(stage, "audit")] = (self.audit.database, "audit")
        service_grants: list[TableGrant] = []
        for ds in datasets:
            roles = personas.pipelines[ds.name]
            service_grants += [
                # The job writes files itself, registers partitions (BatchCreatePartition) and
                # removes the ones of days it emptied (BatchDeletePartition); data-quality runs
                # read the table through Lake Formation.
                TableGrant(roles.job, curated[ds.name], ("SELECT", "INSERT", "DELETE", "ALTER", "DESCRIBE")),
                # The crawler reads the curated location with Lake Formation credentials and may
                # only update partitions; no CREATE_TABLE, so drift cannot become a new table.
                TableGrant(
                    roles.crawler,
                    curated[ds.name],
                    ("SELECT", "ALTER", "DESCRIBE"),
                    database_permissions=("DESCRIBE", "ALTER"),
                    locations=(storage.curated.reference(self, f"Curated{ds.name}Location").bucket_arn,),
                ),
            ]
        readers = [personas.analyst.role_arn]
        if personas.spectrum_analyst is not None:
            # the warehouse's analysts read the curated tables through this role's external schema
            readers.append(personas.spectrum_analyst.role_arn)
        if personas.quicksight is not None and stage.features.quicksight_principal_arn:
            # Athena checks the data source's role; QuickSight's Lake Formation integration also
            # evaluates grants to the QuickSight user or group. Both read as analysts do.
            readers += [personas.quicksight.role_arn, stage.features.quicksight_principal_arn]
        row_filters = [
            RowFilter(
                curated[ds.name][0],
                ds.governance.row_filter_column,
                ds.governance.row_filter_values,
                personas.regional_analyst,
            )
            for ds in datasets
            if ds.governance.row_filter_column
        ]
        return CatalogPermissions(
            self,
            "LakeFormation",
            databases=databases,
            tables=tables,
            tag_keys=(setup.zone_tag.ref, setup.classification_tag.ref),
            engineers=[personas.engineer.role_arn],
            readers=readers,
            pii_readers=[r.role_arn for r in (personas.spectrum, personas.notebooks) if r is not None],
            service_grants=service_grants,
            row_filters=row_filters,
        )
