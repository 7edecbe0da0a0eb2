"""Consumption: Athena workgroups, named queries and the UNLOAD report; Redshift Serverless."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import duckdb
import pytest
import sqlglot
import warehouse_sql
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from cfn_resolve import ACCOUNT, REGION
from lake_app import (
    WITHOUT_AUDIT,
    Synth,
    actions,
    grant_principal,
    joined_json,
    lf_grants,
    output_of,
    policy_statements,
    synthesize,
    tag_expression,
)

from cdk_constructs.personas import NOTEBOOK_USE
from cdk_constructs.reports import DONE_MARKER, REPORTS_PREFIX, ScheduledReport, unload_statement
from config import features_from_context, get_stage
from datalake import sql
from datalake.dataset import DATASETS_DIR, DatasetConfigError, load_dataset
from datalake.diagram import text as template_text
from stacks import check_inputs

SANDBOX = get_stage("sandbox")
PROD = get_stage("prod")
QUICKSIGHT_PRINCIPAL = WITHOUT_AUDIT["quicksight_principal_arn"]
ORDERS = load_dataset(DATASETS_DIR / "orders.json")
#: Values for the placeholders of ``sql/redshift/``.
RENDER_VALUES = {
    "curated_database": "lake_prd_curated",
    "spectrum_role_arn": "arn:aws:iam::123456789012:role/lake-prd-redshift-spectrum",
    "analyst_spectrum_role_arn": "arn:aws:iam::123456789012:role/lake-prd-redshift-spectrum-analyst",
}


@pytest.fixture(scope="module")
def sandbox() -> Synth:
    return synthesize("sandbox")


@pytest.fixture(scope="module")
def prod() -> Synth:
    return synthesize("prod")


def _of_type(synth: Synth, type_: str) -> dict[str, dict[str, Any]]:
    return dict(synth.template(synth.lake.consumption).find_resources(type_))


def _props(synth: Synth, type_: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in _of_type(synth, type_).values()]


@pytest.mark.parametrize("name", ["lake-sbx-analysts", "lake-sbx-regional-analysts"])
def test_analysts_workgroups_enforce_engine_v3_encryption_and_cutoff(sandbox: Synth, name: str) -> None:
    (wg,) = [w for w in _props(sandbox, "AWS::Athena::WorkGroup") if w["Name"] == name]
    conf = wg["WorkGroupConfiguration"]
    assert conf["EnforceWorkGroupConfiguration"] is True
    assert conf["PublishCloudWatchMetricsEnabled"] is True
    assert conf["EngineVersion"] == {"SelectedEngineVersion": "Athena engine version 3"}
    assert conf["BytesScannedCutoffPerQuery"] == SANDBOX.athena_bytes_scanned_cutoff
    result = conf["ResultConfiguration"]
    assert result["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
    assert "AnalyticsKey" in json.dumps(result["EncryptionConfiguration"]["KmsKey"])
    assert "lake-sbx-athena-results-" in json.dumps(result["OutputLocation"])


def test_every_workgroup_writes_results_only_to_a_bucket_of_this_account() -> None:
    # the analysts', the audit and the notebooks' workgroups: a results bucket of the same name
    # owned by another account (created after a teardown) gets nothing
    synth = synthesize("sandbox", athena_spark=True)
    workgroups = {
        r["Properties"]["Name"]: r["Properties"]["WorkGroupConfiguration"]["ResultConfiguration"]
        for template in synth.all_templates().values()
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Athena::WorkGroup"
    }
    assert set(workgroups) == {
        "lake-sbx-analysts",
        "lake-sbx-regional-analysts",
        "lake-sbx-audit",
        "lake-sbx-notebooks",
    }
    for name, result in workgroups.items():
        assert result["ExpectedBucketOwner"] == {"Ref": "AWS::AccountId"}
        assert json.dumps(result["OutputLocation"]).endswith(f'"/{name}/"]]}}')


def test_every_shipped_query_is_a_named_query_of_each_analysts_workgroup(sandbox: Synth) -> None:
    workgroups = {
        lid: w["Properties"]["Name"] for lid, w in _of_type(sandbox, "AWS::Athena::WorkGroup").items()
    }
    shipped = sql.load("athena")
    for name in ("lake-sbx-analysts", "lake-sbx-regional-analysts"):
        queries = {
            q["Name"]: q
            for q in _props(sandbox, "AWS::Athena::NamedQuery")
            if workgroups[q["WorkGroup"]["Ref"]] == name
        }
        assert set(queries) == {q.name.replace("_", " ") for q in shipped}
        for q in shipped:
            named = queries[q.name.replace("_", " ")]
            assert named["QueryString"] == q.text
            assert named["Database"] == "lake_sbx_curated"
            assert named["Description"] == q.description


def _definition(synth: Synth) -> dict[str, Any]:
    (machine,) = [
        m
        for m in _props(synth, "AWS::StepFunctions::StateMachine")
        if m["StateMachineName"].endswith("-report")
    ]
    definition: dict[str, Any] = joined_json(machine["DefinitionString"])
    return definition


def _unformat(intrinsic: str) -> str:
    """The template string of ``States.Format('...', ...)`` with ASL escapes undone."""
    body = re.match(r"States\.Format\('(.*)', \$\$\.Execution\.Name\)$", intrinsic, re.S)
    assert body, intrinsic
    return re.sub(r"\\(.)", r"\1", body.group(1))


def test_report_unloads_the_daily_revenue_query_as_parquet_per_run(sandbox: Synth) -> None:
    definition = _definition(sandbox)
    states = definition["States"]
    unload = states["Unload"]
    assert unload["Resource"].endswith(":states:::athena:startQueryExecution.sync")
    statement = _unformat(unload["Parameters"]["QueryString.$"])
    match = re.match(
        r"UNLOAD \((.*)\) TO '(.*)run=\{\}/' WITH \(format = 'PARQUET', compression = 'SNAPPY'\)$", statement
    )
    assert match, statement
    inner, location = match.groups()
    assert location.startswith("s3://lake-sbx-analytics-TOKEN")  # bucket name holds account/region tokens
    assert location.endswith("/reports/daily_revenue_by_country/")
    # the unloaded query is the shipped one, and parses as Trino
    shipped = next(q for q in sql.load("athena") if q.name == "daily_revenue_by_country")
    assert sqlglot.parse_one(inner, read="trino") == sqlglot.parse_one(shipped.text, read="trino")
    assert unload["Parameters"]["WorkGroup"] == "TOKEN"
    (retry,) = unload["Retry"]
    assert retry["JitterStrategy"] == "FULL" and retry["BackoffRate"] == 2 and "MaxDelaySeconds" in retry
    # only a start Athena refused is retried, and with the execution's token: a start Athena had
    # taken returns its query, so no second UNLOAD writes into the run's folder
    assert retry["ErrorEquals"] == ["Athena.TooManyRequestsException", "Athena.InternalServerException"]
    assert unload["Parameters"]["ClientRequestToken.$"] == "States.Hash($$.Execution.Id, 'SHA-256')"
    (catch,) = unload["Catch"]
    assert catch["Next"] == "NotifyFailure"
    assert states["NotifyFailure"]["Resource"].endswith(":states:::sns:publish")
    # the query may run half an hour, the whole report an hour
    assert (unload["TimeoutSeconds"], definition["TimeoutSeconds"]) == (1800, 3600)


def test_a_report_run_is_marked_complete_only_after_its_unload_succeeded(sandbox: Synth) -> None:
    states = _definition(sandbox)["States"]
    # Athena leaves what a failed UNLOAD wrote: the marker tells a whole run's folder from that
    mark = states[states["Unload"]["Next"]]
    assert mark["Resource"].endswith(":states:::aws-sdk:s3:putObject")
    params = mark["Parameters"]
    assert params["Key.$"] == (
        f"States.Format('{REPORTS_PREFIX}/daily_revenue_by_country/run={{}}/{DONE_MARKER}', $$.Execution.Name)"
    )
    location = _unformat(states["Unload"]["Parameters"]["QueryString.$"]).split(" TO '")[1].split("'")[0]
    assert location.endswith(f"/{REPORTS_PREFIX}/daily_revenue_by_country/run={{}}/")  # the same folder
    assert params["Body.$"] == "States.JsonToString($.query)"  # the query's id
    assert mark["ResultPath"] is None and states[mark["Next"]]["Type"] == "Succeed"
    # a failure to write it is a failed report, alerted like the query's
    assert [c["Next"] for c in mark["Catch"]] == ["NotifyFailure"] and mark["Retry"]
    # the state machine may write there, and only under the report's own prefix
    policy = policy_statements(sandbox.template(sandbox.lake.consumption), "DailyRevenueReportPolicy")
    (writes,) = [st for st in policy if "s3:PutObject" in st["Action"]]
    assert f'/{REPORTS_PREFIX}/daily_revenue_by_country/*"' in json.dumps(writes["Resource"])


def test_the_report_reads_through_lake_formation_as_analysts_do(sandbox: Synth) -> None:
    # GIVEN the report's state machine role, whose UNLOAD Athena runs with Lake Formation checking
    # it (the lake's tables give IAMAllowedPrincipals nothing)
    template = sandbox.template(sandbox.lake.consumption)
    (role,) = [
        lid for lid in template.find_resources("AWS::IAM::Role") if lid.startswith("DailyRevenueReportRole")
    ]
    grants = {
        lid: g
        for lid, g in template.find_resources("AWS::LakeFormation::PrincipalPermissions").items()
        if g["Properties"]["Principal"]["DataLakePrincipalIdentifier"] == {"Fn::GetAtt": [role, "Arn"]}
    }
    # THEN it gets what analysts get: DESCRIBE on the curated and analytics databases, SELECT on
    # their tables' columns that are not tagged pii, and no grant option
    expressions = {
        g["Properties"]["Resource"]["LFTagPolicy"]["ResourceType"]: (
            {e["TagKey"]: e["TagValues"] for e in g["Properties"]["Resource"]["LFTagPolicy"]["Expression"]},
            g["Properties"]["Permissions"],
            g["Properties"]["PermissionsWithGrantOption"],
        )
        for g in grants.values()
    }
    assert expressions == {
        "DATABASE": ({"zone": ["curated", "analytics"]}, ["DESCRIBE"], []),
        "TABLE": (
            {"zone": ["curated", "analytics"], "classification": ["public", "internal"]},
            ["SELECT", "DESCRIBE"],
            [],
        ),
    }
    catalog = sandbox.template(sandbox.lake.catalog)
    analyst = [g for g in lf_grants(catalog) if "DataAnalyst" in grant_principal(g)]
    assert sorted(json.dumps([tag_expression(g), g["Permissions"]]) for g in analyst) == sorted(
        json.dumps([expression, permissions]) for expression, permissions, _ in expressions.values()
    )
    # AND the schedule starts it only once the grants exist; its query reads no PII column, which
    # the grant would hide from it
    (schedule,) = [
        s
        for lid, s in template.find_resources("AWS::Scheduler::Schedule").items()
        if lid.startswith("DailyRevenue")
    ]
    assert set(grants) <= set(schedule["DependsOn"])
    (query,) = [q for q in sql.load("athena") if q.name == "daily_revenue_by_country"]
    read = {c.name for c in sqlglot.parse_one(query.text, read="trino").find_all(sqlglot.exp.Column)}
    orders = load_dataset(DATASETS_DIR / "orders.json")
    assert read and not read & set(orders.governance.pii_columns)


@pytest.mark.parametrize("brace", ["{", "}"])
def test_a_report_query_with_a_brace_is_refused_naming_its_file(brace: str, tmp_path: Path) -> None:
    # a brace would be read as a placeholder of States.Format, which fills in the run's name
    (tmp_path / "athena").mkdir()
    (tmp_path / "athena" / "q.sql").write_text(f"-- a report\nSELECT '{brace}' AS x\n")
    (query,) = sql.load("athena", tmp_path)
    with pytest.raises(
        ValueError, match=r"q\.sql: braces would be read as Step Functions format placeholders"
    ):
        unload_statement(query, "s3://b/reports/q/")
    # in a comment it is no part of the query
    (tmp_path / "athena" / "q.sql").write_text(f"-- a report {brace}\nSELECT 1 AS x\n")
    (query,) = sql.load("athena", tmp_path)
    assert unload_statement(query, "s3://b/reports/q/").startswith(
        "UNLOAD (SELECT 1 AS x) TO 's3://b/reports/q/run={}/'"
    )


def test_a_report_that_fails_times_out_or_stops_running_alarms_to_the_alert_topic(sandbox: Synth) -> None:
    # the catch publishes what it takes; an alarm also takes what no catch can (States.Runtime)
    alarms = [a for a in _props(sandbox, "AWS::CloudWatch::Alarm") if "report" in a["AlarmDescription"]]
    by_metric = {a["MetricName"]: a for a in alarms}
    assert sorted(by_metric) == ["ExecutionsFailed", "ExecutionsSucceeded", "ExecutionsTimedOut"]
    assert by_metric["ExecutionsFailed"]["Threshold"] == by_metric["ExecutionsTimedOut"]["Threshold"] == 0
    # and no successful run in each of 49 hours (two days and a run's hour): a schedule disabled
    # by hand leaves no failure behind
    stale = by_metric["ExecutionsSucceeded"]
    assert (stale["EvaluationPeriods"], stale["Period"], stale["TreatMissingData"]) == (49, 3600, "breaching")
    assert stale["WarmUpConfiguration"]["WarmUpPeriodDurationInMinutes"] == 2880  # CloudWatch's most
    for alarm in alarms:
        assert alarm["Namespace"] == "AWS/States"
        assert "DailyRevenueReportStateMachine" in json.dumps(alarm["Dimensions"])
        assert (
            "AlertsTopic" in json.dumps(alarm["AlarmActions"]) and alarm["OKActions"] == alarm["AlarmActions"]
        )


def test_report_runs_on_a_schedule(sandbox: Synth) -> None:
    (schedule,) = [s for s in _props(sandbox, "AWS::Scheduler::Schedule") if s["Name"].endswith("-report")]
    assert schedule["ScheduleExpression"] == "cron(0 6 * * ? *)"
    assert schedule["GroupName"] == "lake-sbx"  # whose dropped starts alarm (test_foundation)
    assert schedule["ScheduleExpressionTimezone"] == "UTC"


def test_spark_notebooks_are_the_engineers_and_read_curated_data_whole(sandbox: Synth) -> None:
    # GIVEN the sandbox without and with the Spark workgroup (Lake Formation on in both)
    assert not [w for w in _props(sandbox, "AWS::Athena::WorkGroup") if "notebooks" in w["Name"]]
    default_governance = sandbox.template(sandbox.lake.governance)
    assert not default_governance.find_resources(
        "AWS::IAM::Role", {"Properties": {"RoleName": "lake-sbx-athena-notebooks"}}
    )
    engineer_by_default = {
        a for st in policy_statements(default_governance, "PersonasEngineerPolicy") for a in actions(st)
    }
    assert not {a for a in engineer_by_default if a in NOTEBOOK_USE and a != "athena:GetWorkGroup"}
    synth = synthesize("sandbox", athena_spark=True)
    governance, catalog = synth.template(synth.lake.governance), synth.template(synth.lake.catalog)

    # THEN the workgroup runs PySpark engine 3 as the notebook role, results encrypted, settings enforced
    (wg,) = [w for w in _props(synth, "AWS::Athena::WorkGroup") if w["Name"] == "lake-sbx-notebooks"]
    conf = wg["WorkGroupConfiguration"]
    assert conf["EngineVersion"] == {"SelectedEngineVersion": "PySpark engine version 3"}
    assert "PersonasNotebookRole" in output_of(conf["ExecutionRole"])
    assert conf["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
    # notebooks cannot override the workgroup's role, results and encryption; usage is measured
    assert conf["EnforceWorkGroupConfiguration"] is True
    assert conf["PublishCloudWatchMetricsEnabled"] is True

    # AND only Athena of this account assumes the role, which reads the curated zone from S3 (the
    # engine does not support Lake Formation) and writes only its own results, keys through S3
    (role,) = governance.find_resources(
        "AWS::IAM::Role", {"Properties": {"RoleName": "lake-sbx-athena-notebooks"}}
    ).values()
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "athena.amazonaws.com"}
    assert list(trust["Condition"]["StringEquals"]) == ["aws:SourceAccount"]
    statements = policy_statements(governance, "PersonasNotebookPolicy")
    (writes,) = [st for st in statements if "s3:PutObject" in actions(st)]
    assert json.dumps(writes["Resource"]).endswith('/lake-sbx-notebooks/*"]]}')
    (reads,) = [st for st in statements if actions(st) == ["s3:GetObject"]]
    assert ":s3:::lake-sbx-curated-" in json.dumps(reads["Resource"])
    kms_statements = [st for st in statements if any(a.startswith("kms:") for a in actions(st))]
    assert kms_statements and all(
        "kms:ViaService" in st["Condition"]["StringEquals"] for st in kms_statements
    )

    # AND the data engineer alone may open its notebooks: sessions, notebooks and calculations on
    # that workgroup; analysts get none of it
    engineer = policy_statements(governance, "PersonasEngineerPolicy")
    (use,) = [st for st in engineer if "athena:StartSession" in actions(st)]
    assert set(actions(use)) == set(NOTEBOOK_USE)
    assert json.dumps(use["Resource"]).endswith(':workgroup/lake-sbx-notebooks"]]}')
    for analyst in ("PersonasAnalystPolicy", "PersonasRegionalAnalystPolicy"):
        granted = {a for st in policy_statements(governance, analyst) for a in actions(st)}
        assert not granted & {"athena:StartSession", "athena:CreatePresignedNotebookUrl"}

    # AND Lake Formation shows the role as a reader of every curated table, PII columns included,
    # so the catalog lists the tables to its sessions
    notebook_output = next(o for o in governance.to_json()["Outputs"] if "PersonasNotebookRole" in o)
    grants = {
        g["Resource"]["LFTagPolicy"]["ResourceType"]: g
        for g in lf_grants(catalog)
        if grant_principal(g) == notebook_output
    }
    assert set(grants) == {"DATABASE", "TABLE"}
    assert grants["DATABASE"]["Permissions"] == ["DESCRIBE"]
    assert grants["TABLE"]["Permissions"] == ["SELECT", "DESCRIBE"]
    assert tag_expression(grants["TABLE"]) == {"zone": ["curated"]}


# --- Redshift Serverless -----------------------------------------------------------------


def test_sandbox_has_no_warehouse(sandbox: Synth) -> None:
    template = sandbox.template_json(sandbox.lake.consumption)
    assert not [
        r
        for r in template["Resources"].values()
        if "Redshift" in r["Type"] or r["Type"].startswith("AWS::EC2::")
    ]


def test_flow_logs_are_delivered_by_a_role_only_this_accounts_flow_logs_may_assume(prod: Synth) -> None:
    (flow_log,) = _props(prod, "AWS::EC2::FlowLog")
    assert flow_log["TrafficType"] == "ALL" and flow_log["LogDestinationType"] == "cloud-watch-logs"
    role_id = flow_log["DeliverLogsPermissionArn"]["Fn::GetAtt"][0]
    role = _of_type(prod, "AWS::IAM::Role")[role_id]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    # the condition block of the VPC guide ("IAM role for publishing flow logs to CloudWatch Logs")
    assert prod.resolved(prod.lake.consumption, trust["Condition"]) == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc-flow-log/*"},
    }
    group_id = flow_log["LogGroupName"]["Ref"]
    assert "KmsKeyId" in _of_type(prod, "AWS::Logs::LogGroup")[group_id]["Properties"]


def test_warehouse_network_is_private_with_endpoints_and_no_nat(prod: Synth) -> None:
    template = prod.template_json(prod.lake.consumption)
    types = [r["Type"] for r in template["Resources"].values()]
    assert "AWS::EC2::NatGateway" not in types and "AWS::EC2::InternetGateway" not in types
    subnets = _props(prod, "AWS::EC2::Subnet")
    assert len(subnets) == 3 and all(s["MapPublicIpOnLaunch"] is False for s in subnets)
    endpoints = _props(prod, "AWS::EC2::VPCEndpoint")
    gateway = [e for e in endpoints if e.get("VpcEndpointType") == "Gateway"]
    interface = [e for e in endpoints if e.get("VpcEndpointType") == "Interface"]
    assert len(gateway) == 1 and "s3" in json.dumps(gateway[0]["ServiceName"])
    services = {json.dumps(e["ServiceName"]).split(".")[-1].rstrip('"]}') for e in interface}
    assert services == {"glue", "lakeformation", "sts", "kms", "secretsmanager"}
    assert all(e["PrivateDnsEnabled"] is True for e in interface)
    groups = _of_type(prod, "AWS::EC2::SecurityGroup")
    for group in groups.values():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert "CidrIp" not in rule and "CidrIpv6" not in rule, rule
    for rule in _props(prod, "AWS::EC2::SecurityGroupIngress"):
        assert "SourceSecurityGroupId" in rule and rule["FromPort"] == rule["ToPort"] == 443
    # one /24 per availability zone, and nothing goes out but HTTPS: to the endpoints' group and
    # to S3 through its gateway (no group keeps the default all-traffic egress)
    assert sorted(s["CidrBlock"] for s in subnets) == ["10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24"]
    rules = [
        *(r for group in groups.values() for r in group["Properties"].get("SecurityGroupEgress", [])),
        *_props(prod, "AWS::EC2::SecurityGroupEgress"),
    ]
    egress = [
        (r.get("CidrIp"), "DestinationSecurityGroupId" in r, r["IpProtocol"], r["FromPort"], r["ToPort"])
        for r in rules
    ]
    assert sorted(egress, key=str) == sorted(
        [
            ("0.0.0.0/0", False, "tcp", 443, 443),  # the workgroup to S3
            (None, True, "tcp", 443, 443),  # the workgroup to the interface endpoints
            ("255.255.255.255/32", False, "icmp", 252, 86),  # the endpoints' group: CDK's "no egress"
        ],
        key=str,
    )


def test_namespace_is_encrypted_with_a_managed_secret_and_audit_logs(prod: Synth) -> None:
    (ns,) = _props(prod, "AWS::RedshiftServerless::Namespace")
    assert ns["ManageAdminPassword"] is True
    assert "AdminUserPassword" not in ns
    assert "AnalyticsKey" in json.dumps(ns["KmsKeyId"]) and "AnalyticsKey" in json.dumps(
        ns["AdminPasswordSecretKmsKeyId"]
    )
    assert sorted(ns["LogExports"]) == ["connectionlog", "useractivitylog", "userlog"]
    spectrum = ns["DefaultIamRoleArn"]["Fn::GetStackOutput"]["OutputName"]
    assert "PersonasSpectrumRole" in spectrum
    # the roles of the two external schemas: the whole tables, and the analysts' view of them
    assert ns["IamRoles"][0] == ns["DefaultIamRoleArn"]
    (analysts,) = ns["IamRoles"][1:]
    assert "PersonasSpectrumAnalystRole" in analysts["Fn::GetStackOutput"]["OutputName"]


def test_the_accounts_groups_of_the_exported_logs_exist_with_the_stages_retention_first(prod: Synth) -> None:
    # Redshift Serverless exports each log type to one group of the account and creates a missing
    # one with no retention: the stage creates them first and keeps them as long as its own logs
    consumption = prod.lake.consumption
    ((groups_id, groups),) = _of_type(prod, "Custom::SharedLogGroups").items()
    (namespace,) = _of_type(prod, "AWS::RedshiftServerless::Namespace").values()
    names = [f"/aws/redshift/serverless/{log}" for log in namespace["Properties"]["LogExports"]]
    assert groups["Properties"]["LogGroupNames"] == names
    assert groups["Properties"]["RetentionInDays"] == str(get_stage("prod").log_retention_days) == "731"
    assert groups_id in namespace["DependsOn"]
    # the function may create those groups and set their retention, and only list any other
    statements = policy_statements(prod.template(consumption), "WarehouseLogGroupsFunctionPolicy")
    owned = {json.dumps(actions(s)): prod.resolved(consumption, s["Resource"]) for s in statements[1:]}
    arns = [f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}" for name in names]
    assert owned.pop('["logs:DescribeLogGroups"]') == "*"
    assert list(owned) == ['["logs:CreateLogGroup", "logs:PutRetentionPolicy"]']
    assert sorted(*owned.values()) == sorted([*arns, *(f"{arn}:*" for arn in arns)])


def test_the_dashboard_has_a_row_for_the_warehouse_when_redshift_is_on(prod: Synth, sandbox: Synth) -> None:
    heading, row = prod.dashboard_row("Warehouse")
    assert heading["properties"]["markdown"] == "## Warehouse `lake-prd-warehouse`"
    assert [w["width"] for w in row] == [6, 6, 6, 6]
    rpus, used, queries, refreshes = (w["properties"] for w in row)
    # Redshift Serverless's metrics found by the workgroup's name, whatever their dimensions
    assert [m[0]["expression"] for m in rpus["metrics"]] == [
        'SEARCH(\' Namespace="AWS/Redshift-Serverless" MetricName="ComputeCapacity" '
        "\"lake-prd-warehouse\" ', 'Maximum', 3600)"
    ]
    assert [m[0]["expression"] for m in queries["metrics"]] == [
        f'SEARCH(\' Namespace="AWS/Redshift-Serverless" MetricName="{metric}" '
        "\"lake-prd-warehouse\" ', 'Maximum', 300)"
        for metric in ("QueriesSucceeded", "QueriesFailed")
    ]
    # the usage limit's alarm, with its threshold: the RPU-hours used this month
    assert used["annotations"]["alarms"] == [
        "arn:TOKEN:cloudwatch:TOKEN:TOKEN:alarm:lake-prd-consumption-Warehouse-UsageLimit"
    ]
    (usage_alarm,) = [
        r["Properties"]
        for r in prod.template_json(prod.lake.consumption)["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and "RPU" in r["Properties"]["AlarmDescription"]
    ]
    assert usage_alarm["AlarmName"] == "lake-prd-consumption-Warehouse-UsageLimit"
    parts = prod.dashboard_body()["Fn::Join"][1]
    outputs = [
        p["Fn::GetStackOutput"]["OutputName"]
        for p in parts
        if isinstance(p, dict) and "Fn::GetStackOutput" in p
    ]
    # the notices and alerts EventBridge sent for the refresh's statements, by rule
    assert [(m[:3], m[-1]["label"]) for m in refreshes["metrics"]] == [
        (["AWS/Events", "Invocations", "RuleName"], "refreshes finished"),
        (["AWS/Events", "Invocations", "RuleName"], "refreshes failed or aborted"),
    ]
    assert any("WarehouseRefreshAlertsRefreshFinishedRule" in o for o in outputs)
    assert any("WarehouseRefreshAlertsRefreshFailedRule" in o for o in outputs)
    # no warehouse, no row
    assert "Warehouse" not in json.dumps(sandbox.dashboard_body())


def test_spectrum_reads_the_curated_zone_alone_pii_columns_included(prod: Synth) -> None:
    # The warehouse's own schema (its admin, the refresh procedures, pii_reader): Lake Formation
    # gives it the curated zone's tables whole, and nothing of the raw, analytics or audit zones
    grants = {
        g["Resource"]["LFTagPolicy"]["ResourceType"]: g
        for g in lf_grants(prod.template(prod.lake.catalog))
        if "PersonasSpectrumRole" in grant_principal(g)
    }
    assert {kind: g["Permissions"] for kind, g in grants.items()} == {
        "DATABASE": ["DESCRIBE"],
        "TABLE": ["SELECT", "DESCRIBE"],
    }
    assert all(tag_expression(g) == {"zone": ["curated"]} for g in grants.values())


_SCHEMA_USE = re.compile(r"^(GRANT|REVOKE) USAGE ON SCHEMA (\w+) (?:TO|FROM) ROLE (\w+);$")


def test_a_redshift_analyst_reads_no_pii_column_of_the_curated_tables(prod: Synth) -> None:
    # GIVEN the bootstrap SQL: the IAM role each external schema reads as, and the schemas each
    # Redshift role may use once every statement has run (a REVOKE takes back an older GRANT)
    (sql_props,) = _props(prod, "Custom::RedshiftBootstrapSql")
    texts = [s if isinstance(s, str) else json.dumps(s) for s in sql_props["Statements"]]
    # (an IAM_ROLE is the governance stack's output: the statement is a join naming it)
    schema_roles = {
        name.group(1): text
        for text in texts
        if (name := re.search(r"CREATE EXTERNAL SCHEMA IF NOT EXISTS (\w+)", text))
    }
    uses: dict[str, set[str]] = {}
    for text in texts:
        if match := _SCHEMA_USE.match(sql.code(text)):
            verb, schema, role = match.groups()
            if verb == "GRANT":
                uses.setdefault(role, set()).add(schema)
            else:
                uses.setdefault(role, set()).discard(schema)
    assert uses == {"analyst": {"curated_analyst"}, "pii_reader": {"curated"}}
    # THEN the analyst's schema reads as the analysts' Spectrum role, which Lake Formation gives
    # the curated tables without their PII columns, as it gives the Athena analysts
    assert "PersonasSpectrumAnalystRole" in schema_roles["curated_analyst"]
    assert "PersonasSpectrumRole" in schema_roles["curated"]
    grants = lf_grants(prod.template(prod.lake.catalog))

    def expressions(principal: str) -> list[Any]:
        return sorted(
            (json.dumps(tag_expression(g)), g["Permissions"])
            for g in grants
            if principal in grant_principal(g)
        )

    analyst_schema = expressions("PersonasSpectrumAnalystRole")
    assert analyst_schema and analyst_schema == expressions("PersonasDataAnalyst")
    selects = [json.loads(e) for e, permissions in analyst_schema if "SELECT" in permissions]
    assert selects and all("pii" not in e["classification"] for e in selects)


def _role_tags(synth: Synth, logical_prefix: str) -> dict[str, str]:
    (role,) = [
        r
        for lid, r in synth.template(synth.lake.governance).find_resources("AWS::IAM::Role").items()
        if lid.startswith(logical_prefix)
    ]
    return {t["Key"]: t["Value"] for t in role["Properties"].get("Tags", [])}


def test_the_personas_sign_in_to_the_warehouse_through_iam_as_their_database_roles(
    prod: Synth, sandbox: Synth
) -> None:
    # GIVEN the warehouse's database roles (sql/redshift/02_roles.sql)
    (roles_sql,) = [f for f in sql.load("redshift") if f.name == "02_roles"]
    created = set(re.findall(r"^CREATE ROLE (\w+);$", roles_sql.text, re.MULTILINE))
    # THEN the analyst signs in as analyst and the engineer as pii_reader (the tag Redshift
    # Serverless reads at an IAM sign-in); the regional analyst, whose rows no warehouse role
    # filters, does not sign in
    assert _role_tags(prod, "PersonasDataAnalyst")["RedshiftDbRoles"] == "analyst"
    assert _role_tags(prod, "PersonasDataEngineer")["RedshiftDbRoles"] == "pii_reader"
    assert "RedshiftDbRoles" not in _role_tags(prod, "PersonasRegionalAnalyst")
    assert {"analyst", "pii_reader"} <= created
    # AND their sign-in policy: temporary credentials and the Data API on this workgroup, and the
    # Data API's statements of their own session only
    (policy,) = [
        p["Properties"]
        for lid, p in _of_type(prod, "AWS::IAM::ManagedPolicy").items()
        if lid.startswith("WarehouseSignInPolicy")
    ]
    signed_in = sorted(json.dumps(r) for r in policy["Roles"])
    assert len(signed_in) == 2
    assert "PersonasDataAnalyst" in signed_in[0] and "PersonasDataEngineer" in signed_in[1]
    use, own = policy["PolicyDocument"]["Statement"]
    assert sorted(actions(use)) == [
        "redshift-data:BatchExecuteStatement",
        "redshift-data:ExecuteStatement",
        "redshift-serverless:GetCredentials",
    ]
    assert use["Resource"]["Fn::GetAtt"][0].startswith("WarehouseWorkgroup")
    assert own["Resource"] == "*"
    assert own["Condition"] == {"StringEquals": {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}}
    # AND without Redshift no persona carries the tag
    assert "RedshiftDbRoles" not in _role_tags(sandbox, "PersonasDataAnalyst")
    assert "RedshiftDbRoles" not in _role_tags(sandbox, "PersonasDataEngineer")


def test_workgroup_is_private_ssl_only_with_capacity_and_usage_limit(prod: Synth) -> None:
    (wg,) = _props(prod, "AWS::RedshiftServerless::Workgroup")
    assert wg["PubliclyAccessible"] is False
    assert wg["EnhancedVpcRouting"] is True
    assert wg["BaseCapacity"] == PROD.redshift_base_rpu
    assert wg["Port"] == 5439  # Redshift's own, which the endpoint and clients expect
    params = {p["ParameterKey"]: p["ParameterValue"] for p in wg["ConfigParameters"]}
    assert params["require_ssl"] == "true"
    (limit,) = _props(prod, "Custom::RedshiftServerlessUsageLimit")
    assert limit["AmountRpuHours"] == str(PROD.redshift_usage_limit_rpu_hours)
    assert (limit["Period"], limit["BreachAction"]) == ("monthly", PROD.redshift_usage_limit_action)


def test_the_warehouse_alarms_to_the_alert_topic_at_80_percent_of_its_usage_limit(prod: Synth) -> None:
    # GIVEN prod's warehouse, whose limit emits a metric and runs on (no one is told by Redshift)
    (limit_id,) = _of_type(prod, "Custom::RedshiftServerlessUsageLimit")
    (workgroup,) = _props(prod, "AWS::RedshiftServerless::Workgroup")
    # THEN an alarm watches the RPU-hours that limit has counted this month
    (alarm,) = [
        a for a in _props(prod, "AWS::CloudWatch::Alarm") if a.get("MetricName") == "UsageLimitConsumed"
    ]
    assert alarm["Namespace"] == "AWS/Redshift-Serverless"
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
        "UsageLimitId": {"Ref": limit_id},  # the custom resource's id is Redshift's usage limit id
        "UsageType": "SERVERLESS_COMPUTE",
        "Workgroup": workgroup["WorkgroupName"],
    }
    assert (alarm["Statistic"], alarm["Period"]) == ("Maximum", 3600)
    # AND it fires at 80 % of the limit, before the month's RPU-hours are gone, saying what comes next
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["Threshold"] == 0.8 * PROD.redshift_usage_limit_rpu_hours
    assert "at all of them Redshift emits a metric and runs on" in alarm["AlarmDescription"]
    assert "AlertsTopic" in json.dumps(alarm["AlarmActions"]) and alarm["OKActions"] == alarm["AlarmActions"]


def test_bootstrap_sql_is_every_redshift_file_in_order(prod: Synth) -> None:
    (boot,) = _props(prod, "Custom::RedshiftBootstrapSql")
    statements = boot["Statements"]
    texts = [s if isinstance(s, str) else json.dumps(s) for s in statements]
    assert all("{{" not in t for t in texts)
    assert "CREATE EXTERNAL SCHEMA IF NOT EXISTS curated" in texts[0]
    assert "DATABASE 'lake_prd_curated'" in texts[0]
    assert "PersonasSpectrumRole" in texts[0]  # IAM_ROLE is the governance stack's Spectrum role
    assert any("CREATE MATERIALIZED VIEW public.daily_revenue" in t for t in texts)
    assert any("ATTACH MASKING POLICY clear_email" in t and "TO ROLE pii_reader" in t for t in texts)
    assert boot["Database"] == "lake"


def test_the_bootstrap_function_runs_sql_only_in_the_warehouse_with_its_admin_secret(prod: Synth) -> None:
    statements = policy_statements(
        prod.template(prod.lake.consumption), "WarehouseBootstrapSqlFunctionPolicy"
    )
    resource = {json.dumps(s["Action"]): s["Resource"] for s in statements}
    assert resource['"redshift-data:ExecuteStatement"']["Fn::GetAtt"][0].startswith("WarehouseWorkgroup")
    # waits on and, out of time, cancels its own statements: these actions take no resource, and
    # the condition keeps them to its own session's
    assert resource['["redshift-data:CancelStatement", "redshift-data:DescribeStatement"]'] == "*"
    (own,) = [s for s in statements if "redshift-data:DescribeStatement" in actions(s)]
    assert own["Condition"] == {"StringEquals": {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}}
    secret = json.dumps(resource['"secretsmanager:GetSecretValue"'])
    assert secret.endswith(':secret:redshift!lake-prd-warehouse-lake_admin-*"]]}')
    assert sorted(a for s in statements for a in actions(s) if a.startswith("redshift")) == [
        "redshift-data:CancelStatement",
        "redshift-data:DescribeStatement",
        "redshift-data:ExecuteStatement",
        "redshift-serverless:GetNamespace",
    ]


def _refresh_schedule(synth: Synth) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (lid, r)
        for lid, r in _of_type(synth, "AWS::Scheduler::Schedule").items()
        if r["Properties"]["Name"].endswith("-warehouse-refresh")
    ]
    return found


def test_the_warehouse_refreshes_its_copies_on_the_stage_schedule_as_a_user_that_may_only_call_that(
    prod: Synth,
) -> None:
    resources = prod.template(prod.lake.consumption).to_json()["Resources"]
    _, schedule = _refresh_schedule(prod)
    props = schedule["Properties"]
    (boot_id,) = _of_type(prod, "Custom::RedshiftBootstrapSql")
    boot = resources[boot_id]["Properties"]
    (workgroup,) = _props(prod, "AWS::RedshiftServerless::Workgroup")
    # GIVEN the refresh procedures the shipped SQL creates
    procedures = sql.refresh_procedures(
        [s for f in sql.load("redshift") for s in sql.statements(f.render(RENDER_VALUES))]
    )
    assert procedures == ["public.sp_refresh_daily_revenue", "public.sp_refresh_customer_contacts"]
    # THEN a schedule of the stage's group calls them all, in one Data API batch, on the stage's schedule
    assert (props["ScheduleExpression"], props["ScheduleExpressionTimezone"]) == (
        PROD.redshift_refresh_schedule,
        "UTC",
    )
    assert props["GroupName"] == "lake-prd"
    assert template_text(props["Target"]["Arn"]).endswith(
        ":scheduler:::aws-sdk:redshiftdata:batchExecuteStatement"
    )
    payload = json.loads(props["Target"]["Input"])
    assert payload == {
        "WorkgroupName": workgroup["WorkgroupName"],
        "Database": boot["Database"],
        "Sqls": [f"CALL {p}()" for p in procedures],
        "StatementName": props["Name"],
        "WithEvent": True,  # its end is an EventBridge event (the alert rule below)
    }
    # AND it signs in as its role (no secret): the role may call the Data API on this workgroup only
    role_id = props["Target"]["RoleArn"]["Fn::GetAtt"][0]
    role_name = resources[role_id]["Properties"]["RoleName"]
    assert role_name == props["Name"] == "lake-prd-warehouse-refresh"
    (statement,) = policy_statements(prod.template(prod.lake.consumption), "WarehouseRefreshPolicy")
    assert sorted(actions(statement)) == [
        "redshift-data:BatchExecuteStatement",
        "redshift-serverless:GetCredentials",
    ]
    assert statement["Resource"]["Fn::GetAtt"][0].startswith("WarehouseWorkgroup")
    # AND the bootstrap SQL gives that role's database user the procedures to call, and nothing else
    user = f'"IAMR:{role_name}"'
    granted = [s for s in boot["Statements"] if isinstance(s, str) and user in s]
    assert granted == [
        f"-- ok-if-exists\nCREATE USER {user} PASSWORD DISABLE;",
        *(f"GRANT EXECUTE ON PROCEDURE {p}() TO {user};" for p in procedures),
    ]
    assert boot["Statements"][-len(granted) :] == granted  # after the procedures exist
    assert boot_id in schedule["DependsOn"]  # the first call waits for them


def _statement_ended(name: str, state: str, principal: str) -> dict[str, Any]:
    """The Data API's event of a statement that ended (its guide's example, "Monitoring events for
    the Amazon Redshift Data API in Amazon EventBridge")."""
    return {
        "version": "0",
        "id": "18e7079c-dd4b-dd64-caf9-e2a31640dab0",
        "detail-type": "Redshift Data Statement Status Change",
        "source": "aws.redshift-data",
        "account": ACCOUNT,
        "time": "2026-12-07T05:00:41Z",
        "region": REGION,
        "resources": [f"arn:aws:redshift-serverless:{REGION}:{ACCOUNT}:workgroup/0b1c"],
        "detail": {
            "principal": principal,
            "statementName": name,
            "statementId": "dd2e1ec9-2ee3-49a0-819f-905fa7d75a4a",
            "redshiftQueryId": -1,
            "state": state,
            "rows": 1,
            "expireAt": 1796792441,
        },
    }


