"""One frozen, typed configuration per stage.

``app.py`` picks a stage (``-c stage=prod`` or ``STAGE=prod make synth``); stacks and constructs
receive the values and never read context or the environment themselves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields, replace

from datalake.dataset import DATASET_TAG, MAX_STALE_HOURS, schedule_interval_minutes, schedule_problem

# Matched whole (fullmatch): `$` would let a value end in a newline.
_PREFIX_RE = re.compile(r"[a-z][a-z0-9-]{1,19}")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_ARN_RE = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:[0-9]{12}:.+")
#: A managed policy's name, after an optional path (``boundaries/corp``), and its ARN (an AWS
#: managed policy's too): the characters IAM allows in each part.
_POLICY_RE = r"(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,128}"
_BOUNDARY_NAME_RE = re.compile(_POLICY_RE, re.ASCII)
_BOUNDARY_ARN_RE = re.compile(rf"arn:aws[a-z-]*:iam::(?:[0-9]{{12}}|aws):policy/{_POLICY_RE}", re.ASCII)
#: Who may be a dataset's producer: an account (its id, or its root ARN) or a role of one (the
#: characters IAM allows in a role's path and name).
_ACCOUNT_RE = re.compile(r"[0-9]{12}")
_PRODUCER_ARN_RE = re.compile(
    r"arn:aws[a-z-]*:iam::[0-9]{12}:(?:root|role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64})", re.ASCII
)
#: Tag keys the lake sets itself: on every resource (``stacks.build_lake``), and on each dataset's.
PROJECT_TAG, STAGE_TAG = "project", "stage"
LAKE_TAG_KEYS = (PROJECT_TAG, STAGE_TAG, DATASET_TAG)
#: The most tags a stage may add: AWS resources take 50, and the lake sets up to three.
MAX_STAGE_TAGS = 47
#: What a tag's key or value may hold (the Tagging API's pattern); a key is 1 to 128 of them, a
#: value up to 256, and a key starting with ``aws:`` is AWS's.
_TAG_TEXT_RE = re.compile(r"[\w\s.:/=+\-@]*")
#: The placeholders CDK fills in a permissions boundary's name or ARN, with the stage field each
#: needs (None: the bootstrap qualifier, always known) and a value of the right form to check the
#: rest of the name with. ``${AWS::Partition}`` is not among them: CDK leaves it unfilled.
_BOUNDARY_PLACEHOLDERS = {
    "${Qualifier}": (None, "hnb659fds"),
    "${AWS::AccountId}": ("account", "123456789012"),
    "${AWS::Region}": ("region", "eu-west-1"),
}
#: Base capacities Redshift Serverless accepts (RPU): 4, then steps of 8 to 512, then of 32 to 1024
#: ("Compute capacity for Amazon Redshift Serverless").
REDSHIFT_BASE_RPUS = frozenset([4, *range(8, 513, 8), *range(544, 1025, 32)])
#: What Redshift does when a usage limit is used up (its BreachAction); the custom resource that
#: sets the limit accepts the same.
REDSHIFT_USAGE_LIMIT_ACTIONS = ("log", "emit-metric", "deactivate")
#: How often the Macie job runs; the custom resource that creates the job accepts the same.
MACIE_JOB_FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY")
#: The smallest per-query cutoff Athena takes, in bytes: ``minimum`` of ``BytesScannedCutoffPerQuery``
#: in CloudFormation's ``AWS::Athena::WorkGroup`` schema (10 MB, not 10 MiB).
ATHENA_MIN_CUTOFF_BYTES = 10_000_000
#: Retention periods CloudWatch Logs accepts (days).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


def _one_of(choices: tuple[str, ...]) -> str:
    """``a, b or c``."""
    return f"{', '.join(choices[:-1])} or {choices[-1]}"


@dataclass(frozen=True)
class Features:
    """Components that a stage switches on or off. Later stacks read these, constructs do not."""

    #: Govern the catalog with Lake Formation (off: IAM-only access, the lake still works).
    lake_formation: bool = True
    #: Create a Macie session, custom identifiers and a classification job.
    macie: bool = True
    #: Reuse a Macie session already enabled in the account instead of creating one.
    macie_reuse_session: bool = False
    #: A CloudTrail trail with S3 data events on the lake buckets.
    cloudtrail: bool = True
    #: Redshift Serverless with Spectrum over the curated zone.
    redshift: bool = False
    #: A Spark-enabled Athena workgroup whose notebooks the data engineer opens; its sessions read
    #: the curated zone whole, PII included (its engine does not support Lake Formation).
    athena_spark: bool = False
    #: QuickSight data source, dataset and dashboard; needs a principal ARN (README: prerequisites).
    quicksight_principal_arn: str | None = None


@dataclass(frozen=True)
class Lifecycle:
    """Object lifecycle of the zone buckets (days)."""

    raw_infrequent_access_after: int = 30
    raw_glacier_ir_after: int = 90
    noncurrent_versions_expire_after: int = 30
    athena_results_expire_after: int = 30
    access_logs_expire_after: int = 365
    #: The audit trail's log files (the ``<prefix>-audit-...`` bucket) expire after this.
    audit_logs_expire_after: int = 365
    #: Keep the trail's log files under S3 Object Lock (governance mode) this long; 0: no lock.
    #: Only a retained bucket can be locked: ``cdk destroy`` could not empty a locked one.
    audit_logs_locked_for: int = 0
    #: The transform's rejections (``<dataset>_rejected/`` of the raw zone: the records as sent,
    #: PII whole) expire after this: long enough to fix a contract and replay them, no longer.
    rejected_expire_after: int = 365


def _tag_problems(tags: Mapping[str, str]) -> list[str]:
    """What is wrong with a stage's ``tags``, each with the fix."""
    if not isinstance(tags, Mapping):
        return [f"tags={tags!r}: use a dict of tag keys to values, e.g. {{'cost-center': '1234'}}"]
    problems = []
    if len(tags) > MAX_STAGE_TAGS:
        problems.append(
            f"tags: {len(tags)} tags; a resource takes 50, the lake sets 3: use {MAX_STAGE_TAGS} at most"
        )
    for key, value in tags.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or not _TAG_TEXT_RE.fullmatch(key):
            problems.append(f"tags: key {key!r}: use 1 to 128 letters, digits, spaces or _ . : / = + - @")
        elif key.lower().startswith("aws:"):
            problems.append(f"tags: key {key!r}: the aws: prefix is AWS's own; use another")
        elif key in LAKE_TAG_KEYS:
            problems.append(f"tags: key {key!r}: the lake sets it itself; use another key")
        if not isinstance(value, str) or len(value) > 256 or not _TAG_TEXT_RE.fullmatch(value):
            problems.append(
                f"tags: value {value!r} of {key!r}: use up to 256 letters, digits, spaces or _ . : / = + - @"
            )
    return problems


