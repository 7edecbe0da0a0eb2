"""Template assertions for the Firehose delivery stream, its transform, raw tables and alarms."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template
from lake_app import Synth, actions, app_context, policy_statements, synthesize

from cdk_constructs.ingestion import (
    METRICS_NAMESPACE,
    SPEC_FILE,
    TRANSFORM_CODE,
    TRANSFORM_SERVICE,
    DatasetDeliveryStream,
    producer_principal,
    stage_transform,
)
from config import get_stage
from config.stages import MAX_TRUST_POLICY, producer_trust_size
from datalake.dataset import DATASETS_DIR, Dataset, Ingestion, load_dataset, parse_dataset

ORDERS = load_dataset(DATASETS_DIR / "orders.json")


@pytest.fixture(scope="module")
def sandbox() -> Synth:
    return synthesize("sandbox")


@pytest.fixture(scope="module")
def template(sandbox: Synth) -> Template:
    return sandbox.template(sandbox.lake.ingestion)


@pytest.fixture(scope="module")
def catalog(sandbox: Synth) -> Template:
    return sandbox.template(sandbox.lake.catalog)


def _stream(template: Template) -> dict[str, Any]:
    streams = template.find_resources("AWS::KinesisFirehose::DeliveryStream")
    assert len(streams) == 1
    return next(iter(streams.values()))["Properties"]


def _via(statements: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The KMS actions of a policy by the service they are confined to: ``kms:ViaService`` is
    ``<service>.<region>.amazonaws.com``, joined with the region's token."""
    found = {}
    for st in statements:
        via = st.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
        if via is not None:
            service = via["Fn::Join"][1][0].split(".")[0]
            found[service] = sorted(actions(st))
    return found


def test_direct_put_stream_is_encrypted_with_the_raw_key(template: Template) -> None:
    props = _stream(template)
    assert props["DeliveryStreamType"] == "DirectPut"
    assert props["DeliveryStreamName"] == "lake-sbx-orders"
    assert props["DeliveryStreamEncryptionConfigurationInput"]["KeyType"] == "CUSTOMER_MANAGED_CMK"
    dest = props["ExtendedS3DestinationConfiguration"]
    assert (
        dest["EncryptionConfiguration"]["KMSEncryptionConfig"]["AWSKMSKeyARN"]
        == (props["DeliveryStreamEncryptionConfigurationInput"]["KeyARN"])
    )


def test_dynamic_partitioning_on_utc_event_hour_from_the_transform(template: Template) -> None:
    dest = _stream(template)["ExtendedS3DestinationConfiguration"]
    assert dest["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert dest["Prefix"] == (
        "!{partitionKeyFromLambda:dataset}/year=!{partitionKeyFromLambda:year}/month=!{partitionKeyFromLambda:month}"
        "/day=!{partitionKeyFromLambda:day}/hour=!{partitionKeyFromLambda:hour}/"
    )
    # processing and partitioning failures land apart, by Firehose's error type
    assert dest["ErrorOutputPrefix"].startswith(
        "errors/orders/!{firehose:error-output-type}/year=!{timestamp:yyyy}/"
    )


def test_gzip_and_large_buffers_from_the_dataset_file(template: Template) -> None:
    dest = _stream(template)["ExtendedS3DestinationConfiguration"]
    assert dest["CompressionFormat"] == "GZIP"
    assert dest["FileExtension"] == ".json.gz"
    assert dest["BufferingHints"] == {
        "SizeInMBs": ORDERS.ingestion.buffer_size_mib,
        "IntervalInSeconds": ORDERS.ingestion.buffer_interval_seconds,
    }


def test_lambda_processor_configuration(template: Template) -> None:
    processor = _stream(template)["ExtendedS3DestinationConfiguration"]["ProcessingConfiguration"]
    assert processor["Enabled"] is True
    params = {p["ParameterName"]: p["ParameterValue"] for p in processor["Processors"][0]["Parameters"]}
    assert processor["Processors"][0]["Type"] == "Lambda"
    assert params["BufferSizeInMBs"] == "1"
    assert params["BufferIntervalInSeconds"] == "60"
    assert params["NumberOfRetries"] == "3"
    # a record whose partition keys cannot be applied is retried for 5 minutes, then goes to errors/
    dynamic = _stream(template)["ExtendedS3DestinationConfiguration"]["DynamicPartitioningConfiguration"]
    assert dynamic == {"Enabled": True, "RetryOptions": {"DurationInSeconds": 300}}
    assert params["LambdaArn"]["Fn::GetAtt"][0].startswith("OrdersTransform")