def test_a_failed_or_aborted_refresh_is_published_to_the_alert_topic(prod: Synth) -> None:
    _, schedule = _refresh_schedule(prod)
    name = json.loads(schedule["Properties"]["Target"]["Input"])["StatementName"]
    (rule,) = [
        r
        for r in _props(prod, "AWS::Events::Rule")
        if r["EventPattern"]["source"] == ["aws.redshift-data"]
        and r["EventPattern"]["detail"]["state"] != ["FINISHED"]
    ]
    pattern = prod.event_pattern(prod.lake.consumption, rule["EventPattern"])
    refresh_role = f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/scheduler-session"
    assert pattern.matches_event(_statement_ended(name, "FAILED", refresh_role))
    assert pattern.matches_event(_statement_ended(name, "ABORTED", f"arn:aws:iam::{ACCOUNT}:role/{name}"))
    assert not pattern.matches_event(_statement_ended(name, "FINISHED", refresh_role))
    assert not pattern.matches_event(_statement_ended("another-statement", "FAILED", refresh_role))
    # a statement someone else ran under the refresh's name is no refresh
    analyst = f"arn:aws:sts::{ACCOUNT}:assumed-role/lake-prd-data-analyst/ann"
    assert not pattern.matches_event(_statement_ended(name, "FAILED", analyst))
    (target,) = rule["Targets"]
    assert "AlertsTopic" in json.dumps(target["Arn"])
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"]["id"] == "$.detail.statementId"
    assert "describe-statement --id <id>" in transformer["InputTemplate"]
    assert "DeadLetterConfig" in target


