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
from cdk_constructs.personas import Personas
from cdk_constructs.storage import LakeStorage
from config import StageConfig
from datalake.dataset import Dataset
from stacks.common import database_name, dataset_stack, removal_policy
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
    """The databases, the audit table and the grants by tag expression; each dataset's tables,
    their tags and its pipeline roles' grants in a nested stack of its own
    (:func:`~stacks.common.dataset_stack`), so datasets are not capped by the 500 resources of
    one stack."""

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
        self.raw_database_name = database_name(stage, "raw")
        self.raw_database = database(
            self,
            "RawDatabase",
            name=self.raw_database_name,
            description="Raw zone: records as Firehose delivered them (JSON, gzip), rejects and delivery errors.",
            location=f"s3://{storage.raw.bucket_name}/",
            lake_formation=lake_formation,
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
        setup = governance.lake_formation
        if setup is not None:
            databases: dict[str, tuple[glue.CfnDatabase, str]] = {
                self.raw_database_name: (self.raw_database, "raw"),
                self.curated_database_name: (self.curated_database, "curated"),
            }
            if self.audit is not None:
                databases[database_name(stage, "audit")] = (self.audit.database, "audit")
            self.permissions = CatalogPermissions(
                self,
                "LakeFormation",
                databases=databases,
                tag_keys=(setup.zone_tag.ref, setup.classification_tag.ref),
            )

        self.raw_tables: dict[str, RawTables] = {}
        self.curated_tables: dict[str, CuratedTables] = {}
        for ds in datasets:
            holds = "Glue tables" + (", their Lake Formation tags and the pipeline's grants" if setup else "")
            nested = dataset_stack(self, ds, holds)
            # by name: its tables' databases
            nested.node.add_dependency(self.raw_database, self.curated_database)
            raw = RawTables(
                nested,
                f"Raw{ds.construct_id}",
                dataset=ds,
                database=self.raw_database_name,
                raw_bucket=storage.raw.bucket,
                data_prefix=raw_prefix(ds),
                rejected_prefix=rejected_prefix(ds),
                error_prefix=error_prefix(ds),
            )
            curated = CuratedTables(
                nested,
                f"Curated{ds.construct_id}",
                dataset=ds,
                database=self.curated_database_name,
                curated_bucket=storage.curated.bucket,
            )
            self.raw_tables[ds.name], self.curated_tables[ds.name] = raw, curated
            if self.permissions is not None:
                self._dataset_permissions(
                    nested, ds, raw, curated, personas=governance.personas, storage=storage
                )

        if self.permissions is not None:
            personas = governance.personas
            self.permissions.grant_by_tags(
                engineers=[personas.engineer.role_arn],
                readers=self._readers(stage, personas),
                pii_readers=[r.role_arn for r in (personas.spectrum, personas.notebooks) if r is not None],
            )

    def _dataset_permissions(
        self,
        scope: Construct,
        ds: Dataset,
        raw: RawTables,
        curated: CuratedTables,
        *,
        personas: Personas,
        storage: LakeStorage,
    ) -> None:
        """``ds``'s tables' tags, its pipeline roles' grants and its row filter, in ``scope``."""
        assert self.permissions is not None
        raw_db, curated_db = self.raw_database_name, self.curated_database_name
        cls = ds.governance.classification
        # Rejects, delivery errors and quarantine keep whole raw records: PII when any column is.
        whole = "pii" if ds.pii_columns else cls
        tables = (
            GovernedTable(curated.table, curated_db, curated.table_name, cls, ds.pii_columns),
            GovernedTable(curated.quarantine_table, curated_db, curated.quarantine_table_name, whole),
        )
        roles = personas.pipelines[ds.name].reference(scope)
        self.permissions.add_dataset(
            scope,
            f"LakeFormation{ds.construct_id}",
            tables=(
                GovernedTable(raw.table, raw_db, ds.name, cls, ds.pii_columns),
                GovernedTable(raw.rejected_table, raw_db, f"{ds.name}_rejected", whole),
                GovernedTable(raw.errors_table, raw_db, f"{ds.name}_delivery_errors", whole),
                *tables,
            ),
            service_grants=(
                # The job writes files itself, registers partitions (BatchCreatePartition) and
                # removes the ones of days it emptied (BatchDeletePartition); data-quality runs
                # read the table through Lake Formation.
                TableGrant(roles.job, tables, ("SELECT", "INSERT", "DELETE", "ALTER", "DESCRIBE")),
                # The crawler reads the curated location with Lake Formation credentials and may
                # only update partitions; no CREATE_TABLE, so drift cannot become a new table.
                TableGrant(
                    roles.crawler,
                    tables,
                    ("SELECT", "ALTER", "DESCRIBE"),
                    database_permissions=("DESCRIBE", "ALTER"),
                    locations=(storage.curated.reference(scope, f"Curated{ds.name}Location").bucket_arn,),
                ),
            ),
            row_filters=(
                [
                    RowFilter(
                        tables[0],
                        ds.governance.row_filter_column,
                        ds.governance.row_filter_values,
                        personas.regional_analyst,
                    )
                ]
                if ds.governance.row_filter_column
                else []
            ),
        )

    @staticmethod
    def _readers(stage: StageConfig, personas: Personas) -> list[str]:
        """Who reads the curated and analytics tables without their PII columns."""
        readers = [personas.analyst.role_arn]
        if personas.spectrum_analyst is not None:
            # the warehouse's analysts read the curated tables through this role's external schema
            readers.append(personas.spectrum_analyst.role_arn)
        if personas.quicksight is not None and stage.features.quicksight_principal_arn:
            # Athena checks the data source's role; QuickSight's Lake Formation integration also
            # evaluates grants to the QuickSight user or group. Both read as analysts do.
            readers += [personas.quicksight.role_arn, stage.features.quicksight_principal_arn]
        return readers
