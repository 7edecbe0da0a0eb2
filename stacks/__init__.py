"""Deployment units of the lake, composed by :func:`build_lake` in dependency order."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import App, Environment, Stack, Tags

from config import StageConfig
from datalake.dataset import Dataset
from stacks.foundation import FoundationStack


@dataclass
class Lake:
    """The stacks of one stage, for tests and tools that read the app."""

    foundation: FoundationStack

    @property
    def stacks(self) -> list[Stack]:
        return [self.foundation]


def build_lake(app: App, stage: StageConfig, datasets: tuple[Dataset, ...]) -> Lake:
    """Add every stack of ``stage`` to ``app``. Dependencies flow one way: stateful to stateless."""
    env = Environment(account=stage.account, region=stage.region) if stage.account or stage.region else None
    common = {"env": env, "termination_protection": stage.termination_protection}
    foundation = FoundationStack(
        app,
        f"{stage.prefix}-foundation",
        stage=stage,
        description=f"Governed data lake ({stage.name}): keys, zone buckets, alert topic",
        **common,  # type: ignore[arg-type]
    )
    lake = Lake(foundation=foundation)
    for stack in lake.stacks:
        Tags.of(stack).add("project", "governed-data-lake")
        Tags.of(stack).add("stage", stage.name)
    return lake