def test_a_finished_refresh_is_news_and_none_for_two_days_alarms(prod: Synth, sandbox: Synth) -> None:
    _, schedule = _refresh_schedule(prod)
    name = json.loads(schedule["Properties"]["Target"]["Input"])["StatementName"]
    # GIVEN the rule that hears a refresh finish
    (rule,) = [
        r
        for r in _props(prod, "AWS::Events::Rule")
        if r["EventPattern"]["source"] == ["aws.redshift-data"]
        and r["EventPattern"]["detail"]["state"] == ["FINISHED"]
    ]
    assert rule["EventPattern"]["detail"]["statementName"] == [name]
    pattern = prod.event_pattern(prod.lake.consumption, rule["EventPattern"])
    refresh_role = f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/scheduler-session"
    assert pattern.matches_event(_statement_ended(name, "FINISHED", refresh_role))
    assert not pattern.matches_event(_statement_ended(name, "FAILED", refresh_role))
    # no one else's statement named alike passes for a refresh, nor holds the alarm below off
    analyst = f"arn:aws:sts::{ACCOUNT}:assumed-role/lake-prd-data-analyst/ann"
    assert not pattern.matches_event(_statement_ended(name, "FINISHED", analyst))
    # THEN it sends a notice, not an alert: the notices topic, which EventBridge may publish to
    # only where the warehouse is on
    (target,) = rule["Targets"]
    assert "NoticesTopic" in json.dumps(target["Arn"]) and "AlertsTopic" not in json.dumps(target["Arn"])
    assert json.loads(target["InputTransformer"]["InputTemplate"]).startswith("Warehouse refresh <state> at")

    def eventbridge_may_publish(synth: Synth) -> bool:
        policies = synth.template(synth.lake.foundation).find_resources("AWS::SNS::TopicPolicy")
        return any(
            "NoticesTopic" in json.dumps(p["Properties"]["Topics"])
            and "events.amazonaws.com" in json.dumps(p["Properties"]["PolicyDocument"])
            for p in policies.values()
        )

    assert eventbridge_may_publish(prod) and not eventbridge_may_publish(sandbox)
    # AND no notice sent (EventBridge's count of them, by the rule's name) for the stage's hours
    # alarms to the alert topic: a schedule disabled or deleted by hand leaves nothing else
    (alarm,) = [a for a in _props(prod, "AWS::CloudWatch::Alarm") if a.get("Namespace") == "AWS/Events"]
    assert alarm["MetricName"] == "Invocations"
    assert alarm["Dimensions"] == [{"Name": "RuleName", "Value": rule["Name"]}]
    assert rule["Name"] == f"{name}-finished"
    assert (alarm["EvaluationPeriods"], alarm["Period"]) == (PROD.redshift_refresh_stale_hours, 3600)
    assert alarm["TreatMissingData"] == "breaching"
    assert "AlertsTopic" in json.dumps(alarm["AlarmActions"])


