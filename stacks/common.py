"""Small helpers the stacks share: stage-driven removal and log retention."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs

from config import StageConfig


def removal_policy(stage: StageConfig) -> RemovalPolicy:
    """Sandbox stages destroy everything with the stack; other stages retain data and keys."""
    return RemovalPolicy.DESTROY if stage.destroy_on_removal else RemovalPolicy.RETAIN


_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def log_retention(stage: StageConfig) -> logs.RetentionDays:
    """The stage's retention as the CDK enum (``StageConfig`` validates the number of days)."""
    return _RETENTION[stage.log_retention_days]


def database_name(stage: StageConfig, zone: str) -> str:
    """Glue database of a zone: ``<prefix>_<zone>`` with ``-`` as ``_`` (Athena-friendly)."""
    return f"{stage.prefix.replace('-', '_')}_{zone}"
