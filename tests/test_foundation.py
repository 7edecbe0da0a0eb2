"""Keys, buckets and the alert topic of the Foundation stack."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Annotations, Match, Template
from cfn_resolve import ACCOUNT, REGION, Resolver, key_id
from conftest import EVENTS
from lake_app import Synth, api_call_event, app_context, assumed_role, policy_statements, synthesize
from log_filter import matches

from cdk_constructs.alerts import AlertTopic
from cdk_constructs.audit import MAX_FILTER_PATTERN, AuditTrail, TrailCheck, iam_change_pattern
from cdk_constructs.bootstrap import assets_bucket_name, execution_role_arn
from cdk_constructs.ingestion import raw_expirations
from cdk_constructs.lake_formation import CHANGES
from cdk_constructs.storage import RUN_SUMMARIES, SPARK_UI_LOGS, LakeBucket, LakeStorage
from config import get_stage
from datalake.dataset import Dataset, load_datasets
from datalake.sql import SQL_DIR
from stacks.foundation import BUCKET_GUARDS, FoundationStack


@pytest.fixture(scope="module")
def sandbox() -> Synth:
    return synthesize("sandbox")


@pytest.fixture(scope="module")
def template(sandbox: Synth) -> Template:
    return sandbox.template(sandbox.lake.foundation)


@pytest.fixture(scope="module")
def prod_template() -> Template:
    prod = synthesize("prod")
    return prod.template(prod.lake.foundation)


def _logical_id(template: Template, type_: str, path_fragment: str) -> str:
    resources = template.find_resources(type_)
    matches = [lid for lid in resources if lid.startswith(path_fragment)]
    assert len(matches) == 1, (path_fragment, list(resources))
    return matches[0]


def test_one_rotating_key_per_zone_and_one_for_logs(template: Template) -> None:
    template.resource_count_is("AWS::KMS::Key", 4)
    template.all_resources_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    for alias in ("raw", "curated", "analytics", "logs"):
        template.has_resource_properties("AWS::KMS::Alias", {"AliasName": f"alias/lake-sbx/{alias}"})


def test_logical_ids_of_stateful_resources_are_stable(template: Template) -> None:
    # Changing one of these replaces a key or a bucket full of data.
    keys = template.find_resources("AWS::KMS::Key")
    buckets = template.find_resources("AWS::S3::Bucket")
    assert sorted(k[:-8] for k in keys) == ["KeysAnalyticsKey", "KeysCuratedKey", "KeysLogsKey", "KeysRawKey"]
    assert sorted(b[:-8] for b in buckets) == [
        "StorageAccessLogsBucket",
        "StorageAnalyticsBucket",
        "StorageAthenaResultsBucket",
        "StorageAuditBucket",
        "StorageCuratedBucket",
        "StorageMacieResultsBucket",
        "StorageRawBucket",
    ]


def test_logs_key_lets_cloudwatch_logs_and_alert_publishers_use_it_for_this_account_only(
    sandbox: Synth, template: Template
) -> None:
    (key,) = [r for k, r in template.find_resources("AWS::KMS::Key").items() if k.startswith("KeysLogsKey")]
    policy = Resolver(sandbox.all_templates()).resolve(
        sandbox.lake.foundation.stack_name, key["Properties"]["KeyPolicy"]
    )
    statements = {st.get("Sid"): st for st in policy["Statement"]}
    # log groups of this account and region alone (the encryption context CloudWatch Logs sends)
    logs = statements["AllowCloudWatchLogsForThisAccount"]
    assert logs["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    assert logs["Condition"] == {
        "ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*"}
    }
    # alarms and EventBridge rules of this account publish to the encrypted alert topic
    publishers = statements["AllowAlarmAndEventPublishersToUseTopicKey"]
    assert sorted(publishers["Principal"]["Service"]) == ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
    assert publishers["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert publishers["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        ("Raw", "KeysRawKey"),
        ("Curated", "KeysCuratedKey"),
        ("Analytics", "KeysAnalyticsKey"),
        ("AthenaResults", "KeysAnalyticsKey"),
    ],
)
def test_zone_buckets_are_kms_encrypted_with_their_key_and_secure(
    template: Template, bucket: str, key: str
) -> None:
    lid = _logical_id(template, "AWS::S3::Bucket", f"Storage{bucket}Bucket")
    props = template.find_resources("AWS::S3::Bucket")[lid]["Properties"]
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["BucketKeyEnabled"] is True
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]["Fn::GetAtt"][0].startswith(key)
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert props["LoggingConfiguration"]["DestinationBucketName"]["Ref"].startswith("StorageAccessLogsBucket")
    abort = props["LifecycleConfiguration"]["Rules"][0]
    assert abort["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert abort["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}


def test_every_bucket_denies_plain_http_and_tls_before_1_2(template: Template) -> None:
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 7
    for policy in policies.values():
        denied = [
            s["Condition"]
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s["Action"] == "s3:*"
        ]
        assert {"Bool": {"aws:SecureTransport": "false"}} in denied
        assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in denied


def test_every_bucket_refuses_uploads_encrypted_with_a_key_the_lake_does_not_hold(template: Template) -> None:
    # SSE-C: the uploader's own key, which neither the lake's readers nor Macie could use; S3's
    # default blocks it on new buckets of most regions only (not Bahrain's or the UAE's)
    buckets = template.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 7
    for bucket in buckets.values():
        (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["BlockedEncryptionTypes"] == {"EncryptionType": ["SSE-C"]}


def test_raw_zone_tiers_to_infrequent_access_then_glacier_ir(template: Template) -> None:
    lid = _logical_id(template, "AWS::S3::Bucket", "StorageRawBucket")
    rules = template.find_resources("AWS::S3::Bucket")[lid]["Properties"]["LifecycleConfiguration"]["Rules"]
    tier = next(r for r in rules if r["Id"] == "TierRawData")
    assert tier["Transitions"] == [
        {"StorageClass": "STANDARD_IA", "TransitionInDays": 30},
        {"StorageClass": "GLACIER_IR", "TransitionInDays": 90},
    ]


def test_only_the_transforms_rejections_expire_in_the_raw_zone(template: Template) -> None:
    # the rejected records (PII whole) expire after a year; the accepted records, which every
    # rebuild reads, and Firehose's error records, valid data until replayed, never do (the
    # shipped datasets set no retention)
    lid = _logical_id(template, "AWS::S3::Bucket", "StorageRawBucket")
    rules = template.find_resources("AWS::S3::Bucket")[lid]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if "ExpirationInDays" in r]
    assert expiring == [
        {
            "Id": f"Expire-{name}_rejected",
            "Prefix": f"{name}_rejected/",
            "ExpirationInDays": 365,
            "Status": "Enabled",
        }
        for name in sorted(d.name for d in load_datasets())
    ]


def _lake_storage(stack_name: str, **options: Any) -> cdk.Stack:
    """A stack holding the lake's buckets (``LakeStorage``) with only what they require, and ``options``."""
    stack = cdk.Stack(cdk.App(context=app_context()), stack_name)
    keys = {zone: kms.Key(stack, zone) for zone in ("Raw", "Curated", "Analytics")}
    LakeStorage(
        stack,
        "Storage",
        prefix="t",
        raw_key=keys["Raw"],
        curated_key=keys["Curated"],
        analytics_key=keys["Analytics"],
        **options,
    )
    return stack