def test_without_redshift_there_is_no_refresh(sandbox: Synth) -> None:
    names = [p["Name"] for p in _props(sandbox, "AWS::Scheduler::Schedule")]
    assert names and not [n for n in names if "warehouse" in n]
    assert not [r for r in _props(sandbox, "AWS::Events::Rule") if "aws.redshift-data" in json.dumps(r)]


def test_custom_resources_fail_fast_when_their_function_dies_without_answering(prod: Synth) -> None:
    # Every custom resource of the lake (the warehouse's two, Macie's job): CloudFormation stops
    # waiting 5 minutes after its function's timeout, and Lambda does not run the request again.
    seen = set()
    for template in prod.all_templates().values():
        resources = template["Resources"]
        retries = {
            json.dumps(r["Properties"]["FunctionName"]): (logical_id, r["Properties"]["MaximumRetryAttempts"])
            for logical_id, r in resources.items()
            if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        }
        for resource in resources.values():
            # (Custom::VpcRestrictDefaultSG is CDK's own, which empties the VPC's default group.)
            if resource["Type"].startswith("Custom::") and resource["Type"] != "Custom::VpcRestrictDefaultSG":
                (function_id, _) = resource["Properties"]["ServiceToken"]["Fn::GetAtt"]
                timeout = resources[function_id]["Properties"]["Timeout"]
                assert int(resource["Properties"]["ServiceTimeout"]) == timeout + 300
                config_id, attempts = retries[json.dumps({"Ref": function_id})]
                assert attempts == 0
                assert config_id in resource["DependsOn"]  # even the first request is not retried
                seen.add((resource["Type"], timeout))
    # The bootstrap SQL waits on Redshift for as long as a function may run; the rest for 5 minutes.
    assert seen == {
        ("Custom::RedshiftBootstrapSql", 900),
        ("Custom::RedshiftServerlessUsageLimit", 300),
        ("Custom::SharedLogGroups", 300),
        ("Custom::MacieClassificationJob", 300),
        ("Custom::MacieResultsRepository", 300),
    }


