"""What the operator tools (``replay``, ``backfill``, ``erase``) share at the command line: their
error type, the raw zone's arguments, the dataset by name, and one way to end."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from datalake.dataset import DATASETS_DIR, Dataset, DatasetConfigError, load_dataset


class ToolError(RuntimeError):
    """What a tool cannot do as asked, named with the fix; the tool ends with it, status 1."""


def add_raw_zone_arguments(parser: argparse.ArgumentParser) -> None:
    """``--bucket`` (the stage's raw bucket) and ``--dataset`` (a dataset file's name)."""
    parser.add_argument("--bucket", required=True, help="the raw bucket, <prefix>-raw-<account>-<region>")
    parser.add_argument("--dataset", required=True, help="the dataset file's name, e.g. orders")


def dataset_named(name: str, datasets_dir: Path = DATASETS_DIR) -> Dataset:
    """The dataset of ``<datasets_dir>/<name>.json``; :class:`ToolError` naming it if it is wrong."""
    try:
        return load_dataset(Path(datasets_dir) / f"{name}.json")
    except DatasetConfigError as error:
        raise ToolError(f"dataset {name!r}: {error}") from None


def run(prog: str, call: Callable[[], object], *errors: type[Exception]) -> int:
    """0 once ``call`` is done; 1, with ``<prog>: <error>`` on stderr, for a :class:`ToolError`
    or one of ``errors``."""
    handled: tuple[type[Exception], ...] = (ToolError, *errors)
    try:
        call()
    except handled as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    return 0