#: The longest a role's trust policy may be (IAM's quotas page: characters without white space).
MAX_TRUST_POLICY = 2048


def producer_trust_size(principals: Collection[str]) -> int:
    """How long a producer role's trust policy is, as IAM counts it, for ``principals``: one
    statement naming them all (CDK merges the statements, ``@aws-cdk/aws-iam:minimizePolicies``),
    an account's root ARN in the longest partition name."""
    arns = [f"arn:aws-us-gov:iam::{p}:root" if p.isdigit() else p for p in principals]
    statement = {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"AWS": arns}}
    return len(json.dumps({"Statement": [statement], "Version": "2012-10-17"}, separators=(",", ":")))


def _producer_problems(producers: Mapping[str, tuple[str, ...]]) -> list[str]:
    """What is wrong with a stage's ``producers``, each with the fix (the datasets' names are
    checked against the dataset files by :func:`check_producers`)."""
    example = "{'orders': ('arn:aws:iam::111122223333:role/shop-backend',)}"
    if not isinstance(producers, Mapping):
        return [f"producers={producers!r}: use a dict of dataset names to principals, e.g. {example}"]
    problems = []
    for dataset, principals in producers.items():
        if isinstance(principals, str) or not isinstance(principals, (tuple, list)) or not principals:
            problems.append(
                f"producers[{dataset!r}]={principals!r}: use a tuple of one or more principals, e.g. "
                f"{example}; leave the dataset out for principals of the stage's own account"
            )
            continue
        malformed = [
            p
            for p in principals
            if not (isinstance(p, str) and (_ACCOUNT_RE.fullmatch(p) or _PRODUCER_ARN_RE.fullmatch(p)))
        ]
        problems += [
            f"producers[{dataset!r}]: {principal!r}: use an account id (12 digits), an account's "
            "root ARN (arn:aws:iam::111122223333:root) or a role's ARN "
            "(arn:aws:iam::111122223333:role/shop-backend); a user's long-lived keys should not "
            "send to the lake: give the producer a role"
            for principal in malformed
        ]
        if not malformed and (size := producer_trust_size(principals)) > MAX_TRUST_POLICY:
            problems.append(
                f"producers[{dataset!r}]: {len(principals)} principals make a trust policy of {size:,} "
                f"characters, more than the {MAX_TRUST_POLICY:,} IAM takes: name fewer (an account id "
                "trusts the roles that account's own IAM lets assume it)"
            )
    return problems