#: Statements sqlglot's Redshift dialect does not model; it keeps them as commands.
REDSHIFT_ONLY = (
    "CREATE EXTERNAL SCHEMA",
    "CREATE ROLE",
    "CREATE MASKING POLICY",
    "ALTER MASKING POLICY",
    "ATTACH MASKING POLICY",
    "GRANT",
    "REFRESH",
    "CREATE OR REPLACE PROCEDURE",
    "CALL",
)


@pytest.mark.parametrize("file", sql.load("redshift"), ids=lambda f: f.name)
def test_redshift_sql_parses_in_the_redshift_dialect(file: sql.SqlFile) -> None:
    text = file.render(RENDER_VALUES)
    statements = sql.statements(text)
    assert statements
    for statement in statements:
        code = sql.code(statement)
        if code.lstrip().upper().startswith("CREATE OR REPLACE PROCEDURE"):
            statements += sql.procedure_body(statement)  # each statement of its body is checked too
        if code.lstrip().upper().startswith(REDSHIFT_ONLY):
            # sqlglot keeps these as commands or cannot parse them: check they tokenize cleanly
            assert sqlglot.tokenize(code, read="redshift")
            continue
        parsed = sqlglot.parse_one(code, read="redshift")
        assert not isinstance(parsed, sqlglot.exp.Command), code
        # what sqlglot models must come back out as Redshift
        assert parsed.sql(dialect="redshift")


