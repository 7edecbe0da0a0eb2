"""The idle cost model prices what the templates deploy, from one dated price file."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from lake_app import SWITCHED, WITHOUT_AUDIT, synthesize

from config import get_stage
from datalake import cost as cost_model
from datalake.cost import (
    PRICES,
    REPORT_TRANSITIONS,
    SKIP_WHEN_IDLE,
    budget_lines,
    budgets,
    idle,
    main,
    per_unit,
    report,
    runs_per_month,
    unclassified,
)
from datalake.diagram import Assembly

PRICE_FILE = json.loads(PRICES.read_text())


def _assembly(stage: str = "sandbox", **features: object) -> Assembly:
    return Assembly.from_dir(synthesize(stage, **features).outdir)


def test_price_file_is_dated_and_sourced() -> None:
    assert date.fromisoformat(PRICE_FILE["as_of"])
    for section in ("idle", "usage"):
        for name, entry in PRICE_FILE[section].items():
            assert entry["price"] > 0 and entry["source"].startswith("https://"), name


def test_every_price_in_the_file_is_one_the_model_reads() -> None:
    # a price no figure uses is one nobody checks when the file is copied for another region
    model = Path(cost_model.__file__).read_text()
    unread = [
        name for section in ("idle", "usage") for name in PRICE_FILE[section] if f'"{name}"' not in model
    ]
    assert unread == []


@pytest.mark.parametrize(
    "variant", [("sandbox", {}), ("prod", {}), ("sandbox", SWITCHED), ("sandbox", WITHOUT_AUDIT)]
)
def test_every_resource_type_is_priced_or_classified(variant: tuple[str, dict[str, object]]) -> None:
    stage, features = variant
    assert unclassified(_assembly(stage, **features)) == set()


def test_the_report_transitions_priced_are_the_states_a_successful_run_enters() -> None:
    synth = synthesize("sandbox")
    stack = synth.lake.consumption
    (props,) = [
        r["Properties"]
        for r in synth.template_json(stack)["Resources"].values()
        if r["Type"] == "AWS::StepFunctions::StateMachine"
    ]
    definition = json.loads(synth.resolved(stack, props["DefinitionString"]))
    # a run that succeeds goes from state to state by Next alone (no choice) to the end
    entered, state = [], definition["StartAt"]
    while state is not None:
        entered.append(state)
        state = definition["States"][state].get("Next")
    assert definition["States"][entered[-1]]["Type"] == "Succeed"
    assert len(entered) == REPORT_TRANSITIONS


def test_schedules_are_counted_per_month() -> None:
    assert runs_per_month("rate(1 hour)", 730) == 730
    assert runs_per_month("rate(15 minutes)", 730) == 2920
    assert runs_per_month("cron(0 6 * * ? *)", 730) == pytest.approx(30.4, abs=0.1)
    assert runs_per_month("rate(1 day)", 730) == pytest.approx(730 / 24)
    assert runs_per_month("rate(2 days)", 730) == pytest.approx(730 / 48)
    assert runs_per_month("rate(1 minute)", 730) == pytest.approx(730 * 60)
    assert runs_per_month("cron(0/15 * * * ? *)", 730) == pytest.approx(4 * 730)
    assert runs_per_month("cron(*/10 8 * * ? *)", 730) == pytest.approx(6 * 730 / 24)
    assert runs_per_month("cron(0 6,18 * * ? *)", 730) == pytest.approx(2 * 730 / 24)
    with pytest.raises(ValueError, match="cannot read"):
        runs_per_month("every hour", 730)


def test_sandbox_idle_cost_counts_keys_alarms_and_the_hourly_pipeline() -> None:
    lines = {line.component: line for line in idle(_assembly(), PRICE_FILE)}
    assert lines["KMS keys"].monthly == 4 * PRICE_FILE["idle"]["kms_key_month"]["price"]
    assert "VPC interface endpoints" not in lines
    (pipeline,) = [line for name, line in lines.items() if name.startswith("Glue pipeline")]
    assert pipeline.detail.startswith("730 runs")
    # The hourly pipeline's billing minimums dominate an idle sandbox, even though an idle run
    # starts the job only (2 DPU x 1 minute) and skips the crawler and data quality.
    assert pipeline.monthly == max(line.monthly for line in lines.values())
    idle_run = PRICE_FILE["idle"]
    assert pipeline.monthly == pytest.approx(
        730
        * (2 / 60 * idle_run["glue_dpu_hour"]["price"] + 6 * idle_run["step_functions_transition"]["price"])
    )


def test_a_pipeline_that_always_crawls_and_checks_pays_their_minimums_every_run() -> None:
    assembly = _assembly()
    for template in assembly.templates.values():
        for resource in template.get("Resources", {}).values():
            if resource["Type"] == "AWS::StepFunctions::StateMachine":
                text = json.dumps(resource["Properties"]["DefinitionString"])
                resource["Properties"]["DefinitionString"] = json.loads(
                    text.replace(SKIP_WHEN_IDLE, "rows_read")
                )
    (pipeline,) = [line for line in idle(assembly, PRICE_FILE) if line.component.startswith("Glue pipeline")]
    p = {k: v["price"] for k, v in PRICE_FILE["idle"].items()}
    dpu_minutes = 2 * 1 + 10 + 5 * 1  # job 2 DPU, crawler's 10 minutes, evaluation 5 DPU
    assert pipeline.monthly == pytest.approx(
        730 * (dpu_minutes / 60 * p["glue_dpu_hour"] + 15 * p["step_functions_transition"])
    )
    assert "crawler 10 min" in pipeline.detail


def test_a_job_on_larger_workers_pays_for_their_dpus() -> None:
    # GIVEN the dataset file's job on 3 G.2X workers (2 DPUs each)
    assembly = _assembly()
    for template in assembly.templates.values():
        for resource in template.get("Resources", {}).values():
            if resource["Type"] == "AWS::Glue::Job":
                resource["Properties"].update(NumberOfWorkers=3, WorkerType="G.2X")
    # THEN each idle run's billing minimum counts 6 DPUs
    (pipeline,) = [line for line in idle(assembly, PRICE_FILE) if line.component.startswith("Glue pipeline")]
    p = {k: v["price"] for k, v in PRICE_FILE["idle"].items()}
    assert pipeline.monthly == pytest.approx(
        730 * (6 / 60 * p["glue_dpu_hour"] + 6 * p["step_functions_transition"])
    )
    assert "job 6 DPU x 1 min" in pipeline.detail


def test_a_job_on_flex_capacity_pays_the_flex_price_for_its_dpus() -> None:
    # GIVEN the dataset file's job on Glue's flexible execution class
    assembly = _assembly()
    for template in assembly.templates.values():
        for resource in template.get("Resources", {}).values():
            if resource["Type"] == "AWS::Glue::Job":
                resource["Properties"].update(ExecutionClass="FLEX")
    # THEN each idle run's billing minimum is priced per Flex DPU-hour, and the line says so
    (pipeline,) = [line for line in idle(assembly, PRICE_FILE) if line.component.startswith("Glue pipeline")]
    p = {k: v["price"] for k, v in PRICE_FILE["idle"].items()}
    assert p["glue_flex_dpu_hour"] < p["glue_dpu_hour"]
    assert pipeline.monthly == pytest.approx(
        730 * (2 / 60 * p["glue_flex_dpu_hour"] + 6 * p["step_functions_transition"])
    )
    assert "job 2 DPU (Flex) x 1 min" in pipeline.detail


def test_prod_pays_for_interface_endpoints_in_three_azs() -> None:
    assembly = _assembly("prod")
    lines = {line.component: line for line in idle(assembly, PRICE_FILE)}
    endpoints = lines["VPC interface endpoints"]
    assert endpoints.monthly == pytest.approx(
        5 * 3 * 730 * PRICE_FILE["idle"]["interface_endpoint_az_hour"]["price"]
    )
    assert "Secrets Manager" in lines
    units = {line.detail: line.monthly for line in per_unit(assembly, PRICE_FILE, {})}
    assert units["8 RPU base capacity"] == 8 * PRICE_FILE["usage"]["redshift_serverless_rpu_hour"]["price"]
    assert "Dominated by: VPC interface endpoints" in report(assembly, PRICE_FILE, {})


def test_idle_lines_count_what_the_templates_hold_and_leave_out_what_they_do_not() -> None:
    p = {k: v["price"] for k, v in PRICE_FILE["idle"].items()}
    for features, macie in (({}, True), (WITHOUT_AUDIT, False)):
        assembly = _assembly(**features)

        def count(type_: str, assembly: Assembly = assembly) -> int:
            return sum(1 for _ in assembly.resources(type_))

        lines = {line.component: line.monthly for line in idle(assembly, PRICE_FILE)}
        assert lines["CloudWatch alarms"] == count("AWS::CloudWatch::Alarm") * p["alarm_month"] > 0
        assert (
            lines["CloudWatch dashboards"] == count("AWS::CloudWatch::Dashboard") * p["dashboard_month"] > 0
        )
        assert lines.get("Macie") == (count("AWS::S3::Bucket") * p["macie_bucket_month"] if macie else None)


@pytest.mark.parametrize("stage", ["sandbox", "prod"])
def test_each_stages_budget_leaves_its_idle_cost_below_the_first_alert(stage: str) -> None:
    # an idle cost past the budget's first alert would alert every month, until no one reads it
    assembly = _assembly(stage)
    total = sum(line.monthly for line in idle(assembly, PRICE_FILE))
    (budget,) = budgets(assembly)
    assert budget.limit == get_stage(stage).monthly_budget_usd
    assert budget.first_alert_percent == 80
    assert total < 0.8 * budget.limit
    lines = budget_lines(assembly, total)
    assert lines == [
        f"Budget {budget.name}: {budget.limit:.0f} USD a month for the whole account; "
        f"the idle cost is {100 * total / budget.limit:.0f} % of it"
    ]
    assert lines[0] in report(assembly, PRICE_FILE, {})


def test_a_budget_the_idle_cost_alone_would_alert_on_is_pointed_out() -> None:
    # GIVEN the sandbox's budget cut to 20 USD, and an assembly without one
    assembly = _assembly()
    (budget,) = [props for _, _, props in assembly.resources("AWS::Budgets::Budget")]
    budget["Budget"]["BudgetLimit"]["Amount"] = 20
    # THEN an idle cost of 16 USD (80 %) warns, with the field to raise; 15.99 does not
    assert budget_lines(assembly, 16.0)[1] == (
        "  warning: the idle cost alone passes its first alert (80 %) every month; "
        "raise monthly_budget_usd in config/stages.py"
    )
    assert len(budget_lines(assembly, 15.99)) == 1
    for template in assembly.templates.values():
        resources = template.get("Resources", {})
        for lid in [k for k, r in resources.items() if r["Type"] == "AWS::Budgets::Budget"]:
            del resources[lid]
    assert budget_lines(assembly, 16.0) == ["Budget: none (monthly_budget_usd=None in config/stages.py)"]


def test_the_daily_report_pays_athenas_minimum_query_at_the_price_files_rate() -> None:
    # GIVEN the price file with Athena at twice its price per TB
    doubled = json.loads(json.dumps(PRICE_FILE))
    doubled["usage"]["athena_tb_scanned"]["price"] *= 2
    assembly = _assembly()
    p = {k: v["price"] for k, v in PRICE_FILE["idle"].items()}

    def report_line(prices: dict[str, object]) -> float:
        (line,) = [line for line in idle(assembly, prices) if line.component.startswith("scheduled report")]
        return line.monthly

    # THEN the daily report's line pays its 30-odd queries' 10 MB minimum at each file's rate
    runs = 730 / 24
    transitions = runs * REPORT_TRANSITIONS * p["step_functions_transition"]
    for prices in (PRICE_FILE, doubled):
        athena = runs * p["athena_minimum_query_tb"] * prices["usage"]["athena_tb_scanned"]["price"]
        assert report_line(prices) == pytest.approx(athena + transitions)


def test_a_scheduled_function_pays_its_requests_and_at_most_its_timeout() -> None:
    # GIVEN the hourly trail check (a Lambda function the lake's schedule group invokes)
    lines = {line.component: line for line in idle(_assembly(), PRICE_FILE)}
    check = lines["scheduled function lake-sbx-audit-check"]
    # THEN 730 runs a month, each billed a request and at most its 60 s at 0.25 GB
    u = {k: v["price"] for k, v in PRICE_FILE["usage"].items()}
    assert check.monthly == pytest.approx(730 * (u["lambda_request"] + 60 * 0.25 * u["lambda_gb_second_arm"]))
    assert check.detail == "730 runs: Lambda, at most 60 s at 0.25 GB each (its timeout)"
    # AND it is not taken for a report (whose line pays Athena's minimum query)
    assert [name for name in lines if name.startswith("scheduled report")] == [
        "scheduled report lake-sbx-daily-revenue-by-country-report"
    ]


def test_the_warehouse_refresh_pays_a_billed_minute_of_its_base_capacity_per_run() -> None:
    # GIVEN prod's warehouse (8 RPU base capacity), refreshed once a day
    lines = {line.component: line for line in idle(_assembly("prod"), PRICE_FILE)}
    refresh = lines.pop("scheduled warehouse refresh lake-prd-warehouse-refresh")
    # THEN each of its 30-odd runs pays 8 RPU for Redshift Serverless's 60-second minimum
    runs = 730 / 24
    rpu_hour = PRICE_FILE["usage"]["redshift_serverless_rpu_hour"]["price"]
    assert refresh.monthly == pytest.approx(runs * 8 * 60 / 3600 * rpu_hour)
    assert refresh.detail == "30 runs: Redshift Serverless 8 RPU x 60 s each (billing minimum)"
    # AND it is not taken for a report (whose line pays Athena's minimum query)
    assert [name for name in lines if name.startswith("scheduled report")] == [
        "scheduled report lake-prd-daily-revenue-by-country-report"
    ]


@pytest.mark.parametrize(
    ("record_bytes", "billed_per_gb"),
    [(700, 5120 / 700), (5120, 1.0), (5121, 2.0 * 5120 / 5121), (12_000, 15_360 / 12_000)],
)
def test_firehose_bills_each_record_in_steps_of_5_kb(record_bytes: int, billed_per_gb: float) -> None:
    # 3 KB bills as 5 KB and 12 KB as 15 KB (Firehose's pricing page): a GB of records of that size
    measured = {"transform_record_bytes_mean": record_bytes}
    (firehose, *_) = per_unit(_assembly(), PRICE_FILE, measured)
    assert firehose.monthly == pytest.approx(
        billed_per_gb * PRICE_FILE["usage"]["firehose_ingest_gb"]["price"]
    )
    assert f"{billed_per_gb:.1f} GB billed: {record_bytes}-byte records" in firehose.detail


def test_per_unit_lines_follow_the_measured_figures() -> None:
    # GIVEN measured speed, record size and the raw and curated sizes of one input
    measured = {
        "transform_record_bytes_mean": 500,
        "transform_records_per_s": 20_000,
        "query_bytes": {"raw_json_mib": 200, "raw_gzip_mib": 20, "curated_mib": 10},
    }
    u = {k: v["price"] for k, v in PRICE_FILE["usage"].items()}
    assembly = _assembly()
    memory_gb = max(props["MemorySize"] / 1024 for _, _, props in assembly.resources("AWS::Lambda::Function"))
    # WHEN the cost of a GB ingested is estimated
    lines = {line.detail.split(" (")[0]: line for line in per_unit(assembly, PRICE_FILE, measured)}
    # THEN the transform runs 2 million records at the measured speed (100 s), and a GB stores
    # 0.1 GB of gzip JSON and 0.05 GB of Parquet, which Macie inspects once
    assert "100 s at" in lines["Lambda transform"].detail
    assert lines["Lambda transform"].monthly == pytest.approx(100 * memory_gb * u["lambda_gb_second_arm"])
    assert lines["S3 storage, first month"].monthly == pytest.approx(0.15 * u["s3_standard_gb_month"])
    assert lines["Macie inspects the new raw and curated objects once"].monthly == pytest.approx(
        0.15 * u["macie_gb_inspected"]
    )


def test_the_command_prints_the_report_of_an_assembly_or_says_to_synthesize_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no cloud assembly: the command says what to run, with a non-zero status
    assert main([str(tmp_path)]) == 2
    assert f"no cloud assembly in {tmp_path}: run `make synth` first" in capsys.readouterr().err
    # GIVEN a synthesized one and a price file of its own: the report, from those prices
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({**PRICE_FILE, "as_of": "2001-02-03"}))
    outdir = str(synthesize("sandbox").outdir)
    assert main(["--prices", str(prices), outdir]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Idle monthly cost of ")
    assert "as of 2001-02-03" in printed and "Per unit of traffic:" in printed
