"""Catalog: Glue databases and the tables derived from the dataset files."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from cdk_constructs.catalog import CuratedTables, RawTables, database
from cdk_constructs.ingestion import error_prefix, raw_prefix, rejected_prefix
from cdk_constructs.storage import LakeStorage
from config import StageConfig
from datalake.dataset import Dataset


def database_name(stage: StageConfig, zone: str) -> str:
    return f"{stage.prefix.replace('-', '_')}_{zone}"


class CatalogStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        datasets: tuple[Dataset, ...],
        storage: LakeStorage,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.raw_database = database(
            self,
            "RawDatabase",
            name=database_name(stage, "raw"),
            description="Raw zone: records as Firehose delivered them (JSON, gzip), rejects and delivery errors.",
            location=f"s3://{storage.raw.bucket_name}/",
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
