"""Glue Data Catalog tables derived from the dataset files."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_s3 as s3
from constructs import Construct

from datalake.dataset import RAW_PARTITIONS, Dataset

JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"
TEXT_INPUT = "org.apache.hadoop.mapred.TextInputFormat"
TEXT_OUTPUT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
#: Years that partition projection enumerates; the transform rejects event times outside them.
PROJECTED_YEARS = "2000,2099"

REJECTED_COLUMNS = (
    ("dataset", "string", "Dataset the record was sent to."),
    ("record_id", "string", "Firehose record id."),
    ("reason", "string", "First reason the record was rejected."),
    ("reasons", "array<string>", "Every reason (at most ten)."),
    ("ingested_at", "string", "When the transform saw the record (UTC, ISO-8601)."),
    ("source_stream", "string", "Delivery or Kinesis stream the record came through."),
    ("raw_text", "string", "The payload as text, or null when it is not UTF-8."),
    ("raw_base64", "string", "The payload exactly as received, base64-encoded."),
)
#: Firehose's own error documents (https://docs.aws.amazon.com/firehose/latest/dev/basic-deliver.html#retry).
DELIVERY_ERROR_COLUMNS = (
    ("attemptsmade", "int", "Delivery or processing attempts."),
    ("arrivaltimestamp", "bigint", "Arrival time (epoch ms)."),
    ("errorcode", "string", "Firehose error code."),
    ("errormessage", "string", "Firehose error message."),
    ("attemptendingtimestamp", "bigint", "When Firehose gave up (epoch ms)."),
    ("rawdata", "string", "The original record, base64-encoded."),
    ("lambdaarn", "string", "The transform that failed, for processing failures."),
)


def raw_column_type(glue_type: str) -> str:
    """Raw JSON keeps timestamps as ISO-8601 text (``...T..Z``, which the JSON SerDe cannot parse)."""
    return glue_type.replace("timestamp", "string")


def _projection(location: str, keys: Sequence[str], extra: dict[str, str] | None = None) -> dict[str, str]:
    params = {"projection.enabled": "true", "classification": "json", "compressionType": "gzip"}
    ranges = {
        "year": (PROJECTED_YEARS, None),
        "month": ("1,12", "2"),
        "day": ("1,31", "2"),
        "hour": ("0,23", "2"),
    }
    for key in keys:
        if key in ranges:
            value_range, digits = ranges[key]
            params[f"projection.{key}.type"] = "integer"
            params[f"projection.{key}.range"] = value_range
            if digits:
                params[f"projection.{key}.digits"] = digits
    params["storage.location.template"] = location + "/".join(f"{k}=${{{k}}}" for k in keys) + "/"
    params.update(extra or {})
    return params


def external_table(
    scope: Construct,
    construct_id: str,
    *,
    database: str,
    name: str,
    description: str,
    location: str,
    columns: Sequence[tuple[str, str, str]],
    partition_keys: Sequence[tuple[str, str]],
    parameters: dict[str, str],
    storage: dict[str, object],
) -> glue.CfnTable:
    """An external Glue table in the ``database`` of that name; ``storage`` holds the format's
    input/output formats and SerDe. The caller orders it after the database (a dataset's nested
    stack names its parent's database instead of taking its ``Ref`` as a parameter)."""
    return glue.CfnTable(
        scope,
        construct_id,
        catalog_id=Aws.ACCOUNT_ID,
        database_name=database,
        table_input=glue.CfnTable.TableInputProperty(
            name=name,
            description=description,
            table_type="EXTERNAL_TABLE",
            parameters=parameters,
            partition_keys=[
                glue.CfnTable.ColumnProperty(name=k, type="string", comment=c) for k, c in partition_keys
            ],
            storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                location=location,
                columns=[glue.CfnTable.ColumnProperty(name=n, type=t, comment=c) for n, t, c in columns],
                **storage,  # type: ignore[arg-type]
            ),
        ),
    )


#: gzip JSON lines as Firehose writes them.
JSON_STORAGE: dict[str, object] = {
    "input_format": TEXT_INPUT,
    "output_format": TEXT_OUTPUT,
    "compressed": True,
    "serde_info": glue.CfnTable.SerdeInfoProperty(
        serialization_library=JSON_SERDE,
        parameters={"ignore.malformed.json": "FALSE", "case.insensitive": "TRUE"},
    ),
}


