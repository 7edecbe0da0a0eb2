"""The processing core end to end on this machine, and the shipped Athena and Redshift SQL on its
output.

The transform, the Glue job (local Spark), the DQDL rules' SQL, the Athena named queries and the
warehouse's view and refresh (sqlglot to DuckDB) all run as shipped. One known input checks every query's exact rows; a
generated input with every kind of defect checks the CLI's conservation and partitioning.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
import warehouse_sql
from lake_app import SECOND_DATASET

from datalake import sql
from datalake.dataset import DATASETS_DIR, load_dataset
from datalake.local_run import (
    DEMO_START,
    QueryResult,
    Summary,
    duckdb_over,
    main,
    report,
    run_pipeline,
    run_queries,
)
from datalake.sample import payloads

pytestmark = pytest.mark.spark
ORDERS = load_dataset(DATASETS_DIR / "orders.json")
ARRIVAL = datetime(2024, 5, 3, 12, 0, tzinfo=UTC)


def _order(*fields: str) -> bytes:
    """order_id, customer, event time, status, currency, amount, country."""
    order_id, customer, ts, status, currency, amount, country = fields
    return json.dumps(
        {
            "order_id": order_id,
            "customer_id": customer,
            "customer_email": f"{customer}@example.com",
            "customer_phone": "010-1234-5678",
            "order_ts": ts,
            "status": status,
            "currency": currency,
            "amount": amount,
            "country": country,
            "channel": "web",
            "items": [{"sku": "sku-1", "qty": 1, "unit_price": amount}],
        }
    ).encode()


KNOWN = [
    _order("o1", "c1", "2024-05-01T10:00:00Z", "PAID", "EUR", "10.00", "DE"),
    # 23:30 at +02:00 is 21:30 UTC: still 1 May in UTC
    _order("o2", "c2", "2024-05-01T23:30:00+02:00", "SHIPPED", "EUR", "5.50", "DE"),
    _order("o3", "c1", "2024-05-02T08:00:00Z", "PLACED", "KRW", "1000", "KR"),
    _order("o4", "c4", "2024-05-02T05:00:00Z", "PAID", "KRW", "2500", "KR"),
    _order("o4", "c4", "2024-05-02T05:00:00Z", "PAID", "KRW", "2500", "KR"),  # Firehose re-sent it
    _order("o5", "c3", "2024-05-03T01:00:00Z", "CANCELLED", "KRW", "3000", "KR"),
    _order("o6", "c2", "2024-05-03T02:00:00Z", "RETURNED", "USD", "20.00", "US"),
    b"{not json",
    json.dumps({"customer_id": "c9", "order_ts": "2024-05-01T00:00:00Z", "amount": "1.00"}).encode(),
]


@pytest.fixture(scope="module")
def known(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Summary, dict[str, QueryResult]]:
    return run_pipeline(KNOWN, ORDERS, tmp_path_factory.mktemp("known"), spark=spark, arrival=ARRIVAL)


def test_every_athena_query_parses_as_trino_and_names_its_purpose() -> None:
    queries = sql.load("athena")
    assert {q.name for q in queries} == {
        "daily_revenue_by_country",
        "top_customers_by_spend",
        "order_status_funnel",
        "late_arriving_data",
    }
    for query in queries:
        parsed = sqlglot.parse_one(query.text, read="trino")
        assert parsed.find(sqlglot.exp.Select) is not None
        assert len(query.description) > 40
        # analysts' queries never read PII columns (Lake Formation would refuse them)
        columns = {c.name for c in parsed.find_all(sqlglot.exp.Column)}
        assert not columns & set(ORDERS.pii_columns), query.name


def test_known_input_counts(known: tuple[Summary, dict[str, QueryResult]]) -> None:
    summary, _ = known
    assert (summary.records_in, summary.transform_ok, summary.transform_rejected) == (9, 7, 2)
    assert (summary.curated_rows, summary.quarantined_rows, summary.duplicates_dropped) == (6, 0, 1)
    assert all(summary.data_quality.values()), summary.data_quality


def test_daily_revenue_by_country(known: tuple[Summary, dict[str, QueryResult]]) -> None:
    result = known[1]["daily_revenue_by_country"]
    assert result.columns == ["order_date", "country", "currency", "orders", "revenue"]
    assert result.rows == [
        (date(2024, 5, 1), "DE", "EUR", 2, Decimal("15.50")),
        (date(2024, 5, 2), "KR", "KRW", 1, Decimal("2500.00")),
    ]


def test_top_customers_by_spend(known: tuple[Summary, dict[str, QueryResult]]) -> None:
    result = known[1]["top_customers_by_spend"]
    assert result.columns == ["currency", "spend_rank", "customer_id", "orders", "spend", "last_order_ts"]
    # 2,500 won rank first among won only: euros and won are never ranked against each other
    assert [r[:5] for r in result.rows] == [
        ("EUR", 1, "c1", 1, Decimal("10.00")),
        ("EUR", 2, "c2", 1, Decimal("5.50")),
        ("KRW", 1, "c4", 1, Decimal("2500.00")),
    ]


def test_top_customers_are_twenty_in_each_currency() -> None:
    # GIVEN 22 customers who paid in euros (customer eNN spent NN euros), two in won, and a
    # cancelled order that would have been the largest euro spend
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE orders (customer_id VARCHAR, currency VARCHAR, amount DECIMAL(12, 2), "
        "status VARCHAR, order_ts TIMESTAMP)"
    )
    rows = [(f"e{n:02d}", "EUR", n, "PAID") for n in range(1, 23)]
    rows += [("k1", "KRW", 90000, "SHIPPED"), ("k2", "KRW", 1000, "PAID"), ("e99", "EUR", 999, "CANCELLED")]
    con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, TIMESTAMP '2024-05-01 10:00:00')", rows)
    (query,) = [q for q in sql.load("athena") if q.name == "top_customers_by_spend"]
    # WHEN the shipped query runs over them
    result = run_queries(con, ORDERS, [query])["top_customers_by_spend"]
    # THEN each currency has its own top 20, ranked by spend in that currency
    assert [(r[0], r[1], r[2]) for r in result.rows] == [
        *[("EUR", rank, f"e{23 - rank:02d}") for rank in range(1, 21)],
        ("KRW", 1, "k1"),
        ("KRW", 2, "k2"),
    ]


def test_order_status_funnel(known: tuple[Summary, dict[str, QueryResult]]) -> None:
    result = known[1]["order_status_funnel"]
    assert [(r[1], r[2], float(r[3])) for r in result.rows] == [
        ("placed", 6, 100.0),
        ("paid", 4, 66.7),
        ("shipped", 2, 33.3),
        ("returned", 1, 16.7),
        ("cancelled", 1, 16.7),
    ]


def test_late_arriving_data(known: tuple[Summary, dict[str, QueryResult]]) -> None:
    result = known[1]["late_arriving_data"]
    assert result.rows == [
        (date(2024, 5, 1), date(2024, 5, 3), 2, 2),
        (date(2024, 5, 2), date(2024, 5, 3), 1, 2),
    ]


def test_the_warehouse_sql_runs_over_what_the_job_curated(
    known: tuple[Summary, dict[str, QueryResult]],
) -> None:
    # GIVEN the job's curated Parquet, read as the warehouse's Spectrum schema reads it
    summary, results = known
    con = duckdb_over(Path(summary.paths["curated"]).parent, ORDERS)
    con.execute("CREATE SCHEMA curated; CREATE VIEW curated.orders AS SELECT * FROM main.orders")
    con.execute("CREATE SCHEMA public")
    # WHEN the shipped Redshift SQL runs over it (through sqlglot): the view's query, the contacts'
    # table and their refresh procedure's statements
    view = sqlglot.parse_one(
        warehouse_sql.statement("03_daily_revenue", "CREATE MATERIALIZED VIEW"), read="redshift"
    )
    daily_revenue = con.execute(view.expression.sql(dialect="duckdb")).fetchall()
    con.execute(warehouse_sql.in_duckdb(warehouse_sql.statement("04_customer_contacts", "CREATE TABLE")))
    procedure = warehouse_sql.statement(
        "04_customer_contacts", "PROCEDURE public.sp_refresh_customer_contacts()"
    )
    for statement in sql.procedure_body(procedure):
        con.execute(warehouse_sql.in_duckdb(statement))
    # THEN the warehouse's daily revenue is the Athena query's, row for row
    assert sorted(daily_revenue) == sorted(results["daily_revenue_by_country"].rows)
    # AND each customer's contact is their latest order's, on the UTC time the job curated
    contacts = con.execute("SELECT * FROM public.customer_contacts ORDER BY customer_id").fetchall()
    assert contacts == [
        ("c1", "c1@example.com", "010-1234-5678", datetime(2024, 5, 2, 8, 0)),
        ("c2", "c2@example.com", "010-1234-5678", datetime(2024, 5, 3, 2, 0)),
        ("c3", "c3@example.com", "010-1234-5678", datetime(2024, 5, 3, 1, 0)),
        ("c4", "c4@example.com", "010-1234-5678", datetime(2024, 5, 2, 5, 0)),
    ]
    # AND the warehouse's analyst sees them masked
    masked = con.execute(
        warehouse_sql.in_duckdb(
            f"SELECT {warehouse_sql.mask('mask_email')}, {warehouse_sql.mask('mask_phone')} "
            "FROM (SELECT customer_email AS email, customer_phone AS phone FROM public.customer_contacts)"
        )
    ).fetchall()
    assert set(masked) == {("***@example.com", "***-****-5678")}


def test_events_past_the_datasets_retention_are_removed_and_the_run_says_so(
    spark: Any, tmp_path: Path
) -> None:
    # GIVEN orders kept 30 days, and events of May 2024 (the job counts from the day it runs)
    kept_30_days = replace(ORDERS, governance=replace(ORDERS.governance, retention_days=30))
    said: list[str] = []
    # WHEN they run through the local pipeline
    summary, _ = run_pipeline(
        KNOWN, kept_30_days, tmp_path, spark=spark, arrival=ARRIVAL, progress=said.append
    )
    # THEN nothing is curated, every raw object of theirs is removed and counted, and the run
    # names the retention instead of leaving an empty table unexplained
    raw_days = sorted(p.name for p in (tmp_path / "raw" / "orders").rglob("day=*"))
    assert (summary.transform_ok, summary.curated_rows, raw_days) == (7, 0, [])
    assert summary.expired_objects == 6  # one object per event hour: six hours of 1, 2 and 3 May
    (line,) = [s for s in said if "retention" in s]
    assert line.startswith("job: 6 raw object(s) removed, not curated: their event days are before ")
    assert line.endswith("past the dataset's retention (governance.retention_days=30)")
    assert "  past the retention          6 raw objects" in report(summary, {}).splitlines()


def test_cli_on_generated_events_conserves_every_record(spark: Any, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    sample = payloads(600, seed=11, start=datetime(2024, 5, 1, tzinfo=UTC))
    # one payload per line, as a producer sends them (a payload with a newline would be two lines)
    events.write_bytes(b"\n".join(p.replace(b"\n", b" ") for p in sample) + b"\n")
    workdir = tmp_path / "run"
    assert main(["--events", str(events), "--dataset", "orders", "--workdir", str(workdir)]) == 0

    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["records_in"] == 600
    assert summary["records_in"] == summary["transform_ok"] + summary["transform_rejected"]
    assert summary["transform_rejected"] > 0 and summary["duplicates_dropped"] > 0
    assert (
        summary["transform_ok"]
        == summary["curated_rows"] + summary["quarantined_rows"] + summary["duplicates_dropped"]
    )
    assert set(summary["queries"]) == {q.name for q in sql.load("athena")}
    for key in ("raw", "rejected", "curated"):
        assert Path(summary["paths"][key]).is_dir(), key
    # the job writes quarantine partitions only for rows it rejects itself
    assert Path(summary["paths"]["quarantine"]).is_dir() == (summary["quarantined_rows"] > 0)

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    curated = f"read_parquet('{summary['paths']['curated']}/**/*.parquet', hive_partitioning = true)"
    total, distinct, misplaced = con.execute(
        f"SELECT count(*), count(DISTINCT order_id), "
        f"count(*) FILTER (WHERE make_date(year::INT, month::INT, day::INT) <> CAST(order_ts AS DATE)) FROM {curated}"
    ).fetchone()
    assert total == distinct == summary["curated_rows"]
    assert misplaced == 0
    # every order the transform accepted is curated exactly once
    raw_ids = {
        row[0]
        for row in con.execute(
            f"SELECT DISTINCT order_id FROM read_json_auto('{summary['paths']['raw']}/**/*.json.gz', format = 'newline_delimited')"
        ).fetchall()
    }
    curated_ids = {row[0] for row in con.execute(f"SELECT order_id FROM {curated}").fetchall()}
    assert curated_ids == raw_ids
    # the funnel's first stage is every curated order
    placed = con.execute(f"SELECT count(*) FROM {curated}").fetchone()[0]
    assert placed == summary["curated_rows"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--events", "/nonexistent/events.jsonl", "--dataset", "orders"], "cannot read --events"),
        (["--events", __file__, "--dataset", "invoices"], "unknown dataset 'invoices'; known: orders"),
        (
            [
                "--demo",
                "10",
                "--dataset",
                Path(SECOND_DATASET).stem,
                "--datasets-dir",
                str(Path(SECOND_DATASET).parent),
            ],
            "--demo generates orders; send web_storefront_page_views_by_session_and_pages's events with --events FILE",
        ),
    ],
)
def test_cli_fails_with_one_clear_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*args, "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_names_an_invalid_dataset_file_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = {**json.loads((DATASETS_DIR / "orders.json").read_text()), "record_key": "nope"}
    (tmp_path / "orders.json").write_text(json.dumps(broken))
    args = ["--events", __file__, "--dataset", "orders", "--workdir", str(tmp_path / "run")]
    assert main([*args, "--datasets-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Invalid dataset file {tmp_path / 'orders.json'}:") and "record_key" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--dataset", "orders", "--workdir", "w"],  # no events
        ["--events", "e", "--demo", "5", "--dataset", "orders", "--workdir", "w"],  # both
        ["--events", "e", "--workdir", "w"],
        ["--events", "e", "--dataset", "orders"],
    ],
)
def test_cli_takes_events_or_a_demo_a_dataset_and_a_workdir(args: list[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(args)
    assert usage.value.code == 2


def test_sample_orders_are_priced_in_each_currencys_own_units() -> None:
    orders = [json.loads(p) for p in payloads(600, seed=2, defects=False)]
    assert {o["currency"] for o in orders} == {"EUR", "USD", "GBP", "JPY", "KRW"}
    for order in orders:
        # the total is its lines' sum; won and yen are whole (won in tens), the others in cents
        lines = [Decimal(i["unit_price"]) * i["qty"] for i in order["items"]]
        assert Decimal(order["amount"]) == sum(lines)
        step = {"KRW": Decimal(10), "JPY": Decimal(1)}.get(order["currency"], Decimal("0.01"))
        assert all(
            Decimal(v) % step == 0 for v in [order["amount"], *(i["unit_price"] for i in order["items"])]
        )
        assert ("." in order["amount"]) == (order["currency"] not in ("KRW", "JPY"))


def test_the_demo_writes_the_events_it_generated_and_runs_them(spark: Any, tmp_path: Path) -> None:
    # WHEN the demo runs (make demo): generated orders, malformed, duplicated and late ones too
    assert main(["--demo", "60", "--dataset", "orders", "--workdir", str(tmp_path)]) == 0
    # THEN the events are kept, one per line, the same on every run, and each is accounted for
    sent = payloads(60, seed=2026, start=DEMO_START)
    assert (tmp_path / "events.jsonl").read_bytes() == b"".join(p.replace(b"\n", b" ") + b"\n" for p in sent)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["records_in"] == 60 == summary["transform_ok"] + summary["transform_rejected"]
    assert summary["transform_rejected"] > 0 and summary["curated_rows"] > 0


def test_cli_runs_any_dataset_file_with_the_queries_over_its_own_table(tmp_path: Path) -> None:
    # GIVEN events of the second test dataset (no shipped query reads its table): a valid view, a
    # string-typed one the transform normalizes, one sent twice, and one with a bad value per type
    second = load_dataset(SECOND_DATASET)
    view = {
        "viewed_at": "2024-05-01T10:00:00Z",
        "session_id": 9007199254740993,
        "duration_ms": 1500,
        "bounced": False,
        "visit_date": "2024-05-01",
        "engagement": 0.25,
        "page": {"path": "/shop", "section": "shop"},
    }
    texts = {"session_id": "42", "bounced": "TRUE", "visit_date": " 2024-04-30 ", "engagement": "1e-1"}
    bad = {
        "session_id": -1,
        "duration_ms": 86400001,
        "bounced": "yes",
        "visit_date": "2024-5-1",
        "engagement": "NaN",
        "page": {"section": "home"},
    }
    events = [{**view, "view_id": "v1"}, *[{**view, **texts, "view_id": "v2"}] * 2]
    events += [{**view, column: value, "view_id": f"bad-{column}"} for column, value in bad.items()]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    # WHEN the CLI runs the transform, the job, the quality rules and the queries over them
    args = ["--events", str(path), "--dataset", second.name, "--workdir", str(tmp_path / "run")]
    assert main([*args, "--datasets-dir", str(Path(SECOND_DATASET).parent)]) == 0
    # THEN each bad value is rejected, the rest curated once and typed, and every rule holds
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["transform_ok"], summary["transform_rejected"]) == (3, len(bad))
    assert (summary["curated_rows"], summary["quarantined_rows"], summary["duplicates_dropped"]) == (2, 0, 1)
    assert summary["data_quality"] and all(summary["data_quality"].values())
    assert summary["queries"] == {}
    curated = f"read_parquet('{summary['paths']['curated']}/**/*.parquet', hive_partitioning = true)"
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT view_id, session_id, bounced, visit_date, engagement, page.path FROM {curated} ORDER BY view_id"
    ).fetchall()
    assert rows == [
        ("v1", 9007199254740993, False, date(2024, 5, 1), 0.25, "/shop"),
        ("v2", 42, True, date(2024, 4, 30), 0.1, "/shop"),
    ]
