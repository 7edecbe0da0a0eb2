"""Erase a data subject's records from a dataset: the raw zone here, the curated zone by the next run.

A right-to-erasure request names a person by a column's value (``customer_id = c-123``). Every
copy of their records in the lake comes from the raw zone, and the Glue job rebuilds each curated
day, and its quarantine, from all of that day's raw objects. So erasing in the raw zone is enough:

1. every object under the dataset's three raw prefixes that holds a matching record is written
   back without it (the others byte for byte), and an object left with no record is written back
   empty rather than deleted:

   - ``<dataset>/year=.../``: the records the transform accepted, one JSON object per line;
   - ``<dataset>_rejected/...``: the transform's rejections, each with the record as sent;
   - ``errors/<dataset>/...``: Firehose's error records, each with the record as sent;

2. the next pipeline run (scheduled, or started at once) finds those objects changed, since a
   rewritten object has a new modification time, and rebuilds their days: the records are gone
   from the curated table and the quarantine, and a day left with no rows is removed with its
   partition. An object deleted instead would not be seen as changed, and its day would keep them.

A record matches when its column holds one of the values (text compared trimmed). A line or a
payload that is not JSON matches when it holds one of the values as a JSON string (``"c-123"``),
so a malformed record of that person is erased too.

The raw bucket is versioned: the versions this writes over stay as noncurrent versions until the
bucket's lifecycle expires them (``noncurrent_versions_expire_after``, 30 days by default).
``--purge-versions`` deletes them at once, and every other earlier version of each object it
rewrites. Copies outside the lake's buckets are not this tool's: Athena query results (expired by
the results bucket's lifecycle), Redshift materialized views (refreshed after the run), exports.

    python -m datalake.erase --bucket lake-sbx-raw-<account>-<region> --dataset orders \\
        --column customer_id --value c-123 [--value c-456] [--dry-run] [--purge-versions]

needs ``s3:ListBucket``, ``s3:GetObject`` and ``s3:PutObject`` on the three prefixes (and
``s3:ListBucketVersions``, ``s3:DeleteObjectVersion`` to purge), ``kms:Decrypt`` and
``kms:GenerateDataKey`` on the raw key. ``--dry-run`` reads and counts, and writes nothing.
"""

from __future__ import annotations

import argparse
import binascii
import gzip
import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datalake.cli import ToolError, add_raw_zone_arguments, dataset_named, run
from datalake.dataset import (
    DATASETS_DIR,
    day_folder,
    start_pipeline_command,
)
from datalake.replay import documents, object_text, payload_of

_LINE_RE = re.compile(r"[^\n]*\n|[^\n]+$")
_LEFT = "it was left as it is (objects before it were rewritten and hold no match now): move or fix it, then run again"


class EraseError(ToolError):
    """A request or an object this tool cannot carry out or read, named with the fix."""


@dataclass(frozen=True)
class Subject:
    """Whose records: those whose ``column`` holds one of ``values``."""

    column: str
    values: frozenset[str]

    def holds(self, record: Any) -> bool:
        value = record.get(self.column) if isinstance(record, dict) else None
        return value is not None and not isinstance(value, dict | list) and str(value).strip() in self.values

    def named_in(self, text: str) -> bool:
        """For text that is not JSON: holds a value as a JSON string."""
        return any(json.dumps(v, ensure_ascii=False) in text or json.dumps(v) in text for v in self.values)

    def in_text(self, text: str) -> bool:
        """For a record as text: by its column when it is a JSON object, else by :meth:`named_in`."""
        try:
            record = json.loads(text)
        except (RecursionError, ValueError):  # json.JSONDecodeError is a ValueError
            record = None
        return self.holds(record) if isinstance(record, dict) else self.named_in(text)


def subject_for(
    dataset_name: str, column: str, values: Iterable[str], datasets_dir: Path = DATASETS_DIR
) -> Subject:
    """The subject of a request, checked against the dataset file: a top-level scalar column."""
    dataset = dataset_named(dataset_name, datasets_dir)
    scalars = [c.name for c in dataset.columns if c.type not in ("array", "struct")]
    if column not in scalars:
        raise EraseError(
            f"{column!r} is not a top-level column of {dataset.source_file}; name the subject by one of: "
            + ", ".join(scalars)
        )
    cleaned = frozenset(v.strip() for v in values if v.strip())
    if not cleaned:
        raise EraseError("no value given: name the subject with --value (one or more)")
    return Subject(column, cleaned)


def erase_lines(text: str, subject: Subject) -> tuple[str, int]:
    """A raw object's records (one JSON object per line) without the subject's, and how many went."""
    kept, erased = [], 0
    # Lines end at \n only: a record may hold U+2028 and other breaks unescaped, never \n or \r.
    for line in _LINE_RE.findall(text):
        if line.strip() and subject.in_text(line):
            erased += 1
        else:
            kept.append(line)
    return "".join(kept), erased


