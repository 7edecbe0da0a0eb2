"""Load historical records into a dataset's raw zone through the real transform, without Firehose.

Live records come through the dataset's Firehose stream. A first load of months of history does
not fit it: Firehose partitions a buffer by event hour and sends whatever is past its active
partitions (500 by default) to the error prefix (the **PartitionLimit** alarm), and a producer
would have to pace itself for days. This tool reads a file of the records, one JSON document per
line as a producer would send each, and does on this machine what Firehose and the transform do
(:mod:`datalake.local_firehose`, with the function's own code): accepted records are normalized
and written under ``<dataset>/year=/month=/day=/hour=/`` of their event time, rejections with
their reasons under ``<dataset>_rejected/`` of the load's time. Their ``source_stream`` is
``backfill``. The next pipeline run finds the new objects and curates their days.

An accepted record counts as ingested at its event time (or the load's time, if that is
earlier), not at the load's: the job keeps the version of a key ingested last, and a version
from history must not replace one that came live after it. So a live version wins unless the
history's is a later event than the live one's arrival, and of two history versions the later
event wins. ``late_arriving_data`` sees history as on time.

A dataset with a retention (``governance.retention_days``) keeps no event day older than that:
the job would remove such a day at its next run. The tool leaves out the accepted records of
those days (counted and reported, the first day kept named), rather than store them until then.

Objects are named ``backfill-<load id>-<chunk>`` and never overwrite one another: loading a file
twice puts its records in the raw zone twice, and the job keeps one version of each record key,
so the curated rows are the same.

    python -m datalake.backfill --bucket lake-sbx-raw-<account>-<region> --dataset orders FILE \\
        [--chunk-records 100000] [--dry-run]

needs ``s3:PutObject`` on the dataset's raw and rejected prefixes (and its processing-failed
error prefix, for a record the transform could not return) and ``kms:GenerateDataKey`` on the raw
key. ``--dry-run`` runs the transform and counts, and writes nothing.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from datalake.cli import ToolError, add_raw_zone_arguments, dataset_named, run
from datalake.dataset import (
    Dataset,
    day_folder,
    start_pipeline_command,
)
from datalake.local_firehose import deliver

#: The records each chunk holds: the transform's output of a chunk is kept on disk until uploaded.
CHUNK_RECORDS = 100_000
SOURCE_STREAM = "backfill"


class BackfillError(ToolError):
    """A load this tool cannot make as asked, named with the fix."""


@dataclass
class Loaded:
    records: int = 0
    ok: int = 0
    rejected: int = 0
    processing_failed: int = 0
    objects: int = 0
    #: Event days (``year=YYYY/month=MM/day=DD``) that received accepted records: the days the
    #: next pipeline run curates.
    days: set[str] = field(default_factory=set)
    #: Accepted records of event days past the dataset's retention, left out, and their days.
    past_retention: int = 0
    past_retention_days: set[str] = field(default_factory=set)


def first_day_kept(dataset: Dataset, load: datetime) -> date | None:
    """The first event day the dataset keeps on the load's date; ``None`` without a retention. The
    job counts its retention back from the date it runs on, as here (``JobConfig.retention_cutoff``)."""
    retention = dataset.governance.retention_days
    return None if retention is None else load.date() - timedelta(days=retention)


def _folder_date(folder: str) -> date:
    """The date of a ``year=YYYY/month=MM/day=DD`` folder."""
    year, month, day = (part.split("=")[1] for part in folder.split("/"))
    return date(int(year), int(month), int(day))


def chunks(lines: IO[bytes], size: int) -> Iterator[list[bytes]]:
    """The file's records, ``size`` at a time: each line without its line end; blank lines skipped."""
    chunk: list[bytes] = []
    for line in lines:
        record = line.rstrip(b"\r\n")
        if not record.strip():
            continue
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def arrivals(records: list[bytes], dataset: Dataset, load: datetime) -> list[datetime]:
    """Each record's arrival for the transform: its event time if the transform accepts the
    record and it is not later than ``load``, else ``load`` (module docstring)."""
    # The transform's own code, on the path once datalake.local_firehose is imported.
    from records import Invalid, RecordValidator, loads

    validator = RecordValidator(dataset.to_spec())
    out: list[datetime] = []
    for record in records:
        try:
            normalized, _ = validator.validate(loads(record))
        except Invalid:
            normalized = None
        at = datetime.fromisoformat(normalized[dataset.event_time]) if normalized is not None else load
        out.append(min(at, load))
    return out


