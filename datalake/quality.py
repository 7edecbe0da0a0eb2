"""Data-quality rules generated from the dataset file: Glue DQDL for AWS, SQL for local engines.

Each rule carries its DQDL text (what the Glue Data Quality ruleset holds) and an equivalent SQL
check over the curated table, so ``make demo`` evaluates the very same rules with a local engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from datalake.dataset import Dataset, DatasetConfigError, pattern_for_re2

#: G.1X workers of a ruleset evaluation: the API's default, passed by the pipeline all the same,
#: so `make cost` prices what runs even if the default changes.
EVALUATION_WORKERS = 5


@dataclass(frozen=True)
class Rule:
    dqdl: str
    #: SQL returning one row with one boolean column ``passed`` over the table named ``{table}``.
    sql: str


def _q(value: str) -> str:
    return json.dumps(value)


def _ident(name: str) -> str:
    """A column as the SQL names it: quoted, so a column called ``group`` or ``end`` is one."""
    return f'"{name}"'


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _allow_null(rule: str, column: str, required: bool) -> str:
    """DQDL fails NULL rows for ColumnValues and ColumnLength; an optional column may be NULL.

    The rule holds row by row only when composite rules are evaluated per row: the pipeline starts
    each evaluation with ``CompositeRuleEvaluationMethod: ROW`` (see ``cdk_constructs.processing``)."""
    return rule if required else f"({rule}) OR (ColumnValues {_q(column)} = NULL)"


def rules(dataset: Dataset) -> list[Rule]:
    key = dataset.record_key
    key_column = _ident(key)
    out = [
        Rule(f"IsComplete {_q(key)}", f"SELECT COUNT(*) = COUNT({key_column}) AS passed FROM {{table}}"),
        Rule(
            f"IsUnique {_q(key)}",
            f"SELECT COUNT({key_column}) = COUNT(DISTINCT {key_column}) AS passed FROM {{table}}",
        ),
    ]
    for col in dataset.columns:
        name = col.name
        column = _ident(name)
        if col.required and name != key:
            out.append(
                Rule(f"IsComplete {_q(name)}", f"SELECT COUNT(*) = COUNT({column}) AS passed FROM {{table}}")
            )
        if col.enum:
            values = ", ".join(_q(v) for v in col.enum)
            sql_values = ", ".join(_sql_str(v) for v in col.enum)
            out.append(
                Rule(
                    f"ColumnValues {_q(name)} in [{values}, NULL]",
                    f"SELECT COUNT(*) FILTER (WHERE {column} IS NOT NULL AND {column} NOT IN ({sql_values})) = 0"
                    f" AS passed FROM {{table}}",
                )
            )
        if col.min is not None:
            out.append(
                Rule(
                    _allow_null(f"ColumnValues {_q(name)} >= {_number(col.min)}", name, col.required),
                    f"SELECT COUNT(*) FILTER (WHERE {column} < {_number(col.min)}) = 0 AS passed FROM {{table}}",
                )
            )
        if col.max is not None:
            out.append(
                Rule(
                    _allow_null(f"ColumnValues {_q(name)} <= {_number(col.max)}", name, col.required),
                    f"SELECT COUNT(*) FILTER (WHERE {column} > {_number(col.max)}) = 0 AS passed FROM {{table}}",
                )
            )
        if col.pattern is not None:
            out.append(
                Rule(
                    _allow_null(f"ColumnValues {_q(name)} matches {_q(col.pattern)}", name, col.required),
                    f"SELECT COUNT(*) FILTER (WHERE {column} IS NOT NULL AND NOT regexp_full_match({column}, "
                    f"{_sql_str(pattern_for_re2(col.pattern))})) = 0 AS passed FROM {{table}}",
                )
            )
        if col.max_length is not None:
            out.append(
                Rule(
                    _allow_null(f"ColumnLength {_q(name)} <= {col.max_length}", name, col.required),
                    f"SELECT COUNT(*) FILTER (WHERE length({column}) > {col.max_length}) = 0 AS passed FROM {{table}}",
                )
            )
    return out


def dqdl(dataset: Dataset) -> str:
    """The Glue Data Quality ruleset (DQDL) of a dataset."""
    return "Rules = [\n    " + ",\n    ".join(r.dqdl for r in rules(dataset)) + "\n]"


#: The longest ruleset Glue Data Quality takes (CreateDataQualityRuleset's ``Ruleset``).
MAX_RULESET = 65_536


def check_rulesets(datasets: Iterable[Dataset]) -> None:
    """Raise for the first dataset whose generated ruleset is longer than Glue takes, naming its
    file and the way out, rather than its deployment failing."""
    for dataset in datasets:
        if (size := len(dqdl(dataset))) > MAX_RULESET:
            raise DatasetConfigError(
                dataset.source_file,
                [
                    (
                        "columns",
                        f"the data-quality ruleset made from them has {size:,} characters, more than "
                        f"the {MAX_RULESET:,} Glue takes: split the dataset, or drop constraints "
                        "(each enum, min, max, pattern and required column is a rule)",
                    )
                ],
            )
