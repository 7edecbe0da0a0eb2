"""Redshift Serverless over the lake: private network, encrypted namespace, Spectrum, bootstrap SQL."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Aws, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_redshiftserverless as redshift
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_constructs.alerts import AlertRules, alarm_above, alarm_without, rule_invocations
from cdk_constructs.custom_resource import CustomResourceFunction
from cdk_constructs.keys import key_use_via
from cdk_constructs.nag import acknowledge, acknowledge_regulatory, wildcard_findings
from cdk_constructs.state_machines import schedule
from cdk_constructs.trust import service_for_this_account

#: Interface endpoints the workgroup reaches AWS through (S3 is a gateway endpoint).
INTERFACE_ENDPOINTS = {
    "Glue": ec2.InterfaceVpcEndpointAwsService.GLUE,
    "LakeFormation": ec2.InterfaceVpcEndpointAwsService.LAKE_FORMATION,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Kms": ec2.InterfaceVpcEndpointAwsService.KMS,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
}
PORT = 5439
#: The share of the month's RPU-hours (the usage limit) at which the warehouse alarms: a warning
#: before the limit stops its queries (``deactivate``) or is passed with no one told
#: (``emit-metric`` and ``log`` only record it).
USAGE_ALARM_SHARE = 0.8
#: What Redshift does at the limit, for the alarm's description.
BREACH_ACTIONS = {
    "log": "logs it to a system table and runs on",
    "emit-metric": "emits a metric and runs on",
    "deactivate": "stops its queries until next month",
}
#: The logs the namespace exports. Redshift Serverless writes each type to one group of the
#: account (:func:`exported_log_group`), which every namespace of the account shares.
LOG_EXPORTS = ("userlog", "connectionlog", "useractivitylog")
ADMIN_USER = "lake_admin"
DATABASE = "lake"
#: The Data API call the refresh schedule makes (an EventBridge Scheduler universal target): its
#: statements run in one transaction, in order, and say when they end (``WithEvent``).
REFRESH_CALL = "redshiftdata:batchExecuteStatement"
#: The Data API's states of a statement that did not finish (its EventBridge events).
REFRESH_FAILED_STATES = ("FAILED", "ABORTED")


def exported_log_group(log_type: str) -> str:
    """The account's log group Redshift Serverless exports a namespace's ``log_type`` log to (its
    management guide, "Monitoring log events in CloudWatch")."""
    return f"/aws/redshift/serverless/{log_type}"


def refresh_user(role_name: str) -> str:
    """The database user Redshift Serverless maps an IAM role to for the Data API's temporary
    credentials: ``IAMR:<role name>`` (``IAM:<user name>`` for an IAM user)."""
    return f"IAMR:{role_name}"


def refresh_grants(role_name: str, procedures: Sequence[str]) -> list[str]:
    """SQL that creates the refresh role's database user (no password: it signs in through IAM
    only) and lets it call ``procedures``, which run as their owner (``SECURITY DEFINER``):
    the user may do nothing else in the warehouse."""
    user = refresh_user(role_name)
    return [
        f'-- ok-if-exists\nCREATE USER "{user}" PASSWORD DISABLE;',
        *(f'GRANT EXECUTE ON PROCEDURE {procedure}() TO "{user}";' for procedure in procedures),
    ]


class RedshiftWarehouse(Construct):
    """A Redshift Serverless namespace and workgroup in their own isolated VPC.

    * VPC: private isolated subnets in three AZs, no NAT gateway, no internet gateway; an S3
      gateway endpoint and interface endpoints for Glue, Lake Formation, STS, KMS and Secrets
      Manager; flow logs to a KMS-encrypted log group.
    * Namespace: encrypted with ``key``; the admin password is created and rotated by Redshift in
      Secrets Manager (encrypted with ``key``); user, connection and activity logs exported.
    * Workgroup: not publicly accessible, enhanced VPC routing, ``require_ssl`` on, base capacity
      and a usage limit (custom resource) from the stage.
    * Bootstrap SQL from ``sql/redshift/`` run through the Data API (custom resource).
    * Refresh: with ``refresh_procedures`` (the ``public.sp_refresh_*()`` procedures the SQL
      creates), an EventBridge Scheduler schedule calls them through the Data API on
      ``refresh_schedule``, as a role whose database user may call them and nothing else; a
      refresh that fails or is aborted is published to ``alert_topic``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        key: kms.IKey,
        spectrum_role: iam.IRole,
        analyst_spectrum_role: iam.IRole,
        base_rpu: int,
        usage_limit_rpu_hours: int,
        usage_limit_action: str,
        statements: Sequence[str],
        sign_in_roles: Sequence[iam.IRole],
        refresh_procedures: Sequence[str],
        refresh_schedule: str,
        refresh_stale_hours: int,
        schedule_group: str,
        alert_topic: sns.ITopic,
        notice_topic: sns.ITopic,
        logs_key: kms.IKey,
        log_retention: logs.RetentionDays,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        #: The refresh schedule's role, whose database user calls the refresh procedures.
        self.refresh_role_name = f"{prefix}-warehouse-refresh"
        if refresh_procedures:
            statements = [*statements, *refresh_grants(self.refresh_role_name, refresh_procedures)]
        flow_logs = logs.LogGroup(
            self, "FlowLogs", encryption_key=logs_key, retention=log_retention, removal_policy=removal_policy
        )
        # The flow-log role of the VPC guide's confused-deputy advice: assumed only for this
        # account's flow logs (CDK's own role trusts the service for any account's flow log).
        flow_log_role = iam.Role(
            self,
            "FlowLogRole",
            assumed_by=service_for_this_account(
                "vpc-flow-logs.amazonaws.com",
                Stack.of(self).format_arn(service="ec2", resource="vpc-flow-log", resource_name="*"),
            ),
            description="Delivers the warehouse VPC's flow logs to their log group",
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.42.0.0/20"),
            max_azs=3,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="warehouse", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                )
            ],
            flow_logs={
                "All": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs, flow_log_role)
                )
            },
        )
        acknowledge_regulatory(
            flow_log_role.node.find_child("DefaultPolicy"),
            "IAMNoInlinePolicy",
            "The CDK flow-log construct grants the delivery role this inline policy, which only "
            "writes to the flow-log group and passes its own role.",
        )
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        self.security_group = ec2.SecurityGroup(
            self,
            "WorkgroupSecurityGroup",
            vpc=self.vpc,
            description="Redshift Serverless workgroup: no inbound rule; HTTPS out to the VPC endpoints",
            allow_all_outbound=False,
        )
        endpoint_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="Interface endpoints: HTTPS from the workgroup only",
            allow_all_outbound=False,
        )
        endpoint_group.add_ingress_rule(self.security_group, ec2.Port.tcp(443), "HTTPS from the workgroup")
        reason = (
            "The only ingress rule is HTTPS from the workgroup's security group (a group id, which "
            "the rule cannot evaluate); no CIDR, SSH or common port is open."
        )
        acknowledge(endpoint_group, reason, "AwsSolutions-EC23")
        for rule in ("EC2RestrictedCommonPorts", "EC2RestrictedSSH"):
            acknowledge_regulatory(endpoint_group, rule, reason)
        self.security_group.add_egress_rule(
            endpoint_group, ec2.Port.tcp(443), "HTTPS to the interface endpoints"
        )
        # S3 through the gateway endpoint: the route table sends S3 traffic there, nowhere else.
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to S3 (gateway endpoint)"
        )
        for name, service in INTERFACE_ENDPOINTS.items():
            self.vpc.add_interface_endpoint(
                name, service=service, private_dns_enabled=True, security_groups=[endpoint_group], open=False
            )

        self.namespace = redshift.CfnNamespace(
            self,
            "Namespace",
            namespace_name=f"{prefix}-warehouse",
            db_name=DATABASE,
            admin_username=ADMIN_USER,
            manage_admin_password=True,
            admin_password_secret_kms_key_id=key.key_arn,
            kms_key_id=key.key_arn,
            # both external schemas' roles: the whole curated tables, and the analysts' view of them
            iam_roles=[spectrum_role.role_arn, analyst_spectrum_role.role_arn],
            default_iam_role_arn=spectrum_role.role_arn,
            log_exports=list(LOG_EXPORTS),
        )
        self.namespace.apply_removal_policy(removal_policy)
        self.log_groups = self._exported_log_groups(
            log_retention_days, logs_key, log_retention, removal_policy
        )
        # the groups exist, with their retention, before the namespace's first event: Redshift
        # would create a missing one that keeps its events forever
        self.namespace.node.add_dependency(self.log_groups)
        self.workgroup = redshift.CfnWorkgroup(
            self,
            "Workgroup",
            workgroup_name=f"{prefix}-warehouse",
            namespace_name=self.namespace.namespace_name,
            base_capacity=base_rpu,
            enhanced_vpc_routing=True,
            publicly_accessible=False,
            port=PORT,
            subnet_ids=[s.subnet_id for s in self.vpc.isolated_subnets],
            security_group_ids=[self.security_group.security_group_id],
            config_parameters=[
                redshift.CfnWorkgroup.ConfigParameterProperty(
                    parameter_key="require_ssl", parameter_value="true"
                ),
                redshift.CfnWorkgroup.ConfigParameterProperty(
                    parameter_key="enable_user_activity_logging", parameter_value="true"
                ),
            ],
        )
        self.workgroup.node.add_dependency(self.namespace)
        self.workgroup.apply_removal_policy(removal_policy)

        stack = Stack.of(self)
        workgroup_arn = self.workgroup.attr_workgroup_workgroup_arn
        namespace_name = self.namespace.namespace_name
        # Redshift names the secret it manages redshift!<namespace>-<admin user>-<suffix>.
        secret_arn = stack.format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"redshift!{namespace_name}-{ADMIN_USER}-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.usage_limit_function = CustomResourceFunction(
            self,
            "UsageLimitFunction",
            handler="redshift_usage_limit.handler",
            description="Creates, updates and deletes the warehouse's Redshift Serverless usage limit",
            statements=[
                iam.PolicyStatement(
                    actions=["redshift-serverless:CreateUsageLimit"],
                    resources=[workgroup_arn],
                ),
                iam.PolicyStatement(
                    actions=["redshift-serverless:UpdateUsageLimit", "redshift-serverless:DeleteUsageLimit"],
                    resources=[
                        stack.format_arn(
                            service="redshift-serverless", resource="usagelimit", resource_name="*"
                        )
                    ],
                ),
            ],
            wildcard_reason="Usage limits are named by ids Redshift generates; the wildcard stays within "
            "this account and region's Redshift Serverless usage limits.",
            logs_key=logs_key,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        self.usage_limit = self.usage_limit_function.resource(
            self,
            "UsageLimit",
            resource_type="Custom::RedshiftServerlessUsageLimit",
            properties={
                "WorkgroupArn": workgroup_arn,
                "AmountRpuHours": str(usage_limit_rpu_hours),
                "Period": "monthly",
                "BreachAction": usage_limit_action,
            },
        )
        # Redshift Serverless publishes the RPU-hours a limit has counted this period as
        # UsageLimitConsumed, under the limit's id, usage type and workgroup (the CloudWatch
        # metrics of its management guide, "Audit logging for Amazon Redshift Serverless").
        self.usage_alarm = alarm_above(
            self,
            "UsageLimitAlarm",
            cloudwatch.Metric(
                namespace="AWS/Redshift-Serverless",
                metric_name="UsageLimitConsumed",
                dimensions_map={
                    "UsageLimitId": self.usage_limit.ref,
                    "UsageType": "SERVERLESS_COMPUTE",
                    "Workgroup": self.workgroup.workgroup_name,
                },
                statistic="Maximum",
                period=Duration.hours(1),
            ),
            threshold=USAGE_ALARM_SHARE * usage_limit_rpu_hours,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description=f"{prefix}: the warehouse has used {USAGE_ALARM_SHARE:.0%} of its "
            f"{usage_limit_rpu_hours} RPU-hours this month; at all of them Redshift "
            f"{BREACH_ACTIONS[usage_limit_action]} (runbook)",
        )
        self.sql_function = CustomResourceFunction(
            self,
            "BootstrapSqlFunction",
            handler="redshift_sql.handler",
            description="Runs sql/redshift/*.sql in the warehouse through the Data API at deploy time",
            statements=[
                iam.PolicyStatement(actions=["redshift-data:ExecuteStatement"], resources=[workgroup_arn]),
                # Describe and Cancel take no resource: the condition keeps them to the statements
                # the function's own session ran.
                iam.PolicyStatement(
                    actions=["redshift-data:DescribeStatement", "redshift-data:CancelStatement"],
                    resources=["*"],
                    conditions={
                        "StringEquals": {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}
                    },
                ),
                iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[secret_arn]),
                iam.PolicyStatement(
                    actions=["redshift-serverless:GetNamespace"],
                    resources=[self.namespace.attr_namespace_namespace_arn],
                ),
                key_use_via("secretsmanager", [key], ["kms:Decrypt"]),
            ],
            wildcard_reason="redshift-data:DescribeStatement and CancelStatement support no resource-level "
            "permission (they act on statements this role ran); Redshift appends a random suffix to the name of "
            "the admin secret it manages.",
            logs_key=logs_key,
            log_retention=log_retention,
            removal_policy=removal_policy,
            timeout=Duration.minutes(15),
        )
        self.bootstrap = self.sql_function.resource(
            self,
            "BootstrapSql",
            resource_type="Custom::RedshiftBootstrapSql",
            properties={
                "WorkgroupName": self.workgroup.workgroup_name,
                "Database": DATABASE,
                "NamespaceName": namespace_name,
                "Statements": list(statements),
            },
        )
        self.bootstrap.node.add_dependency(self.workgroup)
        self.sign_in_policy = self._sign_in(sign_in_roles, workgroup_arn) if sign_in_roles else None
        self.refresh: scheduler.CfnSchedule | None = None
        self.refresh_failed_rule: events.CfnRule | None = None
        self.refresh_finished_rule: events.CfnRule | None = None
        self.refresh_stale_alarm: cloudwatch.Alarm | None = None
        if refresh_procedures:
            self.refresh, self.refresh_failed_rule, self.refresh_finished_rule = self._refresh(
                prefix=prefix,
                workgroup_arn=workgroup_arn,
                procedures=refresh_procedures,
                expression=refresh_schedule,
                group=schedule_group,
                alert_topic=alert_topic,
                notice_topic=notice_topic,
                logs_key=logs_key,
            )
            if refresh_stale_hours:
                # EventBridge counts the notices the rule sends (Invocations, per rule): none for
                # these hours is a schedule disabled or deleted by hand, or refreshes that fail.
                self.refresh_stale_alarm = alarm_without(
                    self,
                    "RefreshStaleAlarm",
                    rule_invocations(str(self.refresh_finished_rule.name)),
                    hours=refresh_stale_hours,
                    description=f"{prefix}: no refresh of the warehouse has finished for "
                    f"{refresh_stale_hours} hours: its daily_revenue and customer_contacts are older "
                    "(the refresh schedule disabled or deleted, or its refreshes failing; runbook)",
                )

    def _exported_log_groups(
        self, days: int, logs_key: kms.IKey, log_retention: logs.RetentionDays, removal_policy: RemovalPolicy
    ) -> CustomResource:
        """The account's groups the namespace exports its logs to, created when missing and kept
        at least ``days`` days (``lambda/custom_resources/shared_log_groups.py``): no stack can own
        them, since every namespace of the account writes to them, and none is deleted with the
        stage."""
        stack = Stack.of(self)
        names = [exported_log_group(log) for log in LOG_EXPORTS]
        groups = [
            stack.format_arn(
                service="logs",
                resource="log-group",
                resource_name=name,
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            for name in names
        ]
        function = CustomResourceFunction(
            self,
            "LogGroupsFunction",
            handler="shared_log_groups.handler",
            description="Creates the account's Redshift Serverless log groups when missing and keeps "
            f"their events at least {days} days",
            statements=[
                iam.PolicyStatement(
                    actions=["logs:CreateLogGroup", "logs:PutRetentionPolicy"],
                    resources=[*groups, *(f"{arn}:*" for arn in groups)],
                ),
                iam.PolicyStatement(actions=["logs:DescribeLogGroups"], resources=["*"]),
            ],
            wildcard_reason="logs:DescribeLogGroups, a list of the account's groups (names, retention, "
            "sizes; no events), supports no resource-level permission; a log group's ARN ends in :* "
            "where CloudWatch Logs compares it for the other calls.",
            logs_key=logs_key,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        return function.resource(
            self,
            "ExportedLogGroups",
            resource_type="Custom::SharedLogGroups",
            properties={"LogGroupNames": names, "RetentionInDays": str(days)},
        )

    def _sign_in(self, roles: Sequence[iam.IRole], workgroup_arn: str) -> iam.ManagedPolicy:
        """Let ``roles`` sign in to the workgroup through IAM, no password: Redshift Serverless's
        temporary credentials (JDBC, ODBC, query editor v2) and the Data API. Each signs in as
        ``IAMR:<role name>``, whom Redshift creates at the first sign-in and gives the database
        roles of the role's ``RedshiftDbRoles`` tag; the Data API shows each session only the
        statements it ran itself."""
        policy = iam.ManagedPolicy(
            self,
            "SignInPolicy",
            description="Sign in to the lake's warehouse through IAM, as the database roles the role's tag names",
            roles=list(roles),
            statements=[
                iam.PolicyStatement(
                    actions=[
                        "redshift-serverless:GetCredentials",
                        "redshift-data:ExecuteStatement",
                        "redshift-data:BatchExecuteStatement",
                    ],
                    resources=[workgroup_arn],
                ),
                iam.PolicyStatement(
                    actions=[
                        "redshift-data:DescribeStatement",
                        "redshift-data:GetStatementResult",
                        "redshift-data:CancelStatement",
                        "redshift-data:ListStatements",
                    ],
                    resources=["*"],
                    conditions={
                        "StringEquals": {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}
                    },
                ),
            ],
        )
        acknowledge(
            policy,
            "The Data API's statement calls take no resource; the condition limits each session to the "
            "statements it ran (the Data API guide's owner restriction).",
            *wildcard_findings(policy),
        )
        return policy

    def _refresh(
        self,
        *,
        prefix: str,
        workgroup_arn: str,
        procedures: Sequence[str],
        expression: str,
        group: str,
        alert_topic: sns.ITopic,
        notice_topic: sns.ITopic,
        logs_key: kms.IKey,
    ) -> tuple[scheduler.CfnSchedule, events.CfnRule, events.CfnRule]:
        """The schedule that calls ``procedures``, the rule that publishes a failed call to the
        alerts and the rule that publishes a finished one to the notices."""
        name = self.refresh_role_name
        calls = [f"CALL {procedure}()" for procedure in procedures]
        refresh = schedule(
            self,
            "Refresh",
            name=name,
            target_arn=f"arn:{Aws.PARTITION}:scheduler:::aws-sdk:{REFRESH_CALL}",
            expression=expression,
            what=f"the refresh of the warehouse's copies of curated data ({', '.join(procedures)})",
            group=group,
            # The Data API's temporary credentials for a serverless workgroup: no secret, the
            # database user is the role's (refresh_user), which the bootstrap SQL created.
            grants=[
                iam.PolicyStatement(
                    actions=["redshift-data:BatchExecuteStatement", "redshift-serverless:GetCredentials"],
                    resources=[workgroup_arn],
                )
            ],
            payload={
                "WorkgroupName": self.workgroup.workgroup_name,
                "Database": DATABASE,
                "Sqls": calls,
                "StatementName": name,
                "WithEvent": True,
            },
            role_name=name,
        )
        # The first call waits for the procedures and the user's grants.
        refresh.node.add_dependency(self.bootstrap)
        # The schedule hands the statements to Redshift and is done: whether they end well is in
        # the Data API's event (a call the Data API refuses counts as a dropped invocation of the
        # schedule group after its retries, which the foundation alarms on).
        rules = AlertRules(self, "RefreshAlerts", topic=alert_topic, key=logs_key)

        # Who ran the statements: the event's principal, the refresh role's session (or the role,
        # should the Data API name it so). Anyone who may run statements may give theirs the
        # refresh's name; only the refresh role's count as a refresh.
        principal = [
            {"prefix": f"arn:{Aws.PARTITION}:sts::{Aws.ACCOUNT_ID}:assumed-role/{name}/"},
            f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/{name}",
        ]

        def ended(*states: str) -> dict[str, object]:
            """The Data API's event of the refresh's statements ending in one of ``states``."""
            return {
                "source": ["aws.redshift-data"],
                "detail-type": ["Redshift Data Statement Status Change"],
                "detail": {"statementName": [name], "state": list(states), "principal": principal},
            }

        message = f"Warehouse refresh <state> at <time>: {'; '.join(calls)} (schedule {name}"
        when = {"state": "$.detail.state", "time": "$.time"}
        failed = rules.add(
            "RefreshFailedRule",
            description=f"{prefix}: failed or aborted refreshes of the warehouse, to the alert topic",
            pattern=ended(*REFRESH_FAILED_STATES),
            template=f'"{message}, statement <id>: aws redshift-data describe-statement --id <id> gives '
            'its error for a day; runbook)"',
            paths={**when, "id": "$.detail.statementId"},
        )
        finished = rules.add(
            "RefreshFinishedRule",
            description=f"{prefix}: finished refreshes of the warehouse, to the notices topic",
            pattern=ended("FINISHED"),
            template=f'"{message})"',
            paths=when,
            topic=notice_topic,
            name=f"{name}-finished",  # named: the stale alarm counts its notices by name
        )
        return refresh, failed, finished