def check_producers(stage: StageConfig, dataset_names: Collection[str]) -> None:
    """Raise when ``stage.producers`` names a dataset that no dataset file declares."""
    unknown = sorted(set(stage.producers) - set(dataset_names))
    if unknown:
        raise ValueError(
            f"Invalid stage configuration in config/stages.py stage {stage.name!r}:\n  - producers: "
            f"no dataset file declares {', '.join(map(repr, unknown))}; use the name of one of "
            f"{', '.join(sorted(dataset_names))}, or remove the entry"
        )


def _boundary_problem(stage: StageConfig) -> str | None:
    """What is wrong with ``stage.permissions_boundary``, if anything, with the fix."""
    boundary = stage.permissions_boundary
    if boundary is None:
        return None
    if not isinstance(boundary, str):
        return f"permissions_boundary={boundary!r}: use a policy's name or ARN, or None"
    checked = boundary
    for placeholder, (needs, example) in _BOUNDARY_PLACEHOLDERS.items():
        if placeholder not in checked:
            continue
        if needs is not None and getattr(stage, needs) is None:
            return (
                f"permissions_boundary={boundary!r}: CDK fills {placeholder} from the stage's {needs}, "
                f"which is None; set {needs}=..., or write the value in the name"
            )
        checked = checked.replace(placeholder, example)
    pattern = _BOUNDARY_ARN_RE if checked.startswith("arn:") else _BOUNDARY_NAME_RE
    if pattern.fullmatch(checked):
        return None
    return (
        f"permissions_boundary={boundary!r}: use the name of a managed policy of the stage's account "
        "('corp-boundary', with its path if it has one: 'boundaries/corp'), its ARN "
        "('arn:aws:iam::123456789012:policy/corp-boundary'), or None; of the placeholders, "
        f"{', '.join(_BOUNDARY_PLACEHOLDERS)} are filled in"
    )


