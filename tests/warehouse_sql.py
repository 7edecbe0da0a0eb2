"""The shipped Redshift SQL as tests run it in DuckDB (through sqlglot): one statement of a file,
a refresh procedure's body, a masking policy's expression."""

from __future__ import annotations

import sqlglot

from datalake import sql


def statement(file: str, containing: str) -> str:
    """The one statement of ``sql/redshift/<file>.sql`` that contains ``containing``."""
    (script,) = [f for f in sql.load("redshift") if f.name == file]
    (found,) = [s for s in sql.statements(script.text) if containing in s]
    return found


def mask(policy: str) -> str:
    """The masking expression ``sql/redshift/04_customer_contacts.sql`` gives ``policy`` (its ALTER)."""
    altered = statement("04_customer_contacts", f"ALTER MASKING POLICY {policy} USING")
    return sql.code(altered).split("USING (", 1)[1].rsplit(");", 1)[0]


def in_duckdb(text: str) -> str:
    """A Redshift statement as DuckDB runs it."""
    return sqlglot.transpile(text, read="redshift", write="duckdb")[0]