def test_firehose_logs_to_an_encrypted_log_group_with_stage_retention(template: Template) -> None:
    dest = _stream(template)["ExtendedS3DestinationConfiguration"]
    assert dest["CloudWatchLoggingOptions"]["Enabled"] is True
    template.all_resources_properties(
        "AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value(), "RetentionInDays": 30}
    )


def _package(assembly_dir: Path, props: dict[str, Any]) -> Path:
    """The folder of the assembly that holds a function's deployment package."""
    key = props["Code"]["S3Key"]
    return assembly_dir / f"asset.{key.removesuffix('.zip')}"


def test_transform_gets_the_spec_from_the_dataset_file(sandbox: Synth, template: Template) -> None:
    fns = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "handler.lambda_handler"}}
    )
    props = next(iter(fns.values()))["Properties"]
    # the deployment package: the transform's modules as they are in lambda/firehose_transform/,
    # and the spec of the dataset file beside them
    package = _package(sandbox.outdir, props)
    assert json.loads((package / SPEC_FILE).read_text()) == ORDERS.to_spec()
    modules = sorted(TRANSFORM_CODE.glob("*.py"))
    assert sorted(p.name for p in package.iterdir()) == sorted([SPEC_FILE, *(m.name for m in modules)])
    assert all((package / m.name).read_bytes() == m.read_bytes() for m in modules)
    env = props["Environment"]["Variables"]
    assert env["DELIVERY_STREAM_NAME"] == "lake-sbx-orders"
    # the namespace and service its metrics carry, as the alarms read them (the handler's test)
    assert (env["POWERTOOLS_METRICS_NAMESPACE"], env["POWERTOOLS_SERVICE_NAME"]) == (
        METRICS_NAMESPACE,
        TRANSFORM_SERVICE,
    )
    assert props["Runtime"] == "python3.14"
    assert (props["MemorySize"], props["Timeout"]) == (512, 120)
    assert props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    # Lambda's own lines (START, REPORT) in JSON too, as the Powertools logger writes the function's
    assert props["LoggingConfig"]["LogFormat"] == "JSON"


def test_powertools_layer_resolves_from_the_pinned_public_parameter(template: Template) -> None:
    params = template.to_json()["Parameters"]
    defaults = [p["Default"] for p in params.values() if p["Type"] == "AWS::SSM::Parameter::Value<String>"]
    assert "/aws/service/powertools/python/arm64/python3.14/3.37.0" in defaults


def test_delivery_role_is_least_privilege(template: Template) -> None:
    statements = policy_statements(template, "OrdersDeliveryPolicy")
    allowed = sorted(a for s in statements for a in actions(s))
    assert all("*" not in a for a in allowed)
    assert not any(a.startswith("s3:Delete") for a in allowed)
    puts = next(s for s in statements if "s3:PutObject" in s["Action"])
    rendered = json.dumps(puts["Resource"])
    for prefix in ("/orders/*", "/orders_rejected/*", "/errors/orders/*"):
        assert prefix in rendered
    kms_s3 = next(s for s in statements if sorted(s["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"])
    assert "kms:ViaService" in kms_s3["Condition"]["StringEquals"]
    # a Direct PUT stream encrypts what it buffers with the raw key, through Firehose only
    assert _via(statements) == {
        "s3": ["kms:Decrypt", "kms:GenerateDataKey"],
        "firehose": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
    }
    assert not any(a.startswith("kinesis:") for a in allowed)
    assert template.find_resources("AWS::IAM::Policy") == {}  # no inline policies anywhere


def _producer_role(template: Template) -> dict[str, Any]:
    roles = [r for lid, r in template.find_resources("AWS::IAM::Role").items() if "ProducerRole" in lid]
    assert len(roles) == 1
    return roles[0]["Properties"]


def _trusted(role: dict[str, Any]) -> list[Any]:
    """The AWS principals a role's trust policy names, each allowed to assume it unconditionally."""
    trusted = []
    for statement in role["AssumeRolePolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Action"] == "sts:AssumeRole"
        assert set(statement) == {"Effect", "Action", "Principal"} and set(statement["Principal"]) == {"AWS"}
        principal = statement["Principal"]["AWS"]
        trusted += principal if isinstance(principal, list) else [principal]
    return trusted


def _root_of(account: str | None) -> dict[str, Any]:
    """An account's root ARN as CDK writes it: ``None`` for the stack's own account."""
    parts = [":iam::", {"Ref": "AWS::AccountId"}, ":root"] if account is None else [f":iam::{account}:root"]
    return {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, *parts]]}