def test_a_datasets_retention_shortens_what_s3_keeps_of_its_rejected_and_failed_records() -> None:
    # GIVEN three datasets: one kept for good, one kept 30 days, one kept 3,650 days, in a stage
    # that keeps rejections 365 days
    (orders,) = load_datasets()

    def kept(name: str, days: int | None) -> Dataset:
        return replace(orders, name=name, governance=replace(orders.governance, retention_days=days))

    datasets = [kept("a", None), kept("b", 30), kept("c", 3650)]
    # WHEN the raw zone's expirations are derived
    expiring = {prefix: age.to_days() for prefix, age in raw_expirations(datasets, 365).items()}
    # THEN each dataset's rejections expire at the stage's age or its retention, the shorter; the
    # error records of a dataset with a retention expire at it, the others' never
    assert expiring == {
        "a_rejected/": 365,
        "b_rejected/": 30,
        "errors/b/": 30,
        "c_rejected/": 365,
        "errors/c/": 3650,
    }
    # AND the raw bucket gets a rule for each, named for its prefix
    stack = _lake_storage("Expirations", raw_expirations=raw_expirations(datasets, 365))
    (raw,) = [
        b["Properties"]
        for lid, b in Template.from_stack(stack).find_resources("AWS::S3::Bucket").items()
        if lid.startswith("StorageRawBucket")
    ]
    rules = raw["LifecycleConfiguration"]["Rules"]
    assert {r["Id"]: (r["Prefix"], r["ExpirationInDays"]) for r in rules if "ExpirationInDays" in r} == {
        "Expire-a_rejected": ("a_rejected/", 365),
        "Expire-b_rejected": ("b_rejected/", 30),
        "Expire-errors-b": ("errors/b/", 30),
        "Expire-c_rejected": ("c_rejected/", 365),
        "Expire-errors-c": ("errors/c/", 3650),
    }


def test_curated_run_summaries_and_spark_logs_expire_and_nothing_else_does(template: Template) -> None:
    lid = _logical_id(template, "AWS::S3::Bucket", "StorageCuratedBucket")
    rules = template.find_resources("AWS::S3::Bucket")[lid]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if "ExpirationInDays" in r]
    assert expiring == [
        {
            "Id": "ExpireRunSummaries",
            "Prefix": f"{RUN_SUMMARIES}/",
            "ExpirationInDays": 30,
            "Status": "Enabled",
        },
        {
            "Id": "ExpireSparkUiLogs",
            "Prefix": f"{SPARK_UI_LOGS}/",
            "ExpirationInDays": 30,
            "Status": "Enabled",
        },
    ]


def test_raw_and_curated_send_events_to_eventbridge_without_a_custom_resource(template: Template) -> None:
    for bucket in ("Raw", "Curated"):
        lid = _logical_id(template, "AWS::S3::Bucket", f"Storage{bucket}Bucket")
        props = template.find_resources("AWS::S3::Bucket")[lid]["Properties"]
        assert props["NotificationConfiguration"] == {
            "EventBridgeConfiguration": {"EventBridgeEnabled": True}
        }
    assert template.find_resources("Custom::S3BucketNotifications") == {}