@dataclass(frozen=True)
class StageConfig:
    name: str
    #: Prefix of every physical name, alias and tag value: short, lower-case.
    prefix: str
    #: Deploy to this account/region; None keeps the stacks environment-agnostic.
    account: str | None = None
    region: str | None = None
    #: Sandbox: ``cdk destroy`` removes everything, buckets emptied. Prod: data and keys retained.
    destroy_on_removal: bool = False
    termination_protection: bool = True
    log_retention_days: int = 365
    #: Alerts go to this address (SNS e-mail subscription); None: topic without subscription.
    alarm_email: str | None = None
    #: Notices of pipeline runs that succeeded (days rebuilt, counts, data-quality score) go to
    #: this address, apart from the alerts: an hourly pipeline sends one an hour. None: topic
    #: without subscription.
    notice_email: str | None = None
    #: A monthly cost budget (AWS Budgets, US dollars) of the whole account: the alert topic hears
    #: when the month's spend passes 80 % and 100 % of it, and when AWS forecasts that it will pass
    #: 100 %. Credits and refunds are left out, so that promotional credits do not hide what the
    #: lake spends. Give it to one stage per account (two would count the same spend); None: no
    #: budget (an organization that budgets from its management account). ``make cost`` prints
    #: the stage's idle cost beside it.
    monthly_budget_usd: int | None = 100
    #: Extra Lake Formation admins (IAM role or user ARNs), appended to the existing ones.
    lake_admin_arns: tuple[str, ...] = ()
    #: The permissions boundary of every IAM role the stage creates, CDK's own function roles
    #: included: the name of a managed policy of the stage's account (with its path, if it has
    #: one: ``boundaries/corp``) or a policy's ARN. Set it where the account refuses a role
    #: without that boundary, as the CDK bootstrap's example boundary does
    #: (``cdk bootstrap --example-permissions-boundary``, a policy named
    #: ``cdk-${Qualifier}-permissions-boundary-${AWS::AccountId}-${AWS::Region}``).
    #: ``${Qualifier}`` is filled with the bootstrap qualifier; ``${AWS::AccountId}`` and
    #: ``${AWS::Region}`` need the stage's ``account`` and ``region``. None: no boundary.
    permissions_boundary: str | None = None
    #: Tags for every resource of the stage besides the lake's own (``project``, ``stage``, and
    #: ``dataset`` on each dataset's resources): what the organization's tag policy asks for, or
    #: a cost centre to group the bill by (activate them as cost allocation tags).
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Who may send each dataset's records: by dataset name, the principals its producer role
    #: (``<prefix>-<dataset>-producer``, which may put records into the dataset's stream and
    #: nothing else) trusts: account ids, accounts' root ARNs or role ARNs, of this account or
    #: another, e.g. ``{"orders": ("arn:aws:iam::111122223333:role/shop-backend",)}``. Each must
    #: also be allowed ``sts:AssumeRole`` on the role by its own account's IAM. As many as fit the
    #: 2,048 characters of a trust policy (about 40 role ARNs; synth counts). A dataset left out:
    #: principals of the stage's account that their IAM policies allow to assume it.
    producers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Per-query bytes-scanned cutoff of the analysts' Athena workgroup.
    athena_bytes_scanned_cutoff: int = 10 * 1024**3
    #: Redshift Serverless base capacity (RPU) and monthly usage limit (RPU-hours).
    redshift_base_rpu: int = 8
    redshift_usage_limit_rpu_hours: int = 200
    #: What happens when the monthly RPU-hours are used up: log, emit-metric or deactivate.
    redshift_usage_limit_action: str = "emit-metric"
    #: When the warehouse fills again what it keeps of the curated data (the materialized view
    #: ``public.daily_revenue``, the table ``public.customer_contacts``), UTC: each refresh wakes
    #: the warehouse for at least a minute of its base capacity (``make cost``).
    redshift_refresh_schedule: str = "cron(0 5 * * ? *)"
    #: Hours without a refresh that finished after which the warehouse alarms (a schedule disabled
    #: or deleted by hand, refreshes that fail); 49 suits the daily default: two days and an hour.
    #: 0: no such alarm.
    redshift_refresh_stale_hours: int = 49
    #: Prefix of the Lake Formation tag keys (``zone``, ``classification``), for accounts where
    #: those keys already exist with other values; e.g. ``"lake_"``.
    lf_tag_prefix: str = ""
    #: How often the Macie classification job scans the raw and curated buckets.
    macie_job_frequency: str = "WEEKLY"
    #: Version of Powertools for AWS Lambda (Python) whose public layer the functions use.
    powertools_version: str = "3.37.0"
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    features: Features = field(default_factory=Features)

    def __post_init__(self) -> None:
        problems: list[str] = []
        where = f"config/stages.py stage {self.name!r}"
        if not _PREFIX_RE.fullmatch(self.prefix):
            problems.append(f"prefix={self.prefix!r}: use 2-20 lower-case letters, digits or '-'")
        if self.account is not None and not re.fullmatch(r"[0-9]{12}", self.account):
            problems.append(f"account={self.account!r}: use a 12-digit account id or None")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            problems.append(f"log_retention_days={self.log_retention_days}: use one of {LOG_RETENTION_DAYS}")
        for name in ("alarm_email", "notice_email"):
            email = getattr(self, name)
            if email is not None and not _EMAIL_RE.fullmatch(email):
                problems.append(f"{name}={email!r}: use an e-mail address or None")
        budget = self.monthly_budget_usd
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
            problems.append(
                f"monthly_budget_usd={budget!r}: use a whole number of US dollars, 1 or more, or None"
            )
        for arn in self.lake_admin_arns:
            if not _ARN_RE.fullmatch(arn):
                problems.append(f"lake_admin_arns: {arn!r} is not an IAM ARN")
        if problem := _boundary_problem(self):
            problems.append(problem)
        problems += _tag_problems(self.tags)
        problems += _producer_problems(self.producers)
        qs = self.features.quicksight_principal_arn
        if qs is not None and not _ARN_RE.fullmatch(qs):
            problems.append(f"features.quicksight_principal_arn={qs!r}: use a QuickSight user or group ARN")
        lc = self.lifecycle
        if not 30 <= lc.raw_infrequent_access_after < lc.raw_glacier_ir_after:
            problems.append(
                "lifecycle: S3 needs raw_infrequent_access_after >= 30 and below raw_glacier_ir_after"
            )
        if lc.rejected_expire_after < 1:
            problems.append("lifecycle.rejected_expire_after: use a whole number of days, 1 or more")
        if lc.audit_logs_expire_after < 1:
            problems.append("lifecycle.audit_logs_expire_after: use a whole number of days, 1 or more")
        if not 0 <= lc.audit_logs_locked_for <= lc.audit_logs_expire_after:
            problems.append(
                f"lifecycle.audit_logs_locked_for={lc.audit_logs_locked_for}: use 0 (no Object Lock) or "
                "days up to lifecycle.audit_logs_expire_after"
            )
        elif lc.audit_logs_locked_for and self.destroy_on_removal:
            problems.append(
                "lifecycle.audit_logs_locked_for: a stage with destroy_on_removal=True cannot lock the "
                "trail's log files (cdk destroy could not empty the bucket); use 0"
            )
        if self.athena_bytes_scanned_cutoff < ATHENA_MIN_CUTOFF_BYTES:
            problems.append(
                f"athena_bytes_scanned_cutoff: Athena's minimum is {ATHENA_MIN_CUTOFF_BYTES:,} bytes (10 MB)"
            )
        if self.redshift_base_rpu not in REDSHIFT_BASE_RPUS:
            problems.append(
                f"redshift_base_rpu={self.redshift_base_rpu}: use 4, a multiple of 8 from 8 to 512, or "
                "of 32 from 512 to 1024 (above 512 in some regions only)"
            )
        if self.redshift_usage_limit_action not in REDSHIFT_USAGE_LIMIT_ACTIONS:
            problems.append(
                f"redshift_usage_limit_action={self.redshift_usage_limit_action!r}: use "
                f"{_one_of(REDSHIFT_USAGE_LIMIT_ACTIONS)}"
            )
        if problem := schedule_problem(self.redshift_refresh_schedule):
            problems.append(f"redshift_refresh_schedule: {problem}")
        stale = self.redshift_refresh_stale_hours
        interval = None if problem else schedule_interval_minutes(self.redshift_refresh_schedule)
        if isinstance(stale, bool) or not isinstance(stale, int) or not 0 <= stale <= MAX_STALE_HOURS:
            problems.append(
                f"redshift_refresh_stale_hours={stale!r}: use whole hours up to {MAX_STALE_HOURS} (7 days), "
                "or 0 for no alarm"
            )
        elif stale and interval is not None and stale * 60 <= interval:
            problems.append(
                f"redshift_refresh_stale_hours={stale}: a {self.redshift_refresh_schedule} refresh leaves "
                f"{interval // 60} hours between two; give more than that"
            )
        if self.macie_job_frequency not in MACIE_JOB_FREQUENCIES:
            problems.append(
                f"macie_job_frequency={self.macie_job_frequency!r}: use {_one_of(MACIE_JOB_FREQUENCIES)}"
            )
        if not re.fullmatch(r"[a-z0-9_.:-]{0,20}", self.lf_tag_prefix):
            problems.append(f"lf_tag_prefix={self.lf_tag_prefix!r}: use up to 20 of a-z 0-9 _ . : -")
        if problems:
            raise ValueError(f"Invalid stage configuration in {where}:\n  - " + "\n  - ".join(problems))

    def with_features(self, **changes: object) -> StageConfig:
        """A copy with some features changed (tests and benchmarks use it)."""
        return replace(self, features=replace(self.features, **changes))  # type: ignore[arg-type]