def _standalone(stack: cdk.Stack, dataset: Dataset, **props: Any) -> DatasetDeliveryStream:
    """A dataset's stream alone in ``stack``, with its own bucket and keys (``Raw``, ``Logs``)."""
    return DatasetDeliveryStream(
        stack,
        "Orders",
        dataset=dataset,
        name="t-orders",
        raw_bucket=s3.Bucket(stack, "B"),
        raw_key=kms.Key(stack, "Raw"),
        logs_key=kms.Key(stack, "Logs"),
        log_retention=logs.RetentionDays.ONE_MONTH,
        powertools_layer=lambda_.LayerVersion.from_layer_version_arn(
            stack, "L", "arn:aws:lambda:eu-west-1:017000801446:layer:x:1"
        ),
        **props,
    )


def test_the_producer_role_may_only_put_records_into_its_stream(template: Template) -> None:
    # GIVEN a stage that names no producer for orders: principals of the lake's own account may
    # assume the role, for an hour at a time, if their IAM policies allow them to
    role = _producer_role(template)
    assert role["RoleName"] == "lake-sbx-orders-producer"
    assert role["MaxSessionDuration"] == 3600
    assert _trusted(role) == [_root_of(None)]
    assert {"Key": "dataset", "Value": "orders"} in role["Tags"]
    # AND its one policy puts records into the orders stream: no describe, no read, no key (a
    # Direct PUT stream encrypts with Firehose's own grant of the raw key)
    (statement,) = policy_statements(template, "OrdersProducerPolicy")
    assert sorted(actions(statement)) == ["firehose:PutRecord", "firehose:PutRecordBatch"]
    (stream_id,) = template.find_resources("AWS::KinesisFirehose::DeliveryStream")
    assert statement["Resource"] == {"Fn::GetAtt": [stream_id, "Arn"]}
    assert "Condition" not in statement and statement["Effect"] == "Allow"


def test_the_most_producers_a_stage_takes_fit_iams_trust_policy_quota() -> None:
    # GIVEN as many producers as the stage check takes for a dataset (roles, and an account), and
    # one more, which it refuses
    roles = [f"arn:aws:iam::123456789012:role/producer-{i:02d}" for i in range(43)]
    producers = [*roles[:42], "444455556666"]
    assert replace(get_stage("sandbox"), producers={"orders": tuple(producers)}).producers
    with pytest.raises(ValueError, match="44 principals make a trust policy of 2,080 characters"):
        replace(get_stage("sandbox"), producers={"orders": (*producers, roles[42])})
    # WHEN its role is synthesized with the project's feature flags (cdk.json: statements merged)
    # and written as IAM counts it, in the longest partition name
    app = cdk.App(context=app_context())
    stack = cdk.Stack(app, "Producers")
    _standalone(stack, ORDERS, producers=[producer_principal(p) for p in producers])
    trust = _producer_role(Template.from_stack(stack))["AssumeRolePolicyDocument"]
    text = json.dumps(trust, separators=(",", ":"))
    text = text.replace(
        '{"Fn::Join":["",["arn:",{"Ref":"AWS::Partition"},":iam::444455556666:root"]]}',
        '"arn:aws-us-gov:iam::444455556666:root"',
    )
    # THEN it is one statement, exactly as long as the stage check reckons, within IAM's quota
    assert len(trust["Statement"]) == 1 and "Fn::" not in text
    assert len(text) == producer_trust_size(producers) <= MAX_TRUST_POLICY