def backfill(
    s3: Any,
    lines: IO[bytes],
    *,
    bucket: str,
    dataset: Dataset,
    chunk_records: int = CHUNK_RECORDS,
    dry_run: bool = False,
    now: datetime | None = None,
    report: Callable[[str], None] = print,
) -> Loaded:
    """Transform the records of ``lines`` and write what Firehose would under ``bucket`` (module
    docstring), one chunk at a time."""
    if chunk_records < 1:
        raise BackfillError(f"--chunk-records {chunk_records}: use 1 or more")
    load_id = uuid.uuid4().hex[:12]
    arrival = (now or datetime.now(UTC)).astimezone(UTC)
    kept_from = first_day_kept(dataset, arrival)
    done = Loaded()
    verb = "would write" if dry_run else "wrote"
    for number, records in enumerate(chunks(lines, chunk_records)):
        with tempfile.TemporaryDirectory(prefix="backfill-") as tmp:
            root = Path(tmp)
            delivery = deliver(
                records,
                dataset,
                root,
                stream=SOURCE_STREAM,
                arrival=arrival,
                object_name=f"backfill-{load_id}-{number:05d}",
                arrivals=arrivals(records, dataset, arrival),
            )
            keys = sorted(path.relative_to(root).as_posix() for path in delivery.objects)
            if kept_from is not None:
                past = {
                    key: folder
                    for key in keys
                    if key.startswith(f"{dataset.name}/")
                    and (folder := day_folder(key))
                    and _folder_date(folder) < kept_from
                }
                for key, folder in past.items():
                    done.past_retention += gzip.decompress((root / key).read_bytes()).count(b"\n")
                    done.past_retention_days.add(folder)
                keys = [key for key in keys if key not in past]
            if not dry_run:
                for key in keys:
                    s3.put_object(Bucket=bucket, Key=key, Body=(root / key).read_bytes())
        done.records += delivery.records_in
        done.ok += delivery.ok
        done.rejected += delivery.rejected
        done.processing_failed += delivery.processing_failed
        done.objects += len(keys)
        done.days |= {day for key in keys if key.startswith(f"{dataset.name}/") and (day := day_folder(key))}
        report(
            f"chunk {number}: {delivery.records_in} record(s), {delivery.ok} accepted, "
            f"{delivery.rejected} rejected; {verb} {len(keys)} object(s)"
        )
    failed = (
        f", {done.processing_failed} failed (under errors/{dataset.name}/, to replay)"
        if done.processing_failed
        else ""
    )
    report(
        f"{done.records} record(s): {done.ok} accepted, {done.rejected} rejected{failed}; {verb} "
        f"{done.objects} object(s) to s3://{bucket}/, load {load_id}"
    )
    if done.past_retention:
        report(
            f"{done.past_retention} accepted record(s) of {len(done.past_retention_days)} day(s) before "
            f"{kept_from} left out: past the dataset's retention (governance.retention_days="
            f"{dataset.governance.retention_days} in {dataset.source_file})"
        )
    if done.days:
        first, last = min(done.days), max(done.days)
        report(f"the next pipeline run of {dataset.name} curates {len(done.days)} day(s), {first} to {last}")
        if not dry_run and (command := start_pipeline_command(bucket, dataset.name)):
            report(f"to start it now: {command}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datalake.backfill", description=__doc__.split("\n\n")[0])
    add_raw_zone_arguments(parser)
    parser.add_argument("--chunk-records", type=int, default=CHUNK_RECORDS, help="records per chunk")
    parser.add_argument("--dry-run", action="store_true", help="transform and count; write nothing")
    parser.add_argument("file", type=Path, help="one JSON document per line, as a producer sends each record")
    args = parser.parse_args(argv)

    def call() -> None:
        dataset = dataset_named(args.dataset)
        import boto3

        with args.file.open("rb") as lines:
            backfill(
                boto3.client("s3"),
                lines,
                bucket=args.bucket,
                dataset=dataset,
                chunk_records=args.chunk_records,
                dry_run=args.dry_run,
            )

    return run("backfill", call, OSError)


if __name__ == "__main__":
    sys.exit(main())