SANDBOX = StageConfig(
    name="sandbox",
    prefix="lake-sbx",
    destroy_on_removal=True,
    termination_protection=False,
    log_retention_days=30,
    # a sandbox stops spending when its budget of RPU-hours is used up
    redshift_usage_limit_action="deactivate",
    # its idle cost is about 20 USD a month (`make cost`): the rest is room for traffic
    monthly_budget_usd=100,
    lifecycle=Lifecycle(access_logs_expire_after=90, audit_logs_expire_after=90),
)

PROD = StageConfig(
    name="prod",
    prefix="lake-prd",
    destroy_on_removal=False,
    termination_protection=True,
    log_retention_days=731,
    # its idle cost is about 130 USD a month (`make cost STAGE=prod`), most of it the VPC endpoints
    monthly_budget_usd=500,
    # the trail's log files can be neither deleted nor overwritten for a year, except by a
    # principal allowed s3:BypassGovernanceRetention
    lifecycle=Lifecycle(audit_logs_locked_for=365),
    features=Features(redshift=True),
)

STAGES: dict[str, StageConfig] = {s.name: s for s in (SANDBOX, PROD)}


def get_stage(name: str) -> StageConfig:
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(
            f"Unknown stage {name!r} (from -c stage=... or STAGE=...): use one of {', '.join(STAGES)}, "
            "or add a StageConfig to config/stages.py"
        ) from None


def features_from_context(stage: StageConfig, switches: str | None, quicksight: str | None) -> StageConfig:
    """The stage with features switched from the command line (``-c features=redshift,macie=off``).

    ``switches`` is a comma-separated list of ``name`` (on), ``name=on`` or ``name=off``, or ``all``
    for every boolean feature on; ``quicksight`` sets ``quicksight_principal_arn``. Used to
    synthesize a variant without editing ``config/stages.py`` (the benchmarks, a one-off check).
    """
    booleans = [f.name for f in fields(Features) if f.type in (bool, "bool")]
    changes: dict[str, object] = {}
    for item in filter(None, (s.strip() for s in (switches or "").split(","))):
        name, _, value = item.partition("=")
        if name == "all" and not value:
            changes.update(dict.fromkeys(booleans, True))
            changes["macie_reuse_session"] = False
            continue
        if name not in booleans or value not in ("", "on", "off"):
            raise ValueError(
                f"-c features={switches!r}: {item!r} is not a switch; use a comma-separated list of "
                f"{', '.join(booleans)} (optionally =on/=off), or all"
            )
        changes[name] = value != "off"
    if quicksight:
        changes["quicksight_principal_arn"] = quicksight
    return stage.with_features(**changes) if changes else stage