def test_a_dataset_of_many_columns_keeps_the_transforms_environment_within_lambdas_4_kb() -> None:
    # GIVEN a dataset of 300 columns, whose spec alone is many times Lambda's 4 KB of environment
    raw = json.loads((DATASETS_DIR / "orders.json").read_text())
    raw["columns"] += [
        {**c, "name": f"{c['name']}_{i}", "required": False}
        for i in range(30)
        for c in raw["columns"][1:11]
        if c["name"] != "order_ts"
    ]
    wide = parse_dataset(raw, DATASETS_DIR / "orders.json")
    assert len(wide.columns) >= 250 and len(wide.to_spec_json()) > 5 * 4096
    # WHEN its stream is synthesized
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stack = cdk.Stack(app, "Wide")
    _standalone(stack, wide)
    assembly = app.synth()
    # THEN the function's environment holds a few names only, and its package the whole spec
    template = assembly.get_stack_by_name("Wide").template
    (props,) = [
        r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
    ]
    assert len(json.dumps(props["Environment"]["Variables"])) < 512
    package = _package(Path(assembly.directory), props)
    assert json.loads((package / SPEC_FILE).read_text()) == wide.to_spec()


def test_a_transform_package_is_made_once_per_content_and_readable_by_lambda(tmp_path: Path) -> None:
    # GIVEN the package of orders, made twice, and that of another dataset
    first = stage_transform(ORDERS, tmp_path)
    again = stage_transform(ORDERS, tmp_path)
    other = stage_transform(dataclasses.replace(ORDERS, record_key="customer_id"), tmp_path)
    # THEN orders has one folder, the other dataset its own, and nothing half-made is left
    assert again == first != other
    assert sorted(p.name for p in (tmp_path / ".transform").iterdir()) == sorted([first.name, other.name])
    # AND Lambda's runtime user may read every file of it (a folder's mode, files' at least 0644)
    assert first.stat().st_mode & 0o777 == 0o755
    assert all(f.stat().st_mode & 0o444 == 0o444 for f in first.iterdir())
    assert json.loads((other / SPEC_FILE).read_text())["record_key"] == "customer_id"


def test_transform_role_can_only_log_and_trace(template: Template) -> None:
    statements = policy_statements(template, "OrdersTransformPolicy")
    assert [sorted(s["Action"]) for s in statements] == [
        ["logs:CreateLogStream", "logs:PutLogEvents"],
        ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
    ]
    roles = template.find_resources("AWS::IAM::Role")
    assert all(
        "ManagedPolicyArns" not in r["Properties"]
        or all("aws:policy" not in json.dumps(a) for a in r["Properties"]["ManagedPolicyArns"])
        for r in roles.values()
    )