def test_the_redshift_view_sums_revenue_as_the_athena_query_does() -> None:
    # GIVEN orders of two days, two currencies and every status, one a second before midnight UTC
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'; CREATE SCHEMA curated")
    con.execute(
        "CREATE TABLE curated.orders (order_id VARCHAR, status VARCHAR, currency VARCHAR, country VARCHAR, "
        "amount DECIMAL(12, 2), order_ts TIMESTAMP)"
    )
    con.execute("CREATE VIEW orders AS SELECT * FROM curated.orders")  # Athena's name for it
    rows = [
        ("o1", "PAID", "EUR", "DE", "10.00", "2024-05-01 23:59:59"),
        ("o2", "SHIPPED", "EUR", "DE", "5.50", "2024-05-01 08:00:00"),
        ("o3", "PLACED", "EUR", "DE", "99.00", "2024-05-01 09:00:00"),
        ("o4", "PAID", "KRW", "KR", "2500.00", "2024-05-02 00:00:00"),
        ("o5", "CANCELLED", "KRW", "KR", "3000.00", "2024-05-02 01:00:00"),
        ("o6", "RETURNED", "EUR", "DE", "20.00", "2024-05-02 02:00:00"),
        ("o7", "SHIPPED", "EUR", "KR", "1.00", "2024-05-02 03:00:00"),
    ]
    con.executemany("INSERT INTO curated.orders VALUES (?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))", rows)
    create = warehouse_sql.statement("03_daily_revenue", "CREATE MATERIALIZED VIEW")
    select = sqlglot.parse_one(create, read="redshift").expression.sql(dialect="duckdb")
    (query,) = [q for q in sql.load("athena") if q.name == "daily_revenue_by_country"]
    # WHEN both run over them (sqlglot to DuckDB)
    in_redshift = sorted(con.execute(select).fetchall())
    in_athena = sorted(con.execute(sql.athena_to_duckdb(query.text)).fetchall())
    # THEN they give the same rows: paid and shipped orders, per UTC day, country and currency
    assert (
        in_redshift
        == in_athena
        == [
            (date(2024, 5, 1), "DE", "EUR", 2, Decimal("15.50")),
            (date(2024, 5, 2), "KR", "EUR", 1, Decimal("1.00")),
            (date(2024, 5, 2), "KR", "KRW", 1, Decimal("2500.00")),
        ]
    )


def test_customer_contacts_hold_each_customers_latest_known_contact() -> None:
    # GIVEN c1's orders: an old address, a newer one, then an order that gave neither e-mail nor
    # phone; c2 with one order; and the copy of an earlier refresh, which still holds c9, since
    # erased from the curated orders
    procedure = warehouse_sql.statement(
        "04_customer_contacts", "PROCEDURE public.sp_refresh_customer_contacts()"
    )
    body = sql.procedure_body(procedure)
    assert [s.split()[0] for s in body] == ["DELETE", "INSERT"]  # one transaction: old copy or new
    con = duckdb.connect()
    con.execute("CREATE SCHEMA curated; CREATE SCHEMA public")
    con.execute(
        "CREATE TABLE curated.orders (order_id VARCHAR, customer_id VARCHAR, customer_email VARCHAR, "
        "customer_phone VARCHAR, order_ts TIMESTAMP)"
    )
    con.execute(
        "CREATE TABLE public.customer_contacts (customer_id VARCHAR, customer_email VARCHAR, "
        "customer_phone VARCHAR, last_order_ts TIMESTAMP)"
    )
    con.execute(
        "INSERT INTO curated.orders VALUES "
        "('o1', 'c1', 'zoe@old.example', '010-0000-0001', TIMESTAMP '2024-05-01 10:00:00'), "
        "('o2', 'c1', 'ann@new.example', '010-0000-0002', TIMESTAMP '2024-05-02 10:00:00'), "
        "('o3', 'c1', NULL, NULL, TIMESTAMP '2024-05-03 10:00:00'), "
        "('o4', 'c2', 'bo@example.com', NULL, TIMESTAMP '2024-05-01 09:00:00')"
    )
    con.execute(
        "INSERT INTO public.customer_contacts VALUES "
        "('c9', 'erased@example.com', '010-9999-9999', TIMESTAMP '2024-04-01 10:00:00')"
    )
    # WHEN the refresh procedure's statements run (Redshift SQL, run by DuckDB through sqlglot)
    for statement in body:
        con.execute(warehouse_sql.in_duckdb(statement))
    # THEN each customer has their latest e-mail and phone (not the largest) and latest order,
    # and the erased customer is gone
    assert con.execute("SELECT * FROM public.customer_contacts ORDER BY customer_id").fetchall() == [
        ("c1", "ann@new.example", "010-0000-0002", datetime(2024, 5, 3, 10, 0)),
        ("c2", "bo@example.com", None, datetime(2024, 5, 1, 9, 0)),
    ]


