"""The SQL the lake ships (``sql/<engine>/*.sql``): loading, placeholders and local translation.

Files are plain SQL of their engine so editors, linters and sqlglot read them as they are. The
only templating is ``{{name}}`` for values known at synth time (a prefix regex, a database), and
every placeholder must be given: a leftover one is an error, never a silently broken query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class SqlFile:
    """One query: its name (the file stem), description (leading ``--`` lines) and text."""

    name: str
    description: str
    text: str
    path: Path

    def render(self, values: Mapping[str, str] | None = None) -> str:
        return render(self.text, values or {}, where=str(self.path))


def render(text: str, values: Mapping[str, str], *, where: str = "SQL") -> str:
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(text)} - set(values))
    if missing:
        raise ValueError(f"{where}: no value for placeholder(s) {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def load(engine: str, directory: Path | None = None) -> list[SqlFile]:
    """The ``*.sql`` files of ``sql/<engine>/``, sorted by name (none when a fork removed them all)."""
    folder = (directory or SQL_DIR) / engine
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder of .sql files")
    files = []
    for path in sorted(folder.glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        comments = []
        for line in text.splitlines():
            if not line.startswith("--"):
                break
            comments.append(line.lstrip("-").strip())
        if not comments:
            raise ValueError(f"{path}: start the file with '--' lines saying what the query answers")
        files.append(
            SqlFile(name=path.stem, description=" ".join(comments), text=text.strip() + "\n", path=path)
        )
    return files


def code(text: str) -> str:
    """``text`` without its comment lines (those that start with ``--``)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def statements(text: str) -> list[str]:
    """The statements of a script: each ends with ``;`` at the end of a line, outside a ``$$``
    body (a stored procedure's, whose own statements end so too). Leading comment lines stay
    with the statement they precede: the Redshift bootstrap function reads ``-- ok-if-exists``
    from them (``lambda/custom_resources/redshift_sql.py``)."""
    out: list[str] = []
    current: list[str] = []
    in_body = False
    for line in text.splitlines():
        if not line.strip() and not current:
            continue
        current.append(line)
        if line.lstrip().startswith("--"):
            continue
        if line.count("$$") % 2:
            in_body = not in_body
        if not in_body and line.rstrip().endswith(";"):
            out.append("\n".join(current).strip())
            current = []
    if in_body:
        raise ValueError("a $$ body is not closed: end it with $$ on a line of its own code")
    if any(line.strip() and not line.lstrip().startswith("--") for line in current):
        raise ValueError("the last statement does not end with ';' at the end of a line")
    return out


#: A stored procedure the warehouse's refresh schedule calls: ``public.sp_refresh_<what>()``,
#: without arguments, run as its owner (``cdk_constructs/warehouse.py``).
_REFRESH_PROCEDURE = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?PROCEDURE\s+(public\.sp_refresh_[a-z0-9_]+)\s*\(([^)]*)\)",
    re.IGNORECASE,
)


def refresh_procedures(script: list[str]) -> list[str]:
    """The refresh procedures the statements of ``script`` create, in order: those the warehouse
    calls on its schedule to fill again what it keeps of the curated data. Raise, saying how to
    fix it, for one the schedule could not call: one that takes an argument, that would run as
    the schedule's database user (who may call it and do nothing else) instead of its owner, or
    that ends the transaction the schedule calls it in (``TRUNCATE``, ``COMMIT``, ``ROLLBACK``:
    Redshift refuses them in a procedure called inside a transaction block)."""
    found = []
    for statement in script:
        text = code(statement)
        match = _REFRESH_PROCEDURE.match(text)
        if match is None:
            continue
        name, arguments = match.group(1).lower(), match.group(2).strip()
        if arguments:
            raise ValueError(
                f"{name}({arguments}): the refresh schedule calls each public.sp_refresh_* procedure "
                "with no argument; take none, or give the procedure another name"
            )
        if not re.search(r"\bSECURITY\s+DEFINER\b", text.rsplit("$$", 1)[-1], re.IGNORECASE):
            raise ValueError(
                f"{name}(): add SECURITY DEFINER after LANGUAGE plpgsql; the refresh schedule's "
                "database user may call it and do nothing else, so it must run as its owner"
            )
        for inner in procedure_body(statement):
            if verb := re.match(r"\s*(TRUNCATE|COMMIT|ROLLBACK)\b", code(inner), re.IGNORECASE):
                raise ValueError(
                    f"{name}(): the refresh schedule calls every refresh procedure in one transaction "
                    f"(BatchExecuteStatement), where a procedure may not {verb.group(1).upper()}; "
                    "empty a table with DELETE"
                )
        found.append(name)
    return found