def test_alarms_notify_the_alert_topic(template: Template) -> None:
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    assert len(alarms) == 6
    by_desc = {a["Properties"]["AlarmDescription"]: a["Properties"] for a in alarms.values()}
    freshness = next(p for d, p in by_desc.items() if "wait for delivery" in d)
    assert freshness["MetricName"] == "DeliveryToS3.DataFreshness"
    assert freshness["Threshold"] == 2 * 900 + 300
    assert (freshness["Statistic"], freshness["Period"]) == ("Maximum", 300)  # the oldest record's age
    rate = next(p for d, p in by_desc.items() if "records rejected" in d)
    # the share of the window's records, in percent; a window without records has none, since
    # metric math drops a division by zero (no MAX or FILL, which CloudWatch's guide warns about
    # in alarms), and the missing point is no breach
    (expression,) = [m for m in rate["Metrics"] if "Expression" in m]
    assert expression["Expression"] == "100 * rejected / records"
    assert rate["TreatMissingData"] == "notBreaching"
    # the transform's counts, summed per 5 minutes
    stats = [m["MetricStat"] for m in rate["Metrics"] if "MetricStat" in m]
    assert stats and all((m["Stat"], m["Period"]) == ("Sum", 300) for m in stats)
    for props in by_desc.values():
        assert props["AlarmActions"] and props["OKActions"]
    # (threshold, periods) each: data late for three 5-minute periods in a row, any failure of the
    # transform or any record sent to processing-failed at once, rejects over 5 % for 10 minutes
    errors = next(p for d, p in by_desc.items() if "the Firehose transform failed" in d)
    assert (errors["MetricName"], errors["Statistic"], errors["Period"]) == ("Errors", "Sum", 300)
    failed = next(p for d, p in by_desc.items() if "processing-failed error prefix" in d)
    thresholds = [(a["Threshold"], a["EvaluationPeriods"]) for a in (freshness, errors, failed, rate)]
    assert thresholds == [(2100, 3), (0, 1), (0, 1), (5, 2)]
    assert "more than 5% of records rejected" in next(d for d in by_desc if "records rejected" in d)
    # a batch Firehose could not hand to the transform goes to processing-failed without the
    # function counting it: Firehose's own share of successful invocations, below 1
    invoked = next(p for d, p in by_desc.items() if "could not invoke the transform" in d)
    assert "retries" in invoked["AlarmDescription"]  # a failed attempt is not yet a lost batch
    assert (invoked["Namespace"], invoked["MetricName"]) == ("AWS/Firehose", "ExecuteProcessing.Success")
    assert (invoked["Statistic"], invoked["Period"], invoked["Threshold"]) == ("Minimum", 300, 1)
    assert invoked["ComparisonOperator"] == "LessThanThreshold"
    assert invoked["TreatMissingData"] == "notBreaching"  # no batch, no invocation: no alarm
    (stream,) = template.find_resources("AWS::KinesisFirehose::DeliveryStream")
    assert invoked["Dimensions"] == [{"Name": "DeliveryStreamName", "Value": {"Ref": stream}}]
    # a backfill spread over more hours than Firehose's active partitions sends the rest of its
    # records to the error prefix, not the raw zone: Firehose's own flag, at once
    limit = next(p for d, p in by_desc.items() if "active-partition" in d)
    assert (limit["Namespace"], limit["MetricName"]) == ("AWS/Firehose", "PartitionCountExceeded")
    assert (limit["Statistic"], limit["Threshold"], limit["ComparisonOperator"]) == (
        "Maximum",
        0,
        "GreaterThanThreshold",
    )
    assert limit["Dimensions"] == invoked["Dimensions"]


def test_a_silent_source_alarms_only_when_the_dataset_file_asks(sandbox: Synth) -> None:
    # orders names no silent_after_hours: no such alarm among its six (above). Had it, the alarm
    # would count what reached its Direct PUT stream (a Kinesis source: test_templates)
    assert load_dataset(DATASETS_DIR / "orders.json").ingestion.silent_after_hours is None
    metric = sandbox.lake.ingestion.streams["orders"].metric_incoming_records()
    assert (metric.namespace, metric.metric_name, metric.statistic) == (
        "AWS/Firehose",
        "IncomingRecords",
        "Sum",
    )


def test_raw_tables_use_partition_projection_on_the_firehose_prefix(catalog: Template) -> None:
    tables = {
        t["Properties"]["TableInput"]["Name"]: t["Properties"]["TableInput"]
        for lid, t in catalog.find_resources("AWS::Glue::Table").items()
        if lid.startswith("RawOrders")
    }
    assert sorted(tables) == ["orders", "orders_delivery_errors", "orders_rejected"]
    orders = tables["orders"]
    params = orders["Parameters"]
    assert params["projection.enabled"] == "true"
    assert params["projection.hour.range"] == "0,23"
    # the transform partitions by month=05, day=01, hour=09: two digits, as projection must write them
    assert {k: params.get(f"projection.{k}.digits") for k in ("year", "month", "day", "hour")} == {
        "year": None,
        "month": "2",
        "day": "2",
        "hour": "2",
    }
    assert orders["StorageDescriptor"]["Compressed"] is True
    template_location = json.dumps(params["storage.location.template"])
    assert "/orders/year=${year}/month=${month}/day=${day}/hour=${hour}/" in template_location
    assert [k["Name"] for k in orders["PartitionKeys"]] == ["year", "month", "day", "hour"]
    columns = {c["Name"]: c["Type"] for c in orders["StorageDescriptor"]["Columns"]}
    assert columns["amount"] == "decimal(12,2)"
    assert columns["order_ts"] == "string"  # ISO-8601 text in raw JSON
    rejected = tables["orders_rejected"]
    assert "/orders_rejected/year=${year}" in json.dumps(rejected["Parameters"]["storage.location.template"])
    assert tables["orders_delivery_errors"]["Parameters"]["projection.error_type.type"] == "injected"