def test_access_log_bucket_uses_sse_s3_because_s3_requires_it(template: Template) -> None:
    lid = _logical_id(template, "AWS::S3::Bucket", "StorageAccessLogsBucket")
    props = template.find_resources("AWS::S3::Bucket")[lid]["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ] == {"SSEAlgorithm": "AES256"}


def test_alert_and_notice_topics_are_encrypted_with_logs_key(template: Template) -> None:
    topics = template.find_resources("AWS::SNS::Topic")
    assert sorted(t["Properties"]["DisplayName"] for t in topics.values()) == [
        "lake-sbx data lake alerts",
        "lake-sbx data lake pipeline notices",
    ]
    for topic in topics.values():
        key, attribute = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"]
        assert key.startswith("KeysLogsKey") and attribute == "Arn"
    # each takes no message over plain HTTP; EventBridge rules publish to the alerts alone
    policies = {
        p["Properties"]["Topics"][0]["Ref"]: p["Properties"]["PolicyDocument"]["Statement"]
        for p in template.find_resources("AWS::SNS::TopicPolicy").values()
    }
    assert set(policies) == set(topics)
    for topic_id, statements in policies.items():
        assert any(
            st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for st in statements
        ), topic_id
        rules = [st for st in statements if st.get("Principal") == {"Service": "events.amazonaws.com"}]
        is_alerts = topics[topic_id]["Properties"]["DisplayName"].endswith("alerts")
        assert len(rules) == (1 if is_alerts else 0), topic_id


@pytest.mark.parametrize(
    ("email", "event_rules"), [(None, True), ("data@example.com", False)], ids=["defaults", "notices"]
)
def test_a_topic_subscribes_its_address_and_takes_event_rules_as_asked(
    email: str | None, event_rules: bool
) -> None:
    # GIVEN the construct's defaults (no address, EventBridge rules may publish), or a notices topic
    stack = cdk.Stack(cdk.App(context=app_context()), "Topics")
    kwargs: dict[str, Any] = {} if email is None else {"email": email, "event_rules": event_rules}
    AlertTopic(stack, "Topic", master_key=kms.Key(stack, "Key"), display_name="t", **kwargs)
    template = Template.from_stack(stack)
    # THEN the address, and only it, is subscribed by e-mail; the rules' grant is there when asked
    subscriptions = template.find_resources("AWS::SNS::Subscription")
    assert [(s["Properties"]["Protocol"], s["Properties"]["Endpoint"]) for s in subscriptions.values()] == (
        [] if email is None else [("email", email)]
    )
    (policy,) = template.find_resources("AWS::SNS::TopicPolicy").values()
    principals = [st.get("Principal") for st in policy["Properties"]["PolicyDocument"]["Statement"]]
    assert ({"Service": "events.amazonaws.com"} in principals) is event_rules


def test_the_accounts_monthly_cost_budget_alerts_the_alert_topic(
    sandbox: Synth, template: Template, prod_template: Template
) -> None:
    # each stage budgets its account: 100 USD a month in sandbox, 500 in prod
    budgets = {}
    for stage_template in (template, prod_template):
        (budget,) = stage_template.find_resources("AWS::Budgets::Budget").values()
        data = budget["Properties"]["Budget"]
        budgets[data["BudgetName"]] = data["BudgetLimit"]
        assert (data["BudgetType"], data["TimeUnit"]) == ("COST", "MONTHLY")
        # credits and refunds left out: promotional credits would hide the spend
        assert data["CostTypes"] == {"IncludeCredit": False, "IncludeRefund": False}
        # THEN actual spend past 80 % and 100 %, and a forecast past 100 %, go to the alert topic
        topic = {"Ref": _logical_id(stage_template, "AWS::SNS::Topic", "AlertsTopic")}
        notifications = budget["Properties"]["NotificationsWithSubscribers"]
        assert [
            (n["Notification"]["NotificationType"], n["Notification"]["Threshold"]) for n in notifications
        ] == [("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100)]
        for n in notifications:
            assert n["Notification"]["ComparisonOperator"] == "GREATER_THAN"
            assert n["Notification"]["ThresholdType"] == "PERCENTAGE"
            assert n["Subscribers"] == [{"Address": topic, "SubscriptionType": "SNS"}]
        # once the topic lets Budgets publish
        assert budget["DependsOn"] == [
            _logical_id(stage_template, "AWS::SNS::TopicPolicy", "AlertsTopicPolicy")
        ]
    assert budgets == {
        "lake-sbx-monthly-cost": {"Amount": 100, "Unit": "USD"},
        "lake-prd-monthly-cost": {"Amount": 500, "Unit": "USD"},
    }
    # AND Budgets may publish for budgets of this account alone, and use the topic's key for SNS
    # topics of this account and region alone (the encryption context SNS gives KMS)
    resolver = Resolver(sandbox.all_templates())
    stack = sandbox.lake.foundation.stack_name
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for lid, p in template.find_resources("AWS::SNS::TopicPolicy").items()
        if lid.startswith("AlertsTopicPolicy")
    ]
    (publish,) = [st for st in policy if st.get("Principal") == {"Service": "budgets.amazonaws.com"}]
    assert resolver.resolve(stack, publish["Condition"]) == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:budgets::{ACCOUNT}:*"},
    }
    (key,) = [r for k, r in template.find_resources("AWS::KMS::Key").items() if k.startswith("KeysLogsKey")]
    (use,) = [
        st
        for st in key["Properties"]["KeyPolicy"]["Statement"]
        if st.get("Principal") == {"Service": "budgets.amazonaws.com"}
    ]
    assert use["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert resolver.resolve(stack, use["Condition"]) == {
        "StringLike": {"kms:EncryptionContext:aws:sns:topicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:*"}
    }


def test_a_stage_without_a_budget_gives_budgets_no_grant() -> None:
    # GIVEN a stage whose organization budgets from its management account
    stage = replace(get_stage("sandbox"), monthly_budget_usd=None)
    foundation = FoundationStack(cdk.App(context=app_context()), "NoBudget", stage=stage)
    template = Template.from_stack(foundation)
    # THEN there is no budget, and neither the topics nor the keys name Budgets
    assert template.find_resources("AWS::Budgets::Budget") == {}
    assert "budgets.amazonaws.com" not in json.dumps(template.to_json())


def test_a_start_the_scheduler_gave_up_on_alarms_to_the_alert_topic(template: Template) -> None:
    # every schedule of the lake is in one group, whose dropped invocations alarm: an execution
    # that never started (a broken role, a deleted state machine) fails nothing else
    (group,) = template.find_resources("AWS::Scheduler::ScheduleGroup").values()
    assert group["Properties"]["Name"] == "lake-sbx"
    (alarm,) = [
        a["Properties"]
        for a in template.find_resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["Namespace"] == "AWS/Scheduler"
    ]
    assert (alarm["MetricName"], alarm["Statistic"], alarm["Threshold"]) == (
        "InvocationDroppedCount",
        "Sum",
        0,
    )
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Dimensions"] == [{"Name": "ScheduleGroup", "Value": "lake-sbx"}]
    topic = [{"Ref": _logical_id(template, "AWS::SNS::Topic", "AlertsTopic")}]
    assert alarm["AlarmActions"] == alarm["OKActions"] == topic


def _kms_call(name: str, key_id: str, **detail: Any) -> dict[str, Any]:
    return api_call_event("kms", name, {"keyId": key_id, "pendingWindowInDays": 7}, **detail)


def _rule(template: Template, source: str, call: str | None = None) -> dict[str, Any]:
    """The one rule on ``source``'s events (that names ``call``, when given)."""
    ((_, rule),) = [
        (k, r["Properties"])
        for k, r in template.find_resources("AWS::Events::Rule").items()
        if r["Properties"]["EventPattern"].get("source") == [source]
        and (call is None or call in r["Properties"]["EventPattern"]["detail"]["eventName"])
    ]
    return rule


def test_a_lake_key_disabled_or_scheduled_for_deletion_alerts(sandbox: Synth, template: Template) -> None:
    rule = _rule(template, "aws.kms", "ScheduleKeyDeletion")
    keys = template.find_resources("AWS::KMS::Key")
    assert len(keys) == 4
    # the pattern and the keys as a deployment fills them in (tests/cfn_resolve.py)
    resolver, stack = Resolver(sandbox.all_templates()), sandbox.lake.foundation.stack_name
    pattern = sandbox.event_pattern(sandbox.lake.foundation, rule["EventPattern"])
    raw = next(k for k in keys if k.startswith("KeysRawKey"))
    # a lake key scheduled for deletion or disabled, named by id or by ARN: published
    raw_id, raw_arn = key_id(raw), resolver.resolve(stack, {"Fn::GetAtt": [raw, "Arn"]})
    assert pattern.matches_event(_kms_call("ScheduleKeyDeletion", raw_id))
    assert pattern.matches_event(_kms_call("DisableKey", raw_arn))
    for key in keys:
        assert pattern.matches_event(_kms_call("ScheduleKeyDeletion", key_id(key)))
    # another key, another call, or a call that was refused: not
    assert not pattern.matches_event(_kms_call("ScheduleKeyDeletion", "id-someone-elses"))
    assert not pattern.matches_event(_kms_call("Decrypt", raw_id))
    assert not pattern.matches_event(_kms_call("ScheduleKeyDeletion", raw_id, errorCode="AccessDenied"))
    # the notice names the key, the call, the caller and the time
    target = rule["Targets"][0]["InputTransformer"]
    assert target["InputTemplate"] == '"Lake KMS key <name>: <call> by <caller> at <time>"'
    assert target["InputPathsMap"]["name"] == "$.detail.requestParameters.keyId"
    assert target["InputPathsMap"]["caller"] == "$.detail.userIdentity.arn"


def _key_rule(sandbox: Synth, template: Template, call: str) -> tuple[dict[str, Any], Any, dict[str, str]]:
    """The rule on KMS ``call``, its pattern as deployed, and each lake key's ARN by logical id."""
    rule = _rule(template, "aws.kms", call)
    resolver, stack = Resolver(sandbox.all_templates()), sandbox.lake.foundation.stack_name
    arns = {
        key: str(resolver.resolve(stack, {"Fn::GetAtt": [key, "Arn"]}))
        for key in template.find_resources("AWS::KMS::Key")
    }
    return rule, sandbox.event_pattern(sandbox.lake.foundation, rule["EventPattern"]), arns


def test_a_lake_keys_policy_replaced_or_rotation_off_outside_a_deployment_alerts(
    sandbox: Synth, template: Template
) -> None:
    # a key policy is where another principal or account is let decrypt a zone; the app declares
    # every statement, so only the CDK execution role should replace it
    rule, pattern, arns = _key_rule(sandbox, template, "PutKeyPolicy")
    keys = template.find_resources("AWS::KMS::Key")
    deployment = assumed_role(f"cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}")
    for key in keys:
        arn = arns[key]
        for call, named in (("PutKeyPolicy", key_id(key)), ("DisableKeyRotation", arn)):
            assert pattern.matches_event(_kms_call(call, named, userIdentity=assumed_role("admin")))
            assert not pattern.matches_event(_kms_call(call, named, userIdentity=deployment))
    # another key, or a refused call: not
    admin = assumed_role("admin")
    assert not pattern.matches_event(_kms_call("PutKeyPolicy", "id-someone-elses", userIdentity=admin))
    raw_id = key_id(next(iter(keys)))
    assert not pattern.matches_event(_kms_call("PutKeyPolicy", raw_id, userIdentity=admin, errorCode="X"))
    target = rule["Targets"][0]["InputTransformer"]
    assert target["InputTemplate"] == (
        '"Lake KMS key <name>: <call> by <caller> at <time>, outside a deployment"'
    )


def test_a_grant_on_a_lake_key_made_by_a_person_outside_a_deployment_alerts(
    sandbox: Synth, template: Template
) -> None:
    # a grant lets its grantee, another account's principal too, use the key without any change
    # to the key's policy
    rule, pattern, arns = _key_rule(sandbox, template, "CreateGrant")
    keys = template.find_resources("AWS::KMS::Key")
    deployment = assumed_role(f"cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}")
    kim = {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/kim"}
    for key in keys:
        arn = arns[key]
        for named, identity in ((key_id(key), assumed_role("admin")), (arn, kim)):
            assert pattern.matches_event(_kms_call("CreateGrant", named, userIdentity=identity))
        # by a deployment, or by a service on its caller's behalf (Firehose, Redshift): not
        assert not pattern.matches_event(_kms_call("CreateGrant", arn, userIdentity=deployment))
        by_service = {**assumed_role("admin"), "invokedBy": "firehose.amazonaws.com"}
        assert not pattern.matches_event(_kms_call("CreateGrant", arn, userIdentity=by_service))
    # another key, or a refused call: not
    admin = assumed_role("admin")
    assert not pattern.matches_event(_kms_call("CreateGrant", "id-someone-elses", userIdentity=admin))
    raw_id = key_id(next(iter(keys)))
    assert not pattern.matches_event(
        _kms_call("CreateGrant", raw_id, userIdentity=admin, errorCode="AccessDeniedException")
    )
    assert "grant created by a person" in rule["Description"]


def test_the_lake_trail_stopped_or_deleted_alerts(sandbox: Synth, template: Template) -> None:
    rule = _rule(template, "aws.cloudtrail", "StopLogging")
    pattern = sandbox.event_pattern(sandbox.lake.foundation, rule["EventPattern"])
    (trail,) = template.find_resources("AWS::CloudTrail::Trail").values()
    name = trail["Properties"]["TrailName"]
    assert name == "lake-sbx-audit"
    # stopped or deleted, named by name or by ARN: published
    arn = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/{name}"
    assert pattern.matches_event(api_call_event("cloudtrail", "StopLogging", {"name": name}))
    assert pattern.matches_event(api_call_event("cloudtrail", "DeleteTrail", {"name": arn}))
    # another trail, a restart, or a refused call: not
    assert not pattern.matches_event(api_call_event("cloudtrail", "StopLogging", {"name": "org-trail"}))
    assert not pattern.matches_event(api_call_event("cloudtrail", "StartLogging", {"name": name}))
    refused = api_call_event("cloudtrail", "StopLogging", {"name": name}, errorCode="AccessDenied")
    assert not pattern.matches_event(refused)
    target = rule["Targets"][0]["InputTransformer"]
    assert target["InputTemplate"] == '"Lake audit trail <name>: <call> by <caller> at <time>"'


def test_a_trail_that_stops_delivering_alarms_through_its_hourly_check(
    sandbox: Synth, template: Template
) -> None:
    # GIVEN the check's function: the lake's trail by name, read with GetTrailStatus and
    # GetEventSelectors on it alone, and the bucket prefixes whose data events it must log
    (function,) = [
        f["Properties"]
        for lid, f in template.find_resources("AWS::Lambda::Function").items()
        if lid.startswith("AuditCheckFunction")
    ]
    assert function["Handler"] == "trail_check.lambda_handler"
    environment = function["Environment"]["Variables"]
    assert environment["TRAIL_NAME"] == "lake-sbx-audit"
    trail = _logical_id(template, "AWS::CloudTrail::Trail", "AuditTrail")
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for lid, p in template.find_resources("AWS::IAM::ManagedPolicy").items()
        if lid.startswith("AuditCheckPolicy")
    ]
    assert [st["Action"] for st in policy] == [
        ["logs:CreateLogStream", "logs:PutLogEvents"],
        ["cloudtrail:GetEventSelectors", "cloudtrail:GetTrailStatus"],
    ]
    assert policy[1]["Resource"] == {"Fn::GetAtt": [trail, "Arn"]}
    resolver, stack = Resolver(sandbox.all_templates()), sandbox.lake.foundation.stack_name
    declared = {
        s["ReadWriteType"]: [str(resolver.resolve(stack, v)) for v in s["DataResources"][0]["Values"]]
        for s in template.find_resources("AWS::CloudTrail::Trail")[trail]["Properties"]["EventSelectors"]
        if "DataResources" in s
    }
    assert str(resolver.resolve(stack, environment["DATA_EVENT_PREFIXES"])).split(",") == declared["All"]
    assert [d.split(":::")[1].split("-")[2] for d in declared["All"]] == ["raw", "curated", "analytics"]
    # and the bucket whose writes alone it logs, the CDK assets bucket
    assert (
        str(resolver.resolve(stack, environment["WRITE_EVENT_PREFIXES"])).split(",") == declared["WriteOnly"]
    )
    assert declared["WriteOnly"] == [f"arn:aws:s3:::cdk-hnb659fds-assets-{ACCOUNT}-{REGION}/"]
    # AND it runs every hour, a schedule of the lake's group (whose dropped starts alarm), created
    # after that group
    (lid,) = [
        lid for lid in template.find_resources("AWS::Scheduler::Schedule") if lid.startswith("AuditCheck")
    ]
    schedule = template.find_resources("AWS::Scheduler::Schedule")[lid]
    assert (schedule["Properties"]["ScheduleExpression"], schedule["Properties"]["GroupName"]) == (
        "rate(1 hour)",
        "lake-sbx",
    )
    assert schedule["DependsOn"] == [_logical_id(template, "AWS::Scheduler::ScheduleGroup", "Schedules")]
    function_id = _logical_id(template, "AWS::Lambda::Function", "AuditCheckFunction")
    assert schedule["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    # THEN the alarm reads what the function publishes (namespace, name, every dimension), and
    # fires after two hours without a passed check, a check that did not run included
    (alarm,) = [
        a["Properties"]
        for a in template.find_resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "TrailChecksPassed"
    ]
    assert alarm["Namespace"] == environment["POWERTOOLS_METRICS_NAMESPACE"]
    assert alarm["Dimensions"] == [
        {"Name": "service", "Value": environment["POWERTOOLS_SERVICE_NAME"]},
        {"Name": "trail", "Value": "lake-sbx-audit"},
    ]
    assert (alarm["Period"], alarm["Statistic"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (
        3600,
        "Sum",
        2,
        2,
    )
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["TreatMissingData"]) == (
        "LessThanThreshold",
        1,
        "breaching",
    )
    topic = [{"Ref": _logical_id(template, "AWS::SNS::Topic", "AlertsTopic")}]
    assert alarm["AlarmActions"] == alarm["OKActions"] == topic


def test_a_stage_without_the_trail_has_no_trail_check() -> None:
    stage = get_stage("sandbox").with_features(cloudtrail=False)
    template = Template.from_stack(FoundationStack(cdk.App(context=app_context()), "NoTrail", stage=stage))
    assert template.find_resources("AWS::CloudTrail::Trail") == {}
    assert not [
        lid for lid in template.find_resources("AWS::Lambda::Function") if lid.startswith("AuditCheck")
    ]
    assert "TrailChecksPassed" not in json.dumps(template.to_json())
    assert template.find_resources("AWS::Logs::MetricFilter") == {}  # no trail log group to count IAM in


def test_the_iam_change_pattern_fits_cloudwatch_logs_for_the_longest_prefix_and_region() -> None:
    # stage prefixes have at most 20 characters (config/stages.py); the deployer's ARN holds the
    # partition, the account and the region
    deployer = f"arn:aws-us-gov:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-ap-southeast-5"
    assert len(iam_change_pattern("a" * 20, deployer)) <= MAX_FILTER_PATTERN


def test_an_iam_change_to_a_lake_role_or_policy_outside_a_deployment_alarms(
    sandbox: Synth, template: Template
) -> None:
    # GIVEN the metric filter on the trail's log group, as a deployment fills it in
    (props,) = [f["Properties"] for f in template.find_resources("AWS::Logs::MetricFilter").values()]
    trail_logs = _logical_id(template, "AWS::Logs::LogGroup", "AuditLogs")
    assert props["LogGroupName"] == {"Ref": trail_logs}
    pattern = sandbox.resolved(sandbox.lake.foundation, props["FilterPattern"])
    assert len(pattern) <= MAX_FILTER_PATTERN
    deployment = assumed_role(f"cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}")
    lake_policy = f"arn:aws:iam::{ACCOUNT}:policy/lake-sbx-processing-OrdersJobPolicy5C929DD5-AbCd"
    admin_policy = "arn:aws:iam::aws:policy/AdministratorAccess"

    def call(name: str, identity: dict[str, Any] | None = None, **parameters: str) -> dict[str, Any]:
        detail = api_call_event("iam", name, parameters, userIdentity=identity or assumed_role("admin"))[
            "detail"
        ]
        return dict(detail)

    # THEN a person widening a lake role, its trust or a lake policy, or handing a lake policy to
    # someone else, is counted; so is an IAM user (no session issuer) doing the same
    for changed in (
        call("AttachRolePolicy", roleName="lake-sbx-data-analyst", policyArn=admin_policy),
        call("PutRolePolicy", roleName="lake-sbx-processing-OrdersStateMachineRoleE3B6-x1", policyName="p"),
        call("UpdateAssumeRolePolicy", roleName="lake-sbx-orders-job"),
        call("DeleteRolePermissionsBoundary", roleName="lake-sbx-data-engineer"),
        call("TagRole", roleName="lake-sbx-data-analyst"),  # RedshiftDbRoles=pii_reader, say
        call("CreatePolicyVersion", policyArn=lake_policy),
        call("AttachUserPolicy", userName="kim", policyArn=lake_policy),
        call("AttachRolePolicy", roleName="other-team-role", policyArn=lake_policy),
        call(
            "AttachRolePolicy",
            {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/kim"},
            roleName="lake-sbx-orders-job",
            policyArn=admin_policy,
        ),
    ):
        assert matches(pattern, changed), changed
    # AND a deployment, another stage's or team's role, a read, or a refused call is not
    refused = call("PutRolePolicy", roleName="lake-sbx-orders-job", policyName="p")
    refused["errorCode"] = "AccessDenied"
    for unchanged in (
        call("AttachRolePolicy", deployment, roleName="lake-sbx-orders-job", policyArn=lake_policy),
        call("CreatePolicyVersion", deployment, policyArn=lake_policy),
        call("AttachRolePolicy", roleName="lake-prd-orders-job", policyArn=admin_policy),
        call("AttachRolePolicy", roleName="other-lake-sbx-role", policyArn=admin_policy),
        call("GetRolePolicy", roleName="lake-sbx-orders-job", policyName="p"),
        refused,
    ):
        assert not matches(pattern, unchanged), unchanged
    # AND the count alarms the alert topic within five minutes, and a saved query lists the calls
    (alarm,) = [
        a["Properties"]
        for a in template.find_resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "LakeIamChanges"
    ]
    (transformation,) = props["MetricTransformations"]
    assert alarm["Namespace"] == transformation["MetricNamespace"] and transformation["MetricValue"] == "1"
    assert (alarm["Period"], alarm["Statistic"], alarm["Threshold"], alarm["TreatMissingData"]) == (
        300,
        "Sum",
        0,
        "notBreaching",
    )
    topic = [{"Ref": _logical_id(template, "AWS::SNS::Topic", "AlertsTopic")}]
    assert alarm["AlarmActions"] == topic
    (query,) = template.find_resources("AWS::Logs::QueryDefinition").values()
    assert query["Properties"]["Name"] in alarm["AlarmDescription"]
    assert query["Properties"]["LogGroupNames"] == [{"Ref": trail_logs}]


@pytest.mark.parametrize(
    ("call", "parameter", "summary"),
    [
        ("UpdateTrail", "name", "bucket, key, log file validation, regions or CloudWatch Logs changed"),
        ("PutEventSelectors", "trailName", "event selectors changed"),
    ],
)
def test_the_lake_trail_changed_outside_a_deployment_alerts(
    sandbox: Synth, template: Template, call: str, parameter: str, summary: str
) -> None:
    # a trail whose data events were dropped (or whose bucket or key changed) still logs and
    # delivers: the hourly check passes while the audit of reads has ended
    rule = _rule(template, "aws.cloudtrail", call)
    pattern = sandbox.event_pattern(sandbox.lake.foundation, rule["EventPattern"])
    name = "lake-sbx-audit"
    arn = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/{name}"
    deployment = assumed_role(f"cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}")

    def changed(trail: str, identity: dict[str, Any], **detail: Any) -> dict[str, Any]:
        return api_call_event("cloudtrail", call, {parameter: trail}, userIdentity=identity, **detail)

    # by a person, the trail named by name or ARN: published
    assert pattern.matches_event(changed(name, assumed_role("admin")))
    assert pattern.matches_event(changed(arn, {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/kim"}))
    # by a deployment, on another trail, or refused: not
    assert not pattern.matches_event(changed(name, deployment))
    assert not pattern.matches_event(changed("org-trail", assumed_role("admin")))
    assert not pattern.matches_event(changed(name, assumed_role("admin"), errorCode="AccessDenied"))
    target = rule["Targets"][0]["InputTransformer"]
    assert target["InputTemplate"] == (
        '"Lake audit trail <name>: <call> by <caller> at <time>, outside a deployment"'
    )
    assert target["InputPathsMap"]["name"] == f"$.detail.requestParameters.{parameter}"
    assert summary in rule["Description"]


@pytest.mark.parametrize(
    "change",
    [
        ("glue", "UpdateJob", "jobName", "lake-sbx-orders-raw-to-curated"),
        ("glue", "DeleteJob", "jobName", "lake-sbx-orders-raw-to-curated"),
        ("glue", "UpdateCrawler", "name", "lake-sbx-orders-curated"),
        ("glue", "UpdateDataQualityRuleset", "name", "lake-sbx-orders-curated"),
        ("states", "UpdateStateMachine", "stateMachineArn", "lake-sbx-orders-pipeline"),
        ("states", "DeleteStateMachine", "stateMachineArn", "lake-sbx-daily-revenue-by-country-report"),
        ("athena", "UpdateWorkGroup", "workGroup", "lake-sbx-analysts"),
        ("athena", "DeleteWorkGroup", "workGroup", "lake-sbx-regional-analysts"),
    ],
)
def test_a_pipeline_or_report_changed_outside_a_deployment_alerts(
    sandbox: Synth, template: Template, change: tuple[str, str, str, str]
) -> None:
    service, call, parameter, named = change  # the call, the request field naming what it changes
    assert f'"{named}"' in json.dumps(sandbox.all_templates())  # a resource of this app
    # a job's script runs as a role that reads raw PII; a weakened ruleset passes bad data; a
    # workgroup no longer enforced lets a query write its results unencrypted. One rule per kind
    # for the whole stage, by its name prefix, whatever its number of datasets
    patterns = [
        sandbox.event_pattern(sandbox.lake.foundation, r["Properties"]["EventPattern"])
        for r in template.find_resources("AWS::Events::Rule").values()
        if r["Properties"]["EventPattern"]["source"] in (["aws.glue"], ["aws.states"], ["aws.athena"])
    ]
    assert len(patterns) == 4
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:"

    def changed(resource: str, identity: dict[str, Any], **detail: Any) -> int:
        value = arn + resource if service == "states" else resource
        event = api_call_event(service, call, {parameter: value}, userIdentity=identity, **detail)
        return sum(p.matches_event(event) for p in patterns)

    # by a person: one rule publishes it; by a deployment, another stage's, or refused: none
    assert changed(named, assumed_role("admin")) == 1
    assert changed(named, assumed_role(f"cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}")) == 0
    assert changed(named.replace("lake-sbx-", "lake-prd-"), assumed_role("admin")) == 0
    assert changed(named, assumed_role("admin"), errorCode="AccessDenied") == 0


@pytest.mark.parametrize(
    ("service", "call", "named"),
    [
        ("firehose", "UpdateDestination", "lake-sbx-orders"),
        ("firehose", "StopDeliveryStreamEncryption", "lake-sbx-orders"),
        # CloudFormation names the functions after their stack; Lambda's event names carry the
        # API's version, and a call may name the function by ARN
        ("lambda", "UpdateFunctionCode20150331v2", "lake-sbx-ingestion-OrdersTransform0790009F-x7Yz"),
        (
            "lambda",
            "UpdateFunctionConfiguration20150331v2",
            "lake-sbx-ingestion-OrdersTransform0790009F-x7Yz",
        ),
        (
            "lambda",
            "AddPermission20150331v2",
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:lake-sbx-foundation-AuditCheck-1",
        ),
        ("lambda", "DeleteFunction20150331", "lake-sbx-governance-MacieResultsRepositoryFunction-2"),
    ],
)
def test_what_reaches_the_raw_zone_changed_outside_a_deployment_alerts(
    sandbox: Synth, template: Template, service: str, call: str, named: str
) -> None:
    # a stream sent to another bucket, a transform whose code now copies every record elsewhere
    patterns = [
        sandbox.event_pattern(sandbox.lake.foundation, r["Properties"]["EventPattern"])
        for r in template.find_resources("AWS::Events::Rule").values()
        if r["Properties"]["EventPattern"]["source"] == [f"aws.{service}"]
    ]
    assert len(patterns) == 1
    parameter = {"firehose": "deliveryStreamName", "lambda": "functionName"}[service]

    def changed(name: str, identity: dict[str, Any], event_name: str = call, **detail: Any) -> bool:
        event = api_call_event(service, event_name, {parameter: name}, userIdentity=identity, **detail)
        return patterns[0].matches_event(event)

    assert changed(named, assumed_role("admin"))
    assert not changed(named, assumed_role(f"cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}"))
    assert not changed(named.replace("lake-sbx-", "lake-prd-"), assumed_role("admin"))
    assert not changed(named, assumed_role("admin"), errorCode="AccessDenied")
    assert not changed(named, assumed_role("admin"), event_name="ListTagsForResource")


@pytest.mark.parametrize(
    ("call", "parameter", "named"),
    [
        ("StopStreamEncryption", "streamName", "lake-sbx-page-views-source"),
        (
            "StopStreamEncryption",
            "streamARN",
            f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/lake-sbx-page-views-source",
        ),
        ("DeleteStream", "streamName", "lake-sbx-page-views-source"),
        (
            "PutResourcePolicy",
            "resourceARN",
            f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/lake-sbx-page-views-source",
        ),
    ],
)
def test_a_source_stream_changed_outside_a_deployment_alerts(
    sandbox: Synth, template: Template, call: str, parameter: str, named: str
) -> None:
    # a Kinesis-source dataset's stream decrypted, deleted, or opened to another account; the
    # rule is the stage's, by name prefix, so it stands before any such dataset is added
    (rule,) = [
        r["Properties"]
        for r in template.find_resources("AWS::Events::Rule").values()
        if r["Properties"]["EventPattern"]["source"] == ["aws.kinesis"]
    ]
    pattern = sandbox.event_pattern(sandbox.lake.foundation, rule["EventPattern"])

    def changed(name: str, identity: dict[str, Any], **detail: Any) -> bool:
        return pattern.matches_event(
            api_call_event("kinesis", call, {parameter: name}, userIdentity=identity, **detail)
        )

    assert changed(named, assumed_role("admin"))
    assert not changed(named, assumed_role(f"cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}"))
    assert not changed(named.replace("lake-sbx-", "lake-prd-"), assumed_role("admin"))
    assert not changed(named, assumed_role("admin"), errorCode="ResourceNotFoundException")


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        ("UpdateWorkgroup", "workgroupName"),
        ("DeleteWorkgroup", "workgroupName"),
        ("UpdateNamespace", "namespaceName"),
        ("DeleteNamespace", "namespaceName"),
    ],
)
def test_the_warehouse_changed_outside_a_deployment_alerts(
    template: Template, call: str, parameter: str
) -> None:
    # a workgroup made publicly accessible, a namespace's key or roles changed: with Redshift on
    prod = synthesize("prod")
    assert '"lake-prd-warehouse"' in json.dumps(prod.all_templates())
    patterns = [
        prod.event_pattern(prod.lake.foundation, r["Properties"]["EventPattern"])
        for r in prod.template(prod.lake.foundation).find_resources("AWS::Events::Rule").values()
        if r["Properties"]["EventPattern"]["source"] == ["aws.redshift-serverless"]
    ]
    assert len(patterns) == 2

    def changed(name: str, identity: dict[str, Any], **detail: Any) -> int:
        event = api_call_event(
            "redshift-serverless", call, {parameter: name}, userIdentity=identity, **detail
        )
        return sum(p.matches_event(event) for p in patterns)

    assert changed("lake-prd-warehouse", assumed_role("admin")) == 1
    assert changed("lake-prd-warehouse", assumed_role(f"cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}")) == 0
    assert changed("other-team-warehouse", assumed_role("admin")) == 0
    assert changed("lake-prd-warehouse", assumed_role("admin"), errorCode="ValidationException") == 0
    # AND a stage without Redshift has no such rule
    sources = [
        r["Properties"]["EventPattern"]["source"]
        for r in template.find_resources("AWS::Events::Rule").values()
    ]
    assert ["aws.redshift-serverless"] not in sources


def _lf_call(name: str, identity: dict[str, Any], **detail: Any) -> dict[str, Any]:
    return api_call_event("lakeformation", name, {"resource": {}}, userIdentity=identity, **detail)


def test_a_lake_formation_change_outside_a_deployment_alerts(sandbox: Synth, template: Template) -> None:
    rule = _rule(template, "aws.lakeformation")
    pattern = sandbox.event_pattern(sandbox.lake.foundation, rule["EventPattern"])
    deployment = assumed_role(f"cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}")
    # a grant, an admin change or a filter change by a person's role, an IAM user or the root
    # user: published, whichever change it is
    for identity in (
        assumed_role("lake-sbx-data-engineer"),
        {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/kim"},
        {"type": "Root", "arn": f"arn:aws:iam::{ACCOUNT}:root"},
    ):
        assert pattern.matches_event(_lf_call("GrantPermissions", identity))
    for change in CHANGES:
        assert pattern.matches_event(_lf_call(change, assumed_role("admin")))
    # the same changes made by a deployment (the CDK execution role), a refused call, or a read
    # (Lake Formation vending credentials to a query): not
    assert not pattern.matches_event(_lf_call("GrantPermissions", deployment))
    assert not pattern.matches_event(_lf_call("PutDataLakeSettings", deployment))
    assert not pattern.matches_event(
        _lf_call("GrantPermissions", assumed_role("admin"), errorCode="AccessDenied")
    )
    assert not pattern.matches_event(_lf_call("GetDataAccess", assumed_role("lake-sbx-data-analyst")))
    # the notice names the call, the caller and the time
    target = rule["Targets"][0]["InputTransformer"]
    assert target["InputTemplate"] == '"Lake Formation: <call> by <caller> at <time>, outside a deployment"'
    assert target["InputPathsMap"]["caller"] == "$.detail.userIdentity.arn"
    # and the audit query lists the same changes
    listed = re.search(
        r"eventname IN \((.*?)\)", (SQL_DIR / "audit" / "lake_formation_changes.sql").read_text(), re.S
    )
    assert listed is not None
    assert re.findall(r"'(\w+)'", listed.group(1)) == list(CHANGES)


def test_a_lake_buckets_guard_changed_outside_a_deployment_alerts(sandbox: Synth, template: Template) -> None:
    rule = _rule(template, "aws.s3", "PutBucketPolicy")
    pattern = sandbox.event_pattern(sandbox.lake.foundation, rule["EventPattern"])
    buckets = [r["Properties"]["BucketName"] for r in template.find_resources("AWS::S3::Bucket").values()]
    resolver, stack = Resolver(sandbox.all_templates()), sandbox.lake.foundation.stack_name
    names = [resolver.resolve(stack, b) for b in buckets]
    assert len(names) == 7 and all(n.startswith("lake-sbx-") for n in names)
    deployment = assumed_role(f"cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}")

    def call(name: str, bucket: str, identity: dict[str, Any], **detail: Any) -> dict[str, Any]:
        return api_call_event(
            "s3",
            name,
            {"bucketName": bucket, "Host": f"{bucket}.s3.amazonaws.com"},
            userIdentity=identity,
            **detail,
        )

    # a policy, public access block, encryption, versioning, lifecycle, replication or logging change of any
    # lake bucket by a person: published
    for bucket in names:
        assert pattern.matches_event(call("PutBucketPolicy", bucket, assumed_role("admin")))
    for change in BUCKET_GUARDS:
        assert pattern.matches_event(
            call(change, names[0], {"type": "Root", "arn": f"arn:aws:iam::{ACCOUNT}:root"})
        )
    # by a deployment, on another bucket, refused, or an object call: not
    assert not pattern.matches_event(call("PutBucketPolicy", names[0], deployment))
    assert not pattern.matches_event(call("PutBucketPolicy", "someone-elses-bucket", assumed_role("admin")))
    assert not pattern.matches_event(
        call("DeleteBucketPolicy", names[0], assumed_role("admin"), errorCode="AccessDenied")
    )
    assert not pattern.matches_event(call("GetBucketPolicy", names[0], assumed_role("admin")))
    target = rule["Targets"][0]["InputTransformer"]
    assert (
        target["InputTemplate"] == '"Lake bucket <name>: <call> by <caller> at <time>, outside a deployment"'
    )
    assert target["InputPathsMap"]["name"] == "$.detail.requestParameters.bucketName"


def test_an_object_written_to_the_cdk_assets_bucket_outside_a_deployment_alerts(
    sandbox: Synth, template: Template
) -> None:
    # Glue reads a job's script from the bootstrap's bucket at every run: an object overwritten
    # there changes the job with no call to Glue (and is what a later deployment of it deploys)
    rule = _rule(template, "aws.s3", "PutObject")
    pattern = sandbox.event_pattern(sandbox.lake.foundation, rule["EventPattern"])
    resolver, stack = Resolver(sandbox.all_templates()), sandbox.lake.foundation.stack_name
    (watched,) = resolver.resolve(stack, rule["EventPattern"]["detail"]["requestParameters"]["bucketName"])

    def placed(value: str) -> str:
        """A value of an asset manifest (``${AWS::AccountId}``...), as a deployment fills it in."""
        return str(resolver.resolve(stack, {"Fn::Sub": value}))

    # GIVEN where every stack's assets (the jobs' scripts among them) are published, and by whom
    destinations = [
        d
        for s in sandbox.lake.stacks
        for asset in json.loads((sandbox.outdir / f"{s.artifact_id}.assets.json").read_text())[
            "files"
        ].values()
        for d in asset["destinations"].values()
    ]
    follows = (
        "cdk_constructs/bootstrap.py names the bootstrap's bucket and role as the default synthesizer does"
    )
    assert {placed(d["bucketName"]) for d in destinations} == {watched}, follows
    (publisher,) = {placed(d["assumeRoleArn"]).split("/")[-1] for d in destinations}
    assert publisher == f"cdk-hnb659fds-file-publishing-role-{ACCOUNT}-{REGION}", follows
    (job,) = sandbox.template(sandbox.lake.processing).find_resources("AWS::Glue::Job").values()
    script = job["Properties"]["Command"]["ScriptLocation"]
    key = resolver.resolve(sandbox.lake.processing.stack_name, script).split(f"s3://{watched}/")[1]
    assert key in {d["objectKey"] for d in destinations}

    def call(name: str, identity: dict[str, Any], bucket: str = watched, **detail: Any) -> dict[str, Any]:
        parameters = {"bucketName": bucket, "Host": f"{bucket}.s3.amazonaws.com", "key": key}
        return api_call_event("s3", name, parameters, userIdentity=identity, **detail)

    # THEN a script overwritten, copied over or deleted by a person or an IAM user is published
    for written in ("PutObject", "CopyObject", "CompleteMultipartUpload", "DeleteObject"):
        assert pattern.matches_event(call(written, assumed_role("admin")))
    assert pattern.matches_event(
        call("PutObject", {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/kim"})
    )
    # AND a deployment publishing its assets, a read, a refused write or another bucket is not
    assert not pattern.matches_event(call("PutObject", assumed_role(publisher)))
    assert not pattern.matches_event(call("GetObject", assumed_role("admin")))
    assert not pattern.matches_event(call("PutObject", assumed_role("admin"), errorCode="AccessDenied"))
    assert not pattern.matches_event(call("PutObject", assumed_role("admin"), bucket="someone-elses-bucket"))
    target = rule["Targets"][0]["InputTransformer"]
    assert target["InputTemplate"] == (
        '"CDK assets bucket <name>: <call> of <item> by <caller> at <time>, outside a deployment"'
    )
    assert target["InputPathsMap"]["item"] == "$.detail.requestParameters.key"


def test_a_stack_without_the_default_synthesizers_bootstrap_roles_fails_synth_naming_the_fix() -> None:
    # deployments are told from other changes by the bootstrap's roles: a synthesizer without
    # them would turn every alert rule's exclusion into nothing
    stack = cdk.Stack(cdk.App(), "Legacy", synthesizer=cdk.LegacyStackSynthesizer())
    with pytest.raises(
        ValueError, match=r"stack Legacy: .*LegacyStackSynthesizer has none; use DefaultStackSynthesizer"
    ):
        execution_role_arn(stack)
    with pytest.raises(ValueError, match="LegacyStackSynthesizer"):
        assets_bucket_name(stack)


def test_sandbox_destroys_everything_and_empties_buckets(template: Template) -> None:
    for type_ in ("AWS::KMS::Key", "AWS::S3::Bucket"):
        for resource in template.find_resources(type_).values():
            assert resource["DeletionPolicy"] == "Delete"
    assert len(template.find_resources("Custom::S3AutoDeleteObjects")) == 7
    # a destroyed key can be recovered for the shortest window KMS allows, 7 days
    keys = template.find_resources("AWS::KMS::Key").values()
    assert {k["Properties"]["PendingWindowInDays"] for k in keys} == {7}


def test_prod_retains_data_and_keys_and_protects_stacks(prod_template: Template) -> None:
    for type_ in ("AWS::KMS::Key", "AWS::S3::Bucket"):
        for resource in prod_template.find_resources(type_).values():
            assert resource["DeletionPolicy"] == "Retain"
    assert prod_template.find_resources("Custom::S3AutoDeleteObjects") == {}
    # a key scheduled for deletion by hand can be recovered for the longest window, 30 days
    keys = prod_template.find_resources("AWS::KMS::Key").values()
    assert {k["Properties"]["PendingWindowInDays"] for k in keys} == {30}
    prod = synthesize("prod")
    assert all(s.termination_protection for s in prod.lake.stacks)
    assert not any(s.termination_protection for s in synthesize("sandbox").lake.stacks)


def test_the_trails_log_files_have_a_bucket_of_their_own_locked_in_prod(
    template: Template, prod_template: Template
) -> None:
    for stage_template, expire in ((template, 90), (prod_template, 365)):
        lid = _logical_id(stage_template, "AWS::S3::Bucket", "StorageAuditBucket")
        props = stage_template.find_resources("AWS::S3::Bucket")[lid]["Properties"]
        # THEN the trail writes there, not to the access logs; the bucket's own reads are
        # access-logged, and its files expire on the audit's schedule
        (trail,) = stage_template.find_resources("AWS::CloudTrail::Trail").values()
        assert trail["Properties"]["S3BucketName"] == {"Ref": lid}
        assert props["LoggingConfiguration"] == {
            "DestinationBucketName": {
                "Ref": _logical_id(stage_template, "AWS::S3::Bucket", "StorageAccessLogsBucket")
            },
            "LogFilePrefix": "Audit/",
        }
        rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
        assert rules["ExpireAuditLogs"]["ExpirationInDays"] == expire
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    # AND in prod each file is kept a year under Object Lock in governance mode; a sandbox,
    # emptied by make destroy, has no lock
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Days": 365, "Mode": "GOVERNANCE"}},
    }
    sandbox_lid = _logical_id(template, "AWS::S3::Bucket", "StorageAuditBucket")
    assert (
        "ObjectLockConfiguration" not in template.find_resources("AWS::S3::Bucket")[sandbox_lid]["Properties"]
    )


def test_only_the_lake_trail_may_deliver_to_the_audit_bucket(sandbox: Synth, template: Template) -> None:
    bucket = _logical_id(template, "AWS::S3::Bucket", "StorageAuditBucket")
    (policy_id,) = [
        lid
        for lid, policy in template.find_resources("AWS::S3::BucketPolicy").items()
        if policy["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    statements = template.find_resources("AWS::S3::BucketPolicy")[policy_id]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    by_cloudtrail = {
        s["Sid"]: s
        for s in sandbox.resolved(sandbox.lake.foundation, statements)
        if s.get("Principal") == {"Service": "cloudtrail.amazonaws.com"}
    }
    # THEN CloudTrail may check the ACL and write this account's files under cloudtrail/, both only
    # for the lake's trail (CloudTrail's guide: aws:SourceArn, the trail's home-region ARN)
    trail_arn = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/lake-sbx-audit"
    assert set(by_cloudtrail) == {"CloudTrailAclCheck", "CloudTrailWrite"}
    assert by_cloudtrail["CloudTrailAclCheck"]["Condition"] == {"StringEquals": {"aws:SourceArn": trail_arn}}
    write = by_cloudtrail["CloudTrailWrite"]
    assert write["Action"] == "s3:PutObject"
    assert (
        write["Resource"] == f"arn:aws:s3:::lake-sbx-audit-{ACCOUNT}-{REGION}/cloudtrail/AWSLogs/{ACCOUNT}/*"
    )
    assert write["Condition"] == {
        "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceArn": trail_arn}
    }
    # AND the trail is created after the policy that lets it deliver
    (trail_resource,) = template.find_resources("AWS::CloudTrail::Trail").values()
    assert policy_id in trail_resource["DependsOn"]


def test_a_lake_bucket_says_why_it_is_not_kms_encrypted_and_is_locked_only_when_retained() -> None:
    stack = cdk.Stack(cdk.App(context=app_context()), "Refused")
    with pytest.raises(ValueError, match="without encryption_key is SSE-S3; say why in sse_s3_because"):
        LakeBucket(stack, "Plain", encryption_key=None, server_access_logs_bucket=None)
    with pytest.raises(
        ValueError, match="Object Lock keeps every object for 30 days, so cdk destroy could not"
    ):
        LakeBucket(
            stack,
            "Locked",
            encryption_key=kms.Key(stack, "Key"),
            server_access_logs_bucket=None,
            locked_for=cdk.Duration.days(30),
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )


def _test_bucket(stack: cdk.Stack, construct_id: str, removal_policy: cdk.RemovalPolicy) -> LakeBucket:
    """A lake bucket with nothing but what it requires."""
    return LakeBucket(
        stack,
        construct_id,
        encryption_key=None,
        sse_s3_because="A bucket of this test alone, which holds no object and never will.",
        server_access_logs_bucket=None,
        removal_policy=removal_policy,
    )


def test_the_storage_constructs_documented_defaults() -> None:
    # GIVEN the lake's buckets with only what they require (a fork reusing the construct), and one
    # bucket given a removal policy the lake does not support
    stack = _lake_storage("Defaults")
    snapshot = _test_bucket(stack, "Snapshot", cdk.RemovalPolicy.SNAPSHOT)
    template = Template.from_stack(stack)
    buckets = template.find_resources("AWS::S3::Bucket")

    def rules(bucket: str) -> dict[str, dict[str, Any]]:
        (props,) = [b["Properties"] for lid, b in buckets.items() if lid.startswith(f"Storage{bucket}Bucket")]
        return {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}

    # THEN each default is the documented one: raw tiers after 30 and 90 days and never expires,
    # query results expire after 30 days, access logs after 365, noncurrent versions after 30
    # everywhere
    assert rules("Raw")["TierRawData"]["Transitions"] == [
        {"StorageClass": "STANDARD_IA", "TransitionInDays": 30},
        {"StorageClass": "GLACIER_IR", "TransitionInDays": 90},
    ]
    assert rules("AthenaResults")["ExpireQueryResults"]["ExpirationInDays"] == 30
    assert rules("AccessLogs")["ExpireAccessLogs"]["ExpirationInDays"] == 365
    assert rules("Audit")["ExpireAuditLogs"]["ExpirationInDays"] == 365
    assert not any("ObjectLockConfiguration" in b["Properties"] for b in buckets.values())  # no lock
    raw_expiring = [
        (r["Prefix"], r["ExpirationInDays"]) for r in rules("Raw").values() if "ExpirationInDays" in r
    ]
    assert raw_expiring == []
    assert {
        r["ExpirationInDays"]
        for r in (rules("Curated")["ExpireRunSummaries"], rules("Curated")["ExpireSparkUiLogs"])
    } == {30}
    for bucket in ("Raw", "Curated", "Analytics", "AthenaResults", "AccessLogs", "Audit"):
        common = rules(bucket)["AbortIncompleteUploadsAndExpireNoncurrent"]
        assert common["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
        assert common["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
        assert common["ExpiredObjectDeleteMarker"] is True  # a delete marker left alone goes too
    # AND each bucket's access logs go under its construct id; every bucket and its data are
    # retained, never emptied, and an unsupported removal policy is retained with a warning
    (raw,) = [b["Properties"] for lid, b in buckets.items() if lid.startswith("StorageRawBucket")]
    assert raw["LoggingConfiguration"]["LogFilePrefix"] == "Raw/"
    assert {b["DeletionPolicy"] for b in buckets.values()} == {"Retain"}
    assert template.find_resources("Custom::S3AutoDeleteObjects") == {}
    warned = Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("not supported"))
    assert [w.id for w in warned] == [f"/{snapshot.node.path}"]
    assert "SNAPSHOT is not supported for lake buckets; the bucket is retained" in str(warned[0].entry.data)


def test_the_trail_constructs_documented_defaults() -> None:
    # GIVEN a trail given only its data buckets (a fork reusing the construct), and its check
    stack = cdk.Stack(cdk.App(context=app_context()), "Defaults")
    key = kms.Key(stack, "Key")
    audit = _test_bucket(stack, "Audit", cdk.RemovalPolicy.DESTROY)
    data = s3.Bucket.from_bucket_name(stack, "Data", "t-data")
    trail = AuditTrail(
        stack,
        "Trail",
        name="t-audit",
        bucket=audit.bucket,
        key=key,
        data_buckets=[data],
        log_retention=logs.RetentionDays.ONE_WEEK,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    TrailCheck(
        stack,
        "Check",
        trail=trail,
        schedule_group="t",
        powertools_layer=lambda_.LayerVersion.from_layer_version_arn(
            stack,
            "Layer",
            f"arn:aws:lambda:{REGION}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-arm64:1",
        ),
        logs_key=key,
        log_retention=logs.RetentionDays.ONE_WEEK,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    template = Template.from_stack(stack)
    # THEN no bucket is logged for its writes alone, and the check is told of none
    (props,) = [t["Properties"] for t in template.find_resources("AWS::CloudTrail::Trail").values()]
    assert [s["ReadWriteType"] for s in props["EventSelectors"]] == ["All", "All"]
    (function,) = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "trail_check.lambda_handler"}}
    ).values()
    assert function["Properties"]["Environment"]["Variables"]["WRITE_EVENT_PREFIXES"] == ""


def test_a_log_group_glue_creates_for_the_lake_is_handed_to_the_function_that_sets_its_retention(
    sandbox: Synth, template: Template
) -> None:
    # GIVEN the rule on CloudTrail's CreateLogGroup, and the record of a group Glue created for the
    # orders job (tests/events: an encrypted group, named after the role and configuration)
    (rule_id,) = [
        lid
        for lid, r in template.find_resources("AWS::Events::Rule").items()
        if r["Properties"]["EventPattern"]["source"] == ["aws.logs"]
    ]
    rule = template.find_resources("AWS::Events::Rule")[rule_id]["Properties"]
    pattern = sandbox.event_pattern(sandbox.lake.foundation, rule["EventPattern"])
    created = json.loads((EVENTS / "cloudtrail_create_log_group.json").read_text())

    def by(role: str, group: str, **detail: Any) -> dict[str, Any]:
        event = copy.deepcopy(created)
        event["detail"]["userIdentity"] = assumed_role(role)
        event["detail"]["requestParameters"]["logGroupName"] = group
        event["detail"].update(detail)
        return dict(event)

    # THEN a job's or a crawler's group of this stage is handed over
    assert pattern.matches_event(created)
    assert pattern.matches_event(
        by("lake-sbx-orders-crawler", "/aws-glue/crawlers-role/lake-sbx-orders-crawler-lake-sbx-lake")
    )
    # AND the groups every job of the account shares, another stage's, another team's, a group
    # outside Glue's, or a refused call are not
    assert not pattern.matches_event(by("lake-sbx-orders-job", "/aws-glue/jobs/output"))
    assert not pattern.matches_event(
        by("lake-prd-orders-job", "/aws-glue/jobs-lake-prd-orders-job-lake-prd-lake/output")
    )
    assert not pattern.matches_event(
        by("other-team-job", "/aws-glue/jobs-other-team-job-lake-sbx-lake/output")
    )
    assert not pattern.matches_event(by("lake-sbx-orders-job", "/ecs/lake-sbx-orders"))
    assert not pattern.matches_event(
        by(
            "lake-sbx-orders-job",
            created["detail"]["requestParameters"]["logGroupName"],
            errorCode="AccessDenied",
        )
    )
    # AND the rule invokes the function, which it alone may, with the alerts' dead-letter queue
    (target,) = rule["Targets"]
    function_id = target["Arn"]["Fn::GetAtt"][0]
    assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0].startswith("GovernanceAlertsDlq")
    (permission,) = template.find_resources("AWS::Lambda::Permission").values()
    assert permission["Properties"]["SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}
    assert permission["Properties"]["FunctionName"] == {"Fn::GetAtt": [function_id, "Arn"]}
    # AND the function sets the stage's retention, and may set it on Glue's groups alone
    function = template.find_resources("AWS::Lambda::Function")[function_id]["Properties"]
    assert function["Environment"]["Variables"]["RETENTION_DAYS"] == str(
        get_stage("sandbox").log_retention_days
    )
    (statement,) = [
        st
        for st in policy_statements(template, "GlueLogRetentionPolicy")
        if st["Action"] == "logs:PutRetentionPolicy"
    ]
    assert sandbox.resolved(sandbox.lake.foundation, statement["Resource"]) == (
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws-glue/*"
    )
    # AND a failed call alarms to the alert topic
    (alarm,) = [
        a["Properties"]
        for a in template.find_resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "Errors"
        and a["Properties"]["Dimensions"][0]["Value"] == {"Ref": function_id}
    ]
    assert alarm["AlarmActions"] == [{"Ref": _logical_id(template, "AWS::SNS::Topic", "AlertsTopic")}]
