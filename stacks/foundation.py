"""Foundation (stateful): keys, zone buckets, access-log bucket, alert topic."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from constructs import Construct

from cdk_constructs.alerts import AlertTopic
from cdk_constructs.keys import LakeKeys
from cdk_constructs.storage import LakeStorage
from config import StageConfig
from stacks.common import removal_policy


class FoundationStack(Stack):
    """Everything that holds data or keys. Later stacks take these objects as arguments."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: StageConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal = removal_policy(stage)
        self.keys = LakeKeys(self, "Keys", prefix=stage.prefix, removal_policy=removal)
        lc = stage.lifecycle
        self.storage = LakeStorage(
            self,
            "Storage",
            prefix=stage.prefix,
            raw_key=self.keys.raw,
            curated_key=self.keys.curated,
            analytics_key=self.keys.analytics,
            raw_infrequent_access_after=Duration.days(lc.raw_infrequent_access_after),
            raw_glacier_ir_after=Duration.days(lc.raw_glacier_ir_after),
            noncurrent_version_expiration=Duration.days(lc.noncurrent_versions_expire_after),
            athena_results_expire_after=Duration.days(lc.athena_results_expire_after),
            access_logs_expire_after=Duration.days(lc.access_logs_expire_after),
            removal_policy=removal,
        )
        self.alerts = AlertTopic(
            self,
            "Alerts",
            master_key=self.keys.logs,
            display_name=f"{stage.prefix} data lake alerts",
            email=stage.alarm_email,
        )