def test_kinesis_source_is_on_demand_and_encrypted_with_the_raw_key() -> None:
    # GIVEN a dataset whose file switches on a Kinesis Data Stream source
    dataset = dataclasses.replace(ORDERS, ingestion=Ingestion(source="kinesis_stream"))
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stack = cdk.Stack(app, "Test")
    # and two producers: a role of another account, and a third account whole
    shop = "arn:aws:iam::111122223333:role/teams/shop-backend"
    _standalone(stack, dataset, producers=[producer_principal(shop), producer_principal("444455556666")])
    template = Template.from_stack(stack)
    # THEN the stream is on-demand and KMS-encrypted, and Firehose reads it
    template.has_resource_properties(
        "AWS::Kinesis::Stream",
        {
            "StreamModeDetails": {"StreamMode": "ON_DEMAND"},
            "StreamEncryption": {
                "EncryptionType": "KMS",
                "KeyId": {"Fn::GetAtt": [Match.string_like_regexp("^Raw"), "Arn"]},
            },
        },
    )
    props = _stream(template)
    assert props["DeliveryStreamType"] == "KinesisStreamAsSource"
    # AND the construct leaves its stack no unreferenced mapping (the Firehose L2's CIDR blocks,
    # which CloudFormation's validation warns about in any stack that holds a stream)
    assert "Mappings" not in template.to_json()
    assert "DeliveryStreamEncryptionConfigurationInput" not in props
    statements = policy_statements(template, "OrdersDeliveryPolicy")
    assert any("kinesis:GetRecords" in s["Action"] for s in statements)
    # the key is used through S3 and Kinesis (decrypting the stream's records), not Firehose's SSE
    assert _via(statements) == {"s3": ["kms:Decrypt", "kms:GenerateDataKey"], "kinesis": ["kms:Decrypt"]}
    # records are kept a day in the stream; with no removal policy given, the stream and the
    # log groups outlive a destroyed stack
    (stream,) = template.find_resources("AWS::Kinesis::Stream").values()
    assert stream["Properties"]["RetentionPeriodHours"] == 24
    kept = [stream, *template.find_resources("AWS::Logs::LogGroup").values()]
    assert len(kept) == 3 and all(r["DeletionPolicy"] == "Retain" for r in kept)
    # AND the producer role trusts those two alone, not this account, and may put records into
    # the Kinesis stream (not Firehose, which takes no Direct PUT from a stream with a Kinesis
    # source), with a data key of the raw key for that stream alone
    role = _producer_role(template)
    assert role["RoleName"] == "t-orders-producer"
    assert _trusted(role) == [shop, _root_of("444455556666")]
    (stream_id,) = template.find_resources("AWS::Kinesis::Stream")
    (key_id,) = [k for k in template.find_resources("AWS::KMS::Key") if k.startswith("Raw")]
    arn = {"Fn::GetAtt": [stream_id, "Arn"]}
    put, data_key = policy_statements(template, "OrdersProducerPolicy")
    assert (sorted(actions(put)), put["Resource"]) == (["kinesis:PutRecord", "kinesis:PutRecords"], arn)
    assert (actions(data_key), data_key["Resource"]) == (
        ["kms:GenerateDataKey"],
        {"Fn::GetAtt": [key_id, "Arn"]},
    )
    conditions = data_key["Condition"]["StringEquals"]
    assert conditions["kms:EncryptionContext:aws:kinesis:arn"] == arn
    assert conditions["kms:ViaService"]["Fn::Join"][1][0] == "kinesis."