@pytest.mark.parametrize(
    ("policy", "column", "shown"),
    [
        (
            "mask_email",
            "email",
            {
                "ann@new.example": "***@new.example",
                "a@b@c.example": "***@c.example",  # the last @ starts the domain
                "ann.new.example": "***",  # no @: hidden whole, not shown as it is
                "@new.example": "***",
                "ann@": "***",
                None: None,  # no value is not made up
            },
        ),
        (
            "mask_phone",
            "phone",
            {
                "010-0000-0002": "***-****-0002",
                "+44 20 7946 0958": "***-****-0958",
                "1234": "***",
                None: None,
            },
        ),
    ],
)
def test_the_masks_keep_a_hint_and_never_show_a_value_they_do_not_recognise(
    policy: str, column: str, shown: dict[str | None, str | None]
) -> None:
    # GIVEN the expression the policy is given (Redshift SQL, run by DuckDB through sqlglot)
    query = warehouse_sql.in_duckdb(f"SELECT {warehouse_sql.mask(policy)} AS shown FROM t")
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t ({column} VARCHAR)")
    for value, expected in shown.items():
        con.execute("DELETE FROM t")
        con.execute("INSERT INTO t VALUES (?)", [value])
        # THEN each value is masked as expected
        assert con.execute(query).fetchone() == (expected,), value
    # AND the policy is created showing nothing, so a failed ALTER hides the whole value
    create = warehouse_sql.statement("04_customer_contacts", f"CREATE MASKING POLICY {policy} WITH")
    assert "USING (CAST(NULL AS VARCHAR(" in create and "-- ok-if-exists" in create


def test_a_script_is_split_at_each_semicolon_that_ends_a_line_of_code() -> None:
    script = (
        "-- what the script does\n"
        "\n"
        "CREATE ROLE a;\n"
        "\n"
        "\n"
        "-- ok-if-exists\n"
        "-- a comment that ends in one;\n"
        "GRANT USAGE ON SCHEMA s\n"
        "\n"
        "    TO ROLE a;  \n"
        "SELECT ';' AS x; -- not the end\n"
        "FROM t;\n"
        "-- a closing remark, no statement\n"
    )
    # each statement as written, with the comment lines before it (the bootstrap reads
    # ok-if-exists there); blank lines between statements are dropped, those inside kept
    assert sql.statements(script) == [
        "-- what the script does\n\nCREATE ROLE a;",
        "-- ok-if-exists\n-- a comment that ends in one;\nGRANT USAGE ON SCHEMA s\n\n    TO ROLE a;",
        "SELECT ';' AS x; -- not the end\nFROM t;",
    ]
    with pytest.raises(ValueError, match="the last statement does not end with ';' at the end of a line"):
        sql.statements("SELECT 1;\nSELECT 2\n-- the end\n")


def test_a_procedure_is_one_statement_whose_body_holds_its_own() -> None:
    script = (
        "CREATE TABLE t (a INT);\n"
        "-- the refresh\n"
        "CREATE OR REPLACE PROCEDURE public.sp_refresh_t()\n"
        "AS $$\n"
        "BEGIN\n"
        "    -- a comment with $$ in it; does not end the body\n"
        "    DELETE FROM t;\n"
        "    INSERT INTO t SELECT 1;\n"
        "END;\n"
        "$$ LANGUAGE plpgsql\n"
        "SECURITY DEFINER;\n"
        "CREATE OR REPLACE PROCEDURE public.sp_other(x INT) AS $$ BEGIN NULL; END; $$ LANGUAGE plpgsql;\n"
        "CALL public.sp_refresh_t();\n"
    )
    statements = sql.statements(script)
    assert [s.splitlines()[-1] for s in statements] == [
        "CREATE TABLE t (a INT);",
        "SECURITY DEFINER;",
        "CREATE OR REPLACE PROCEDURE public.sp_other(x INT) AS $$ BEGIN NULL; END; $$ LANGUAGE plpgsql;",
        "CALL public.sp_refresh_t();",
    ]
    assert statements[1].startswith("-- the refresh\nCREATE OR REPLACE PROCEDURE")
    # only refresh procedures without arguments are the schedule's to call
    assert sql.refresh_procedures(statements) == ["public.sp_refresh_t"]
    assert sql.procedure_body(statements[1]) == [
        "-- a comment with $$ in it; does not end the body\n    DELETE FROM t;",
        "INSERT INTO t SELECT 1;",
    ]
    assert sql.procedure_body(statements[2]) == ["NULL;"]
    with pytest.raises(ValueError, match=r"a \$\$ body is not closed"):
        sql.statements("CREATE PROCEDURE p() AS $$\nBEGIN\n  NULL;\nEND;\n")
    with pytest.raises(ValueError, match="not one \\$\\$ body"):
        sql.procedure_body("CALL p();")
    with pytest.raises(ValueError, match="the body does not run from BEGIN to END;"):
        sql.procedure_body("CREATE PROCEDURE p() AS $$ NULL; $$ LANGUAGE plpgsql;")


def _refresh_procedure(
    arguments: str = "", body: str = "DELETE FROM public.mine;", security: str = "SECURITY DEFINER"
) -> str:
    """A file of ``sql/redshift/`` that creates a refresh procedure, written right unless told."""
    return (
        f"-- my copy\nCREATE PROCEDURE public.sp_refresh_mine({arguments})\nAS $$\nBEGIN\n    {body}\nEND;\n"
        f"$$ LANGUAGE plpgsql\n{security};\n"
    )


@pytest.mark.parametrize(
    ("mine", "problem"),
    [
        (
            _refresh_procedure(security=""),
            r"sql/redshift/05_mine.sql: public.sp_refresh_mine\(\): add SECURITY DEFINER after LANGUAGE plpgsql; "
            "the refresh schedule's database user may call it and do nothing else",
        ),
        (
            _refresh_procedure(body="TRUNCATE public.mine;"),
            r"sql/redshift/05_mine.sql: public.sp_refresh_mine\(\): the refresh schedule calls every refresh "
            r"procedure in one transaction \(BatchExecuteStatement\), where a procedure may not TRUNCATE",
        ),
        (
            _refresh_procedure(arguments="since DATE"),
            r"sql/redshift/05_mine.sql: public.sp_refresh_mine\(since DATE\): the refresh schedule calls each "
            "public.sp_refresh_\\* procedure with no argument",
        ),
    ],
)
def test_a_refresh_procedure_the_schedule_could_not_call_fails_synth_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mine: str, problem: str
) -> None:
    # GIVEN the shipped SQL files and one more, whose refresh procedure is written wrong
    for engine in ("athena", "redshift"):
        (tmp_path / "sql" / engine).mkdir(parents=True)
        for script in sql.load(engine):
            (tmp_path / "sql" / engine / script.path.name).write_text(script.text)
    folder = tmp_path / "sql" / "redshift"
    sql.check_refresh_procedures(tmp_path / "sql")  # the shipped ones may be called
    (folder / "05_mine.sql").write_text(mine)
    # THEN the check names the file, the procedure and the fix
    with pytest.raises(ValueError, match=problem):
        sql.check_refresh_procedures(tmp_path / "sql")
    # AND synth runs it with Redshift on, before any construct; with Redshift off the SQL is not deployed
    monkeypatch.setattr(sql, "SQL_DIR", tmp_path / "sql")
    with pytest.raises(ValueError, match=problem):
        check_inputs(PROD, (ORDERS,))
    check_inputs(SANDBOX, (ORDERS,))
    monkeypatch.undo()
    # AND written right (no argument, SECURITY DEFINER, with or without OR REPLACE) it is called too
    (folder / "05_mine.sql").write_text(_refresh_procedure())
    sql.check_refresh_procedures(tmp_path / "sql")
    script = [s for f in sql.load("redshift", tmp_path / "sql") for s in sql.statements(f.text)]
    assert sql.refresh_procedures(script)[-1] == "public.sp_refresh_mine"