class RawTables(Construct):
    """Tables over one dataset's raw zone, queryable the minute Firehose delivers (partition projection).

    * ``<dataset>``: valid, normalized records under ``<dataset>/year=/month=/day=/hour=/``;
    * ``<dataset>_rejected``: rejected records with their reasons;
    * ``<dataset>_delivery_errors``: Firehose's processing and partitioning failures; filter on
      ``error_type`` (``processing-failed``, ``partitioning-failed``...).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dataset: Dataset,
        database: str,
        raw_bucket: s3.IBucket,
        data_prefix: str,
        rejected_prefix: str,
        error_prefix: str,
    ) -> None:
        super().__init__(scope, construct_id)
        base = f"s3://{raw_bucket.bucket_name}/"
        hour_keys = [(k, f"{k.capitalize()} (UTC) of the partition time.") for k in RAW_PARTITIONS]
        columns = [(n, raw_column_type(t), c) for n, t, c in dataset.glue_columns()]
        self.table = external_table(
            self,
            "Table",
            database=database,
            name=dataset.name,
            description=f"{dataset.description} Raw, validated by the Firehose transform; partitioned by event time (UTC).",
            location=base + data_prefix,
            columns=columns,
            partition_keys=hour_keys,
            parameters=_projection(base + data_prefix, RAW_PARTITIONS),
            storage=JSON_STORAGE,
        )
        self.rejected_table = external_table(
            self,
            "RejectedTable",
            database=database,
            name=f"{dataset.name}_rejected",
            description=f"Records of {dataset.name} rejected by the transform, with reasons; partitioned by ingest time.",
            location=base + rejected_prefix,
            columns=REJECTED_COLUMNS,
            partition_keys=hour_keys,
            parameters=_projection(base + rejected_prefix, RAW_PARTITIONS),
            storage=JSON_STORAGE,
        )
        error_keys = ["error_type", *RAW_PARTITIONS]
        self.errors_table = external_table(
            self,
            "DeliveryErrorsTable",
            database=database,
            name=f"{dataset.name}_delivery_errors",
            description=f"Firehose processing and partitioning failures of {dataset.name} (filter on error_type).",
            location=base + error_prefix,
            columns=DELIVERY_ERROR_COLUMNS,
            partition_keys=[("error_type", "Firehose error output type."), *hour_keys],
            parameters=_projection(
                base + error_prefix, error_keys, {"projection.error_type.type": "injected"}
            ),
            storage=JSON_STORAGE,
        )
        self.table_names = [f"{dataset.name}", f"{dataset.name}_rejected", f"{dataset.name}_delivery_errors"]


def database(
    scope: Construct,
    construct_id: str,
    *,
    name: str,
    description: str,
    location: str,
    lake_formation: bool = False,
) -> glue.CfnDatabase:
    """A Glue database. With ``lake_formation``, its new tables get no ``IAM_ALLOWED_PRINCIPALS``
    grant: Lake Formation permissions alone decide who reads them."""
    return glue.CfnDatabase(
        scope,
        construct_id,
        catalog_id=Stack.of(scope).account,
        database_input=glue.CfnDatabase.DatabaseInputProperty(
            name=name,
            description=description,
            location_uri=location,
            create_table_default_permissions=[] if lake_formation else None,
        ),
    )


PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
CURATED_PARTITION_KEYS = (
    ("year", "Year of the event time (UTC)."),
    ("month", "Month of the event time (UTC), two digits."),
    ("day", "Day of the event time (UTC), two digits."),
)
QUARANTINE_COLUMNS = (
    ("record_key", "string", "Record key, when the raw record had one."),
    ("raw_record", "string", "The raw record exactly as delivered: its line of the raw object."),
    ("quarantine_reason", "string", "Every reason the job refused the row."),
    ("ingested_at", "timestamp", "When the Firehose transform accepted the record (UTC)."),
    ("source_stream", "string", "Delivery or Kinesis stream the record came through."),
    ("raw_file", "string", "The raw object the row came from."),
)


PARQUET_STORAGE: dict[str, object] = {
    "input_format": PARQUET_INPUT,
    "output_format": PARQUET_OUTPUT,
    "serde_info": glue.CfnTable.SerdeInfoProperty(serialization_library=PARQUET_SERDE),
}


def _parquet_parameters(classification: str) -> dict[str, str]:
    return {
        "classification": "parquet",
        "parquet.compression": "SNAPPY",
        "data_classification": classification,
    }


class CuratedTables(Construct):
    """The curated Parquet table of one dataset (partitioned by event day, UTC) and its quarantine."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dataset: Dataset,
        database: str,
        curated_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        base = f"s3://{curated_bucket.bucket_name}/"
        self.table_name = dataset.name
        self.quarantine_table_name = dataset.quarantine_name
        self.location = f"{base}{dataset.name}/"
        self.quarantine_location = f"{base}{self.quarantine_table_name}/"
        self.table = external_table(
            self,
            "Table",
            database=database,
            name=self.table_name,
            description=f"{dataset.description} Curated: typed, deduplicated on {dataset.record_key}, partitioned by event day (UTC).",
            location=self.location,
            columns=dataset.glue_columns(),
            partition_keys=CURATED_PARTITION_KEYS,
            parameters=_parquet_parameters(dataset.governance.classification),
            storage=PARQUET_STORAGE,
        )
        self.quarantine_table = external_table(
            self,
            "QuarantineTable",
            database=database,
            name=self.quarantine_table_name,
            description=f"Raw {dataset.name} rows the curation job refused, with reasons; partitioned by raw day.",
            location=self.quarantine_location,
            columns=QUARANTINE_COLUMNS,
            partition_keys=CURATED_PARTITION_KEYS,
            parameters=_parquet_parameters(
                "pii" if dataset.pii_columns else dataset.governance.classification
            ),
            storage=PARQUET_STORAGE,
        )
