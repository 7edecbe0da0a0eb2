"""What the synthesized lake costs with no traffic, and per unit of traffic.

Reads the cloud assembly's templates (what would be deployed) and ``config/prices.json`` (list
prices with their date); prints the idle monthly cost by component, largest first, and the cost
per GB ingested and per TB scanned. ``benchmarks/results.json`` (``make bench``) supplies the
measured record size, transform speed and compression ratios when it exists.

    make cost                    # synth the sandbox stage, then this
    python -m datalake.cost cdk.out [--prices config/prices.json]
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datalake.dataset import WORKER_DPUS
from datalake.diagram import Assembly, referenced, text
from datalake.quality import EVALUATION_WORKERS

ROOT = Path(__file__).resolve().parent.parent
PRICES = ROOT / "config" / "prices.json"
BENCH = ROOT / "benchmarks" / "results.json"
#: Resource types with no charge of their own while idle (usage-billed or free); anything not
#: here and not priced below fails ``tests/test_cost.py`` until someone classifies it.
NO_IDLE_CHARGE = {
    "AWS::Athena::NamedQuery": "free",
    "AWS::Athena::WorkGroup": "per TB scanned",
    "AWS::Budgets::Budget": "an account's first two budgets free, each further one 0.02 USD a day (Budgets' guide)",
    "AWS::CDK::Metadata": "free",
    "AWS::CloudFormation::Stack": "free (a dataset's nested stack; its resources are counted as they are)",
    "AWS::CloudTrail::Trail": "first copy of management events free; data events per 100k",
    "AWS::EC2::FlowLog": "per GB of logs (an idle VPC logs almost nothing)",
    "AWS::EC2::RouteTable": "free",
    "AWS::EC2::SecurityGroup": "free",
    "AWS::EC2::SecurityGroupEgress": "free",
    "AWS::EC2::SecurityGroupIngress": "free",
    "AWS::EC2::Subnet": "free",
    "AWS::EC2::SubnetRouteTableAssociation": "free",
    "AWS::EC2::VPC": "free",
    "AWS::Events::Rule": "free for AWS service events",
    "AWS::Glue::Crawler": "per DPU-hour when run (see the schedules)",
    "AWS::Glue::DataQualityRuleset": "per DPU-hour when evaluated (see the schedules)",
    "AWS::Glue::Database": "free (first million catalog objects)",
    "AWS::Glue::Job": "per DPU-hour when run (see the schedules)",
    "AWS::Glue::SecurityConfiguration": "free",
    "AWS::Glue::Table": "free (first million catalog objects)",
    "AWS::IAM::ManagedPolicy": "free",
    "AWS::IAM::Policy": "free",
    "AWS::IAM::Role": "free",
    "AWS::KMS::Alias": "free",
    "AWS::KinesisFirehose::DeliveryStream": "per GB ingested",
    "AWS::LakeFormation::DataCellsFilter": "free",
    "AWS::LakeFormation::DataLakeSettings": "free",
    "AWS::LakeFormation::PrincipalPermissions": "free",
    "AWS::LakeFormation::Resource": "free",
    "AWS::LakeFormation::Tag": "free",
    "AWS::LakeFormation::TagAssociation": "free",
    "AWS::Lambda::EventInvokeConfig": "free",
    "AWS::Lambda::Function": "per request and GB-second",
    "AWS::Lambda::Permission": "free",
    "AWS::Logs::LogGroup": "per GB ingested and stored",
    "AWS::Logs::LogStream": "free",
    "AWS::Logs::MetricFilter": "free; its custom metric is charged pro rata for the hours it has data (a match)",
    "AWS::Logs::QueryDefinition": "free; Logs Insights charges per GB a run scans",
    "AWS::Macie::AllowList": "free",
    "AWS::Macie::CustomDataIdentifier": "free",
    "AWS::Macie::FindingsFilter": "free",
    "AWS::QuickSight::Analysis": "included in author licences",
    "AWS::QuickSight::Dashboard": "included in licences",
    "AWS::QuickSight::DataSet": "direct query: Athena per TB scanned",
    "AWS::QuickSight::DataSource": "free",
    "AWS::RedshiftServerless::Workgroup": "per RPU-hour while queries run; nothing when idle",
    "AWS::S3::Bucket": "per GB stored and per request",
    "AWS::S3::BucketPolicy": "free",
    "AWS::SNS::Topic": "per message",
    "AWS::SNS::TopicPolicy": "free",
    "AWS::SQS::Queue": "per request",
    "AWS::SQS::QueuePolicy": "free",
    "AWS::Scheduler::ScheduleGroup": "free",
    "AWS::StepFunctions::StateMachine": "per state transition (see the schedules)",
    "Custom::MacieClassificationJob": "per GB inspected",
    "Custom::MacieResultsRepository": "free (a setting); the results it keeps are S3 storage",
    "Custom::RedshiftBootstrapSql": "once, at deploy",
    "Custom::RedshiftServerlessUsageLimit": "free",
    "Custom::S3AutoDeleteObjects": "once, at destroy",
    "Custom::SharedLogGroups": "per GB of the warehouse's logs ingested and stored (the account's groups)",
    "Custom::S3BucketNotifications": "once, at deploy",
    "Custom::VpcRestrictDefaultSG": "once, at deploy",
}
PRICED = {
    "AWS::KMS::Key",
    "AWS::EC2::VPCEndpoint",
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::Dashboard",
    "AWS::Macie::Session",
    "AWS::RedshiftServerless::Namespace",
    "AWS::Scheduler::Schedule",
}
#: State transitions (Step Functions bills each state a run enters) of a pipeline run that
#: rebuilt days and whose evaluation was done at its first poll: from RebuildRequested? through
#: the job, its summary, the crawler, the evaluation's start, one wait and poll, its result and
#: the notice to Done...
PIPELINE_TRANSITIONS = 15
#: ...or of a run that found nothing new: RebuildRequested?, OnlyNewData, RunJob, ReadRunSummary,
#: AnyDayRebuilt?, NothingNew. ``tests/test_pipeline_execution.py`` counts both in executions.
PIPELINE_TRANSITIONS_SKIPPING = 6
#: What a pipeline definition tests to skip the crawler and data quality when the job rebuilt nothing.
SKIP_WHEN_IDLE = "summary.partitions_rebuilt"
#: A report run that succeeded: Unload (Athena's .sync integration waits within the state),
#: MarkRunComplete, Done.
REPORT_TRANSITIONS = 3
#: Firehose bills ingestion per record in increments of 5 KB.
FIREHOSE_INCREMENT = 5 * 1024


@dataclass(frozen=True)
class Line:
    component: str
    detail: str
    monthly: float


def runs_per_month(expression: str, hours: float) -> float:
    """How often a schedule expression fires in a month (rate() exactly, cron() approximately)."""
    rate = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if rate:
        every = int(rate.group(1)) * {"minute": 1 / 60, "hour": 1, "day": 24}[rate.group(2).rstrip("s")]
        return hours / every
    cron = re.fullmatch(r"cron\((\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\)", expression)
    if cron:
        minutes, hours_field = cron.group(1), cron.group(2)
        per_day = _count(minutes, 60) * _count(hours_field, 24)
        return per_day * hours / 24
    raise ValueError(f"cannot read the schedule expression {expression!r}")


def _count(field: str, span: int) -> int:
    if field in ("*", "?"):
        return span
    if field.startswith("*/") or "/" in field:
        return span // int(field.split("/")[1])
    return len(field.split(","))


def idle(assembly: Assembly, prices: dict[str, Any]) -> list[Line]:
    p = {k: v["price"] for k, v in prices["idle"].items()}
    hours = prices["hours_per_month"]
    athena_tb = prices["usage"]["athena_tb_scanned"]["price"]
    lines: list[Line] = []

    def count(type_: str) -> int:
        return sum(1 for _ in assembly.resources(type_))

    if keys := count("AWS::KMS::Key"):
        lines.append(Line("KMS keys", f"{keys} customer-managed keys", keys * p["kms_key_month"]))
    endpoints = [
        props
        for _, _, props in assembly.resources("AWS::EC2::VPCEndpoint")
        if props.get("VpcEndpointType") == "Interface"
    ]
    if endpoints:
        azs = sum(len(e.get("SubnetIds", [])) for e in endpoints)
        lines.append(
            Line(
                "VPC interface endpoints",
                f"{len(endpoints)} endpoints x their subnets = {azs} endpoint-AZs, always on",
                azs * hours * p["interface_endpoint_az_hour"],
            )
        )
    if namespaces := count("AWS::RedshiftServerless::Namespace"):
        lines.append(
            Line("Secrets Manager", f"{namespaces} Redshift admin secret(s)", namespaces * p["secret_month"])
        )
    if alarms := count("AWS::CloudWatch::Alarm"):
        lines.append(Line("CloudWatch alarms", f"{alarms} standard alarms", alarms * p["alarm_month"]))
    if dashboards := count("AWS::CloudWatch::Dashboard"):
        lines.append(
            Line("CloudWatch dashboards", f"{dashboards} dashboard(s)", dashboards * p["dashboard_month"])
        )
    if count("AWS::Macie::Session") or count("Custom::MacieClassificationJob"):
        buckets = count("AWS::S3::Bucket")
        lines.append(
            Line("Macie", f"monitoring of the lake's {buckets} buckets", buckets * p["macie_bucket_month"])
        )
    glue_jobs = [
        (props["Name"], f"<{logical}>", props) for _, logical, props in assembly.resources("AWS::Glue::Job")
    ]
    definitions = {
        logical: text(props.get("DefinitionString", ""))
        for _, logical, props in assembly.resources("AWS::StepFunctions::StateMachine")
    }
    functions = {
        (stack, logical): props for stack, logical, props in assembly.resources("AWS::Lambda::Function")
    }
    usage = {k: v["price"] for k, v in prices["usage"].items()}
    workgroups = [props for _, _, props in assembly.resources("AWS::RedshiftServerless::Workgroup")]
    for stack, _, props in assembly.resources("AWS::Scheduler::Schedule"):
        runs = runs_per_month(props["ScheduleExpression"], hours)
        name = props["Name"]
        targets = referenced(props.get("Target", {}).get("Arn"))
        if ":aws-sdk:redshiftdata:" in json.dumps(props["Target"]["Arn"]):
            # the Data API wakes the warehouse: its base capacity, for at least the billed minimum
            (workgroup,) = workgroups
            rpu, seconds = workgroup.get("BaseCapacity", 128), p["redshift_serverless_minimum_seconds"]
            lines.append(
                Line(
                    f"scheduled warehouse refresh {name}",
                    f"{runs:.0f} runs: Redshift Serverless {rpu} RPU x {seconds} s each (billing minimum)",
                    runs * rpu * seconds / 3600 * usage["redshift_serverless_rpu_hour"],
                )
            )
            continue
        function = next((functions[(stack, t)] for t in targets if (stack, t) in functions), None)
        if function is not None:
            # billed for what it runs, at most its timeout; a check takes about a second
            gb, seconds = function.get("MemorySize", 128) / 1024, function.get("Timeout", 3)
            lines.append(
                Line(
                    f"scheduled function {name}",
                    f"{runs:.0f} runs: Lambda, at most {seconds} s at {gb:.2f} GB each (its timeout)",
                    runs * (usage["lambda_request"] + seconds * gb * usage["lambda_gb_second_arm"]),
                )
            )
            continue
        started = " ".join(definitions.get(t, "") for t in targets)
        job = next((j for n, ref, j in glue_jobs if n in started or ref in started), None)
        if job is not None:
            dpus = job.get("NumberOfWorkers", 2) * WORKER_DPUS[job.get("WorkerType", "G.1X")]
            flex = job.get("ExecutionClass") == "FLEX"
            job_price = p["glue_flex_dpu_hour"] if flex else p["glue_dpu_hour"]
            job_cost = runs * dpus * p["glue_job_minimum_minutes"] / 60 * job_price
            dpu_hours = 0.0  # the crawler's and data quality's, at the standard price
            detail = f"{runs:.0f} runs: job {dpus} DPU{' (Flex)' if flex else ''} x 1 min"
            if SKIP_WHEN_IDLE in started:
                detail += " (billing minimum); crawler and data quality skipped as nothing is new"
                transitions = PIPELINE_TRANSITIONS_SKIPPING
            else:
                evaluation_dpus = EVALUATION_WORKERS * WORKER_DPUS["G.1X"]
                dpu_hours = runs * (
                    p["glue_crawler_minimum_minutes"] / 60
                    + evaluation_dpus * p["glue_job_minimum_minutes"] / 60
                )
                detail += f", crawler 10 min, data quality {evaluation_dpus} DPU x 1 min (billing minimums)"
                transitions = PIPELINE_TRANSITIONS
            lines.append(
                Line(
                    f"Glue pipeline {name}",
                    f"{detail} + Step Functions",
                    job_cost
                    + dpu_hours * p["glue_dpu_hour"]
                    + runs * transitions * p["step_functions_transition"],
                )
            )
        else:
            lines.append(
                Line(
                    f"scheduled report {name}",
                    f"{runs:.0f} runs: Athena 10 MB minimum + Step Functions",
                    runs
                    * (
                        p["athena_minimum_query_tb"] * athena_tb
                        + REPORT_TRANSITIONS * p["step_functions_transition"]
                    ),
                )
            )
    return sorted(lines, key=lambda line: -line.monthly)


def per_unit(assembly: Assembly, prices: dict[str, Any], measured: dict[str, Any]) -> list[Line]:
    u = {k: v["price"] for k, v in prices["usage"].items()}
    record_bytes = float(measured.get("transform_record_bytes_mean", 700))
    records_per_s = float(measured.get("transform_records_per_s", 25000))
    query = measured.get("query_bytes", {})
    gzip_ratio = query.get("raw_gzip_mib", 11) / query.get("raw_json_mib", 100)
    curated_ratio = query.get("curated_mib", 9) / query.get("raw_json_mib", 100)
    memory_gb = max(
        (props.get("MemorySize", 128) / 1024 for _, _, props in assembly.resources("AWS::Lambda::Function")),
        default=0.25,
    )
    records = 1e9 / record_bytes
    # Firehose bills each record rounded up to the next 5 KB: 3 KB as 5, 12 KB as 15.
    billed_gb = records * math.ceil(record_bytes / FIREHOSE_INCREMENT) * FIREHOSE_INCREMENT / 1e9
    stored_gb = gzip_ratio + curated_ratio
    lines = [
        Line(
            "per GB ingested",
            f"Firehose ({billed_gb:.1f} GB billed: {record_bytes:.0f}-byte records round up to 5 KB steps)",
            billed_gb * u["firehose_ingest_gb"],
        ),
        Line("per GB ingested", "Firehose dynamic partitioning", u["firehose_dynamic_partitioning_gb"]),
        Line(
            "per GB ingested",
            f"Lambda transform ({records / records_per_s:.0f} s at {memory_gb:.2f} GB, measured speed)",
            records / records_per_s * memory_gb * u["lambda_gb_second_arm"],
        ),
        Line(
            "per GB ingested",
            f"S3 storage, first month ({stored_gb:.2f} GB: raw gzip + curated Parquet, measured ratios)",
            stored_gb * u["s3_standard_gb_month"],
        ),
        Line(
            "per GB ingested",
            "Macie inspects the new raw and curated objects once",
            stored_gb * u["macie_gb_inspected"],
        ),
        Line("per TB scanned", "Athena (analysts, report, QuickSight direct query)", u["athena_tb_scanned"]),
    ]
    if any(True for _ in assembly.resources("AWS::RedshiftServerless::Workgroup")):
        (workgroup,) = [props for _, _, props in assembly.resources("AWS::RedshiftServerless::Workgroup")]
        rpu = workgroup.get("BaseCapacity", 128)
        lines.append(
            Line(
                "per hour of Redshift queries",
                f"{rpu} RPU base capacity",
                rpu * u["redshift_serverless_rpu_hour"],
            )
        )
    return lines


@dataclass(frozen=True)
class Budget:
    name: str
    limit: float
    unit: str
    #: The smallest percentage of the limit that actual spend passes to alert.
    first_alert_percent: float


def budgets(assembly: Assembly) -> list[Budget]:
    """The cost budgets the templates declare."""
    found = []
    for _, _, props in assembly.resources("AWS::Budgets::Budget"):
        data = props["Budget"]
        actual = [
            n["Notification"]["Threshold"]
            for n in props.get("NotificationsWithSubscribers", [])
            if n["Notification"]["NotificationType"] == "ACTUAL"
            and n["Notification"].get("ThresholdType") == "PERCENTAGE"
        ]
        found.append(
            Budget(
                data["BudgetName"],
                float(data["BudgetLimit"]["Amount"]),
                data["BudgetLimit"]["Unit"],
                min(actual, default=100),
            )
        )
    return found


def budget_lines(assembly: Assembly, idle_total: float) -> list[str]:
    """Each budget beside the idle cost, and a warning when the idle cost alone would alert."""
    found = budgets(assembly)
    if not found:
        return ["Budget: none (monthly_budget_usd=None in config/stages.py)"]
    out = []
    for b in found:
        share = 100 * idle_total / b.limit
        out.append(
            f"Budget {b.name}: {b.limit:.0f} {b.unit} a month for the whole account; "
            f"the idle cost is {share:.0f} % of it"
        )
        if share >= b.first_alert_percent:
            out.append(
                f"  warning: the idle cost alone passes its first alert ({b.first_alert_percent:.0f} %) "
                "every month; raise monthly_budget_usd in config/stages.py"
            )
    return out


def unclassified(assembly: Assembly) -> set[str]:
    types = {r["Type"] for t in assembly.templates.values() for r in t.get("Resources", {}).values()}
    return types - set(NO_IDLE_CHARGE) - PRICED


def report(assembly: Assembly, prices: dict[str, Any], measured: dict[str, Any]) -> str:
    lines = idle(assembly, prices)
    total = sum(line.monthly for line in lines)
    width = max(len(line.component) for line in lines)
    out = [
        f"Idle monthly cost of {', '.join(sorted(assembly.templates))}",
        f"(list prices {prices['region']}, {prices['currency']}, as of {prices['as_of']}; config/prices.json)",
        "",
    ]
    out += [f"  {line.component:<{width}}  {line.monthly:>9.2f}  {line.detail}" for line in lines]
    out += [f"  {'total':<{width}}  {total:>9.2f}", ""]
    top = [line for line in lines if line.monthly >= 0.1 * total]
    out.append(
        "Dominated by: " + "; ".join(f"{line.component} ({100 * line.monthly / total:.0f} %)" for line in top)
    )
    out += ["", *budget_lines(assembly, total)]
    out += ["", "Per unit of traffic:"]
    out += [
        f"  {line.component:<28}  {line.monthly:>9.4f}  {line.detail}"
        for line in per_unit(assembly, prices, measured)
    ]
    if missing := unclassified(assembly):
        out += ["", f"Not priced (classify them in datalake/cost.py): {', '.join(sorted(missing))}"]
    return "\n".join(out)


def main(argv: Iterable[str]) -> int:
    args = list(argv)
    prices_path = Path(args[args.index("--prices") + 1]) if "--prices" in args else PRICES
    positional = [
        a for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or args[i - 1] != "--prices")
    ]
    outdir = Path(positional[0] if positional else "cdk.out")
    if not (outdir / "manifest.json").exists():
        print(f"error: no cloud assembly in {outdir}: run `make synth` first", file=sys.stderr)
        return 2
    prices = json.loads(prices_path.read_text())
    measured = json.loads(BENCH.read_text()) if BENCH.exists() else {}
    print(report(Assembly.from_dir(outdir), prices, measured))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