# --- QuickSight ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_quicksight() -> Synth:
    return synthesize("sandbox", **WITHOUT_AUDIT)


def test_quicksight_is_off_without_a_principal(sandbox: Synth) -> None:
    types = {r["Type"] for t in sandbox.all_templates().values() for r in t["Resources"].values()}
    assert not [t for t in types if t.startswith("AWS::QuickSight::")]
    assert sandbox.lake.governance.personas.quicksight is None


def test_quicksight_source_uses_the_analysts_workgroup_as_its_own_role(with_quicksight: Synth) -> None:
    (source,) = _props(with_quicksight, "AWS::QuickSight::DataSource")
    assert source["Type"] == "ATHENA"
    athena = source["DataSourceParameters"]["AthenaParameters"]
    assert athena["WorkGroup"]["Ref"].startswith("AnalystsWorkgroup")
    assert "PersonasQuickSightRole" in json.dumps(athena["RoleArn"])
    assert source["SslProperties"] == {"DisableSsl": False}
    (permission,) = source["Permissions"]
    assert permission["Principal"] == QUICKSIGHT_PRINCIPAL
    assert "quicksight:PassDataSource" in permission["Actions"]


def test_quicksight_dataset_has_no_pii_and_queries_athena_directly(with_quicksight: Synth) -> None:
    orders = load_dataset(DATASETS_DIR / "orders.json")
    (data_set,) = _props(with_quicksight, "AWS::QuickSight::DataSet")
    assert data_set["ImportMode"] == "DIRECT_QUERY"
    table = data_set["PhysicalTableMap"]["orders"]["RelationalTable"]
    assert table["Schema"] == "lake_sbx_curated" and table["Name"] == "orders"
    assert table["DataSourceArn"]["Fn::GetAtt"][0].startswith("QuickSightAthenaSource")
    columns = {c["Name"]: c for c in table["InputColumns"]}
    assert not set(columns) & set(orders.pii_columns)
    # Every non-PII column but the array of order lines, which QuickSight cannot type.
    assert set(columns) == set(orders.non_pii_columns) - {"items"}
    assert columns["amount"] == {"Name": "amount", "Type": "DECIMAL", "SubType": "FIXED"}
    assert columns["order_ts"]["Type"] == "DATETIME"
    assert data_set["Permissions"][0]["Principal"] == QUICKSIGHT_PRINCIPAL


def test_quicksight_analysis_and_dashboard_show_revenue_and_the_status_funnel(with_quicksight: Synth) -> None:
    for type_ in ("AWS::QuickSight::Analysis", "AWS::QuickSight::Dashboard"):
        (resource,) = _props(with_quicksight, type_)
        definition = resource["Definition"]
        (declaration,) = definition["DataSetIdentifierDeclarations"]
        assert declaration["DataSetArn"]["Fn::GetAtt"][0].startswith("QuickSightOrdersDataSet")
        (sheet,) = definition["Sheets"]
        visuals = {next(iter(v)): next(iter(v.values())) for v in sheet["Visuals"]}
        assert set(visuals) == {"LineChartVisual", "BarChartVisual", "FunnelChartVisual"}
        line = visuals["LineChartVisual"]["ChartConfiguration"]["FieldWells"]["LineChartAggregatedFieldWells"]
        assert line["Category"][0]["DateDimensionField"]["DateGranularity"] == "DAY"
        assert line["Values"][0]["NumericalMeasureField"]["Column"]["ColumnName"] == "amount"
        bar_chart = visuals["BarChartVisual"]["ChartConfiguration"]
        bar = bar_chart["FieldWells"]["BarChartAggregatedFieldWells"]
        assert bar["Category"][0]["CategoricalDimensionField"]["Column"]["ColumnName"] == "country"
        # Revenue is summed per currency (a line, a bar each), and bars stand side by side: no
        # visual adds one currency's amounts to another's.
        for wells in (line, bar):
            (color,) = wells["Colors"]
            assert color["CategoricalDimensionField"]["Column"]["ColumnName"] == "currency"
        assert bar_chart["BarsArrangement"] == "CLUSTERED"
        assert bar_chart["SortConfiguration"]["CategorySort"][0]["FieldSort"]["FieldId"] == "country"
        funnel = visuals["FunnelChartVisual"]["ChartConfiguration"]["FieldWells"]
        assert (
            funnel["FunnelChartAggregatedFieldWells"]["Category"][0]["CategoricalDimensionField"]["Column"][
                "ColumnName"
            ]
            == "status"
        )
        # Revenue counts paid and shipped orders, as the shipped SQL does; the funnel counts all.
        (group,) = definition["FilterGroups"]
        (scope,) = group["ScopeConfiguration"]["SelectedSheets"]["SheetVisualScopingConfigurations"]
        assert scope["VisualIds"] == ["daily-revenue", "revenue-by-country"]
        values = group["Filters"][0]["CategoryFilter"]["Configuration"]["FilterListConfiguration"]
        assert values["CategoryValues"] == ["PAID", "SHIPPED"]
        revenue_sql = {q.name: q.text for q in sql.load("athena")}["daily_revenue_by_country"]
        assert "WHERE status IN ('PAID', 'SHIPPED')" in revenue_sql
        (permission,) = resource["Permissions"]
        assert permission["Principal"] == QUICKSIGHT_PRINCIPAL
    (dashboard,) = _props(with_quicksight, "AWS::QuickSight::Dashboard")
    assert dashboard["DashboardPublishOptions"]["ExportToCSVOption"] == {"AvailabilityStatus": "DISABLED"}


@pytest.mark.parametrize(
    ("change", "field", "fix"),
    [
        (
            {"columns": tuple(c for c in ORDERS.columns if c.name != "currency")},
            "columns",
            "the QuickSight dashboard reads currency: declare it",
        ),
        (
            {"governance": replace(ORDERS.governance, pii_columns=(*ORDERS.pii_columns, "currency"))},
            "governance.pii_columns",
            "the QuickSight dashboard reads currency and sees no PII: take it out",
        ),
    ],
    ids=["missing", "pii"],
)
def test_a_dashboard_dataset_without_a_column_the_dashboard_reads_fails_before_synth(
    change: dict[str, Any], field: str, fix: str
) -> None:
    datasets = (replace(ORDERS, **change),)
    with_dashboard = features_from_context(SANDBOX, None, QUICKSIGHT_PRINCIPAL)
    with pytest.raises(DatasetConfigError) as refused:
        check_inputs(with_dashboard, datasets)
    assert refused.value.path == ORDERS.source_file
    assert refused.value.problems == [(field, f"{fix}, or leave features.quicksight_principal_arn unset")]
    check_inputs(SANDBOX, datasets)  # without QuickSight, nothing reads the column


def test_quicksight_role_reads_like_an_analyst_and_nothing_more(with_quicksight: Synth) -> None:
    governance = with_quicksight.template_json(with_quicksight.lake.governance)["Resources"]
    (role,) = [r for k, r in governance.items() if k.startswith("PersonasQuickSightRole")]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "quicksight.amazonaws.com"}
    assert "aws:SourceAccount" in trust["Condition"]["StringEquals"]
    (policy,) = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for k, r in governance.items()
        if k.startswith("PersonasQuickSightPolicy")
    ]
    text = json.dumps(policy)
    assert "workgroup/lake-sbx-analysts" in text and "lakeformation:GetDataAccess" in text
    # Lake Formation vends the curated data: no S3 or KMS access of its own to the curated zone.
    assert "CuratedBucket" not in text and "CuratedKey" not in text and "RawKey" not in text


def test_a_report_schedule_eventbridge_would_refuse_fails_synth_with_the_fix() -> None:
    # GIVEN a report given a Unix-style cron expression (five fields, no ?)
    stack = cdk.Stack(cdk.App(), "T")
    (query,) = [q for q in sql.load("athena") if q.name == "daily_revenue_by_country"]
    # WHEN it is built, THEN synth stops, naming the report and the expression to write
    with pytest.raises(
        ValueError, match=r"^report daily_revenue_by_country: schedule cron\(0 6 \* \* \*\) has 5"
    ):
        ScheduledReport(
            stack,
            "Report",
            name="t-report",
            query=query,
            database="d",
            workgroup="w",
            bucket=s3.Bucket(stack, "Analytics"),
            bucket_key=kms.Key(stack, "AnalyticsKey"),
            results_bucket=s3.Bucket(stack, "Results"),
            tables=["orders"],
            alert_topic=sns.Topic(stack, "Alerts"),
            logs_key=kms.Key(stack, "LogsKey"),
            log_retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            schedule_group="g",
            schedule="cron(0 6 * * *)",
        )