def erase_documents(text: str, subject: Subject, name: str) -> tuple[str, int]:
    """A rejection or error object's documents without those holding the subject's records (the
    record as sent, in ``raw_base64`` or ``rawData``), one per line, and how many went."""
    kept, erased = [], 0
    try:
        for start, end, document in documents(text):
            try:
                payload = payload_of(document).decode("utf-8", errors="replace")
            except (StopIteration, binascii.Error, TypeError):
                raise EraseError(
                    f"{name}: a document holds no record (raw_base64 or rawData); {_LEFT}"
                ) from None
            if subject.in_text(payload):
                erased += 1
            else:
                kept.append(text[start:end] + "\n")
    except json.JSONDecodeError as error:
        raise EraseError(f"{name}: not JSON documents ({error.msg}); {_LEFT}") from None
    return "".join(kept), erased


def erase_in_object(
    body: bytes, subject: Subject, *, documents_of_records: bool, name: str
) -> tuple[bytes | None, int]:
    """``body`` without the subject's records, in its own encoding (gzip stays gzip), or ``None``
    when it holds none of them; and how many records went."""
    try:
        text = object_text(body, errors="surrogateescape")  # a line that is not UTF-8 stays as it is
    except ValueError as error:
        raise EraseError(f"{name}: cannot be read as text ({error}); {_LEFT}") from None
    if documents_of_records:
        kept, erased = erase_documents(text, subject, name)
    else:
        kept, erased = erase_lines(text, subject)
    if not erased:
        return None, 0
    data = kept.encode("utf-8", "surrogateescape")
    return (gzip.compress(data) if body[:2] == b"\x1f\x8b" else data), erased


@dataclass
class Erased:
    objects_read: int = 0
    objects_rewritten: int = 0
    records: int = 0
    versions_purged: int = 0
    #: Raw day folders (``year=YYYY/month=MM/day=DD``) with a rewritten object: the days the next
    #: pipeline run rebuilds.
    days: set[str] = field(default_factory=set)


def prefixes(dataset: str) -> list[tuple[str, bool]]:
    """The dataset's raw-zone prefixes, each with whether its objects hold documents of records."""
    return [(f"{dataset}/", False), (f"{dataset}_rejected/", True), (f"errors/{dataset}/", True)]


def erase(
    s3: Any,
    *,
    bucket: str,
    dataset: str,
    subject: Subject,
    dry_run: bool = False,
    purge_versions: bool = False,
    report: Callable[[str], None] = print,
) -> Erased:
    """Write back every object of ``dataset`` in ``bucket`` that holds the subject's records
    without them (module docstring)."""
    done = Erased()
    verb = "would erase" if dry_run else "erased"
    for prefix, of_records in prefixes(dataset):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for listed in page.get("Contents", []):
                key = listed["Key"]
                done.objects_read += 1
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                rewritten, erased = erase_in_object(
                    body, subject, documents_of_records=of_records, name=f"s3://{bucket}/{key}"
                )
                if rewritten is None:
                    continue
                if not dry_run:
                    put = s3.put_object(Bucket=bucket, Key=key, Body=rewritten)
                    if purge_versions:
                        done.versions_purged += _purge_versions(s3, bucket, key, keep=put.get("VersionId"))
                done.objects_rewritten += 1
                done.records += erased
                if not of_records and (day := day_folder(key)):
                    done.days.add(day)
                report(f"{verb} {erased} record(s) of s3://{bucket}/{key}")
    purged = f", {done.versions_purged} earlier version(s) deleted" if purge_versions else ""
    report(
        f"{verb} {done.records} record(s) in {done.objects_rewritten} of {done.objects_read} object(s){purged}"
    )
    if done.days:
        report(
            f"the next pipeline run of {dataset} {'would rebuild' if dry_run else 'rebuilds'} "
            f"{len(done.days)} day(s) without them: " + ", ".join(sorted(done.days))
        )
        if not dry_run and (command := start_pipeline_command(bucket, dataset)):
            report(f"to start it now: {command}")
    return done


def _purge_versions(s3: Any, bucket: str, key: str, *, keep: str | None) -> int:
    """Deletes every version of ``key`` but ``keep``; how many."""
    old = [
        v["VersionId"]
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key)
        for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        if v["Key"] == key and v["VersionId"] != keep
    ]
    for version in old:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    return len(old)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datalake.erase", description=__doc__.split("\n\n")[0])
    add_raw_zone_arguments(parser)
    parser.add_argument("--column", required=True, help="the top-level column naming the subject")
    parser.add_argument(
        "--value", action="append", required=True, help="the subject's value (repeat for more)"
    )
    parser.add_argument("--dry-run", action="store_true", help="read and count; write nothing")
    parser.add_argument(
        "--purge-versions",
        action="store_true",
        help="also delete the earlier versions of each object rewritten",
    )
    args = parser.parse_args(argv)

    def call() -> None:
        import boto3

        erase(
            boto3.client("s3"),
            bucket=args.bucket,
            dataset=args.dataset,
            subject=subject_for(args.dataset, args.column, args.value),
            dry_run=args.dry_run,
            purge_versions=args.purge_versions,
        )

    return run("erase", call)


if __name__ == "__main__":
    sys.exit(main())
