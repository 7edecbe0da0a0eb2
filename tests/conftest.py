"""Test-wide set-up: no AWS, no network, Node 24 from the venv, one synth per app variant."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Fake credentials before anything imports boto3: a test that reaches AWS fails to authenticate.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_REGION": "eu-west-1",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_PROFILE", None)
# jsii starts `node` from PATH: use the venv's supported Node even when pytest runs outside make.
_venv_bin = str(Path(sys.executable).parent)
if not os.environ.get("PATH", "").startswith(_venv_bin):
    os.environ["PATH"] = _venv_bin + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DataLakeTests")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no network: Spark binds to loopback only
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "tests")

ROOT = Path(__file__).resolve().parent.parent
EVENTS = Path(__file__).resolve().parent / "events"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def spark():  # type: ignore[no-untyped-def]
    """One local SparkSession for the whole run (Glue 5.1 parity: Spark 3.5.6, UTC)."""
    from datalake.local_run import spark_session

    session = spark_session(
        "datalake-tests",
        **{"spark.sql.warehouse.dir": str(Path(os.environ.get("TMPDIR", "/tmp")) / "spark-warehouse")},
    )
    yield session
    session.stop()