def check_refresh_procedures(directory: Path | None = None) -> None:
    """Raise, naming the file, when a file of ``sql/redshift/`` creates a refresh procedure the
    warehouse's schedule could not call (:func:`refresh_procedures`)."""
    root = directory or SQL_DIR
    for script in load("redshift", directory):
        try:
            refresh_procedures(statements(script.text))
        except ValueError as exc:
            raise ValueError(f"{root.name}/{script.path.relative_to(root)}: {exc}") from None


def procedure_body(statement: str) -> list[str]:
    """The statements of a ``CREATE PROCEDURE``'s ``$$`` body, without its ``BEGIN`` and ``END``."""
    # where the $$ marks are, comment lines blanked (a comment may name them)
    code = "\n".join(
        " " * len(line) if line.lstrip().startswith("--") else line for line in statement.splitlines()
    )
    marks = [m.start() for m in re.finditer(r"\$\$", code)]
    if len(marks) != 2:
        raise ValueError(f"not one $$ body: {statement[:80]!r}")
    body = statement[marks[0] + 2 : marks[1]].strip()
    head, tail = re.match(r"(?is)^BEGIN\b", body), re.search(r"(?is)\bEND\s*;\s*$", body)
    if not (head and tail):
        raise ValueError(f"the body does not run from BEGIN to END;: {body[:80]!r}")
    return statements(body[head.end() : tail.start()])


def regex_for_prefixes(prefixes: list[str]) -> str:
    """A regex matching object keys under any of ``prefixes`` (for ``regexp_like``)."""
    return "^(" + "|".join(re.escape(p) for p in prefixes) + ")"


def tables_read(text: str, dialect: str = "trino") -> set[str]:
    """The tables a statement reads or names, ``schema.table`` where it qualifies them; its own
    common table expressions left out."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(text, read=dialect)
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return {
        f"{table.db}.{table.name}" if table.db else table.name
        for table in tree.find_all(exp.Table)
        if table.db or table.name not in ctes
    }


#: A table of Redshift's external schemas over the curated database (``01_external_schema.sql``).
_SPECTRUM_TABLE = re.compile(r"\bcurated(?:_analyst)?\.([A-Za-z_][A-Za-z0-9_]*)")


def check_tables(declared: set[str], directory: Path | None = None) -> None:
    """Raise, naming each file and table, when a shipped Athena or Redshift file reads a curated
    table not in ``declared``. The shipped queries are examples over their dataset: a fork that
    removes the dataset removes them too, or they fail where they run (Redshift's at deploy)."""
    root = directory or SQL_DIR
    found = []
    for query in load("athena", directory):
        tables = {t.split(".")[-1] for t in tables_read(query.text)}
        found += [(query.path, t) for t in sorted(tables - declared)]
    for script in load("redshift", directory):
        found += [
            (script.path, t) for t in sorted(set(_SPECTRUM_TABLE.findall(code(script.text))) - declared)
        ]
    if found:
        lines = [f"{root.name}/{path.relative_to(root)} reads table {table!r}" for path, table in found]
        raise ValueError(
            "Shipped SQL reads curated tables that no dataset file declares:\n  - "
            + "\n  - ".join(lines)
            + "\n  Each file is an example over its dataset: delete it, or add the dataset file"
            " (config/datasets/<table>.json)."
        )


def athena_to_duckdb(text: str) -> str:
    """Translate an Athena (Trino) statement to DuckDB, for running shipped SQL on local files."""
    import sqlglot

    return sqlglot.transpile(text, read="trino", write="duckdb")[0]
