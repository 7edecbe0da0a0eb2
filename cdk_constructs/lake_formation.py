"""Lake Formation, deployed in the order it needs: settings, registration, tags, associations, grants.

Its constructs follow the stack boundaries:

* :class:`LakeFormationSetup` (governance stack, before the catalog): data lake settings that
  *append* admins (the CDK execution role and the stage's admins), each zone bucket registered
  with its own role, and the LF-Tags. Chained with ``DependsOn``.
* :class:`CatalogPermissions` (catalog stack, after the tables): tag associations on databases;
  a :class:`DatasetPermissions` per dataset (in its nested stack, beside its tables) with the
  associations on its tables and PII columns, named-resource grants (each ``DependsOn`` the
  associations of the database and table it names) and a worked data-cells filter; then
  tag-based grants (each ``DependsOn`` every association, a nested stack's through that stack).
  The processing stack, whose jobs and crawlers use these grants, deploys after the catalog stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Aws, Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lakeformation as lf
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.bootstrap import execution_role_arn
from cdk_constructs.keys import key_use_via
from cdk_constructs.nag import acknowledge, wildcard_findings
from datalake.dataset import CLASSIFICATIONS

#: Values of the ``zone`` tag: the three lake zones and the CloudTrail audit table.
ZONES = ("raw", "curated", "analytics", "audit")
#: Table permissions that let a reader query (Athena, Spectrum, QuickSight).
READ = ["SELECT", "DESCRIBE"]
#: Lake Formation calls that change who may read what: grants, admins and settings, registrations,
#: LF-Tags and their assignments, tag expressions (a grant may name one), data-cells filters,
#: enforcement (opt-ins) and the IAM Identity Center connection. Both the alert on changes made
#: outside a deployment and ``sql/audit/lake_formation_changes.sql`` watch these.
CHANGES = (
    "GrantPermissions",
    "RevokePermissions",
    "BatchGrantPermissions",
    "BatchRevokePermissions",
    "PutDataLakeSettings",
    "RegisterResource",
    "DeregisterResource",
    "UpdateResource",
    "CreateLFTag",
    "UpdateLFTag",
    "DeleteLFTag",
    "AddLFTagsToResource",
    "RemoveLFTagsFromResource",
    "CreateDataCellsFilter",
    "UpdateDataCellsFilter",
    "DeleteDataCellsFilter",
    "CreateLFTagExpression",
    "UpdateLFTagExpression",
    "DeleteLFTagExpression",
    "CreateLakeFormationOptIn",
    "DeleteLakeFormationOptIn",
    "CreateLakeFormationIdentityCenterConfiguration",
    "UpdateLakeFormationIdentityCenterConfiguration",
    "DeleteLakeFormationIdentityCenterConfiguration",
)


Permissions = lf.CfnPrincipalPermissions


@dataclass(frozen=True)
class Zone:
    """A zone bucket to register, with the key its objects are encrypted with."""

    name: str
    bucket: s3.IBucket
    key: kms.IKey


class LakeFormationSetup(Construct):
    """Settings, location registration and LF-Tags: everything grants and tags rest on.

    :param admins: extra data lake admins (IAM ARNs), added to the CDK execution role.
    :param zones: the zone buckets to register, each with a dedicated registration role.
    :param tag_prefix: prefix of the tag keys (``zone``, ``classification``), for accounts that
        already use those keys for something else. Default: none.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        admins: Sequence[str],
        zones: Sequence[Zone],
        tag_prefix: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.admin_arns = [execution_role_arn(stack), *admins]
        # APPEND adds these admins to the account's list; REPLACE (the CloudFormation default)
        # would remove admins someone else configured, the classic failure in shared accounts.
        self.settings = lf.CfnDataLakeSettings(
            self,
            "Settings",
            mutation_type="APPEND",
            admins=[
                lf.CfnDataLakeSettings.DataLakePrincipalProperty(data_lake_principal_identifier=a)
                for a in self.admin_arns
            ],
        )

        self.registrations: dict[str, lf.CfnResource] = {}
        self.registration_roles: dict[str, iam.Role] = {}
        for zone in zones:
            cid = zone.name.capitalize()
            role = iam.Role(
                self,
                f"{cid}RegistrationRole",
                role_name=f"{prefix}-lf-{zone.name}",
                assumed_by=iam.ServicePrincipal("lakeformation.amazonaws.com"),
                description=f"Lake Formation vends credentials for the {zone.name} zone with this role",
            )
            policy = iam.ManagedPolicy(
                self,
                f"{cid}RegistrationPolicy",
                roles=[role],
                statements=[
                    iam.PolicyStatement(
                        actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                        resources=[zone.bucket.arn_for_objects("*")],
                    ),
                    iam.PolicyStatement(actions=["s3:ListBucket"], resources=[zone.bucket.bucket_arn]),
                    key_use_via("s3", [zone.key], ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]),
                ],
            )
            acknowledge(
                policy,
                "Lake Formation vends credentials for any object of the registered zone bucket, so "
                "its registration role reads and writes every (generated) key in that one bucket.",
                *wildcard_findings(policy),
            )
            registration = lf.CfnResource(
                self,
                f"{cid}Location",
                resource_arn=zone.bucket.bucket_arn,
                role_arn=role.role_arn,
                use_service_linked_role=False,
                hybrid_access_enabled=False,
            )
            registration.node.add_dependency(self.settings)
            registration.node.add_dependency(policy)
            self.registrations[zone.name] = registration
            self.registration_roles[zone.name] = role

        zone_key, class_key = tag_key_names(tag_prefix)
        self.zone_tag = lf.CfnTag(self, "ZoneTag", tag_key=zone_key, tag_values=list(ZONES))
        self.classification_tag = lf.CfnTag(
            self, "ClassificationTag", tag_key=class_key, tag_values=list(CLASSIFICATIONS)
        )
        for tag in (self.zone_tag, self.classification_tag):
            for registration in self.registrations.values():
                tag.node.add_dependency(registration)


@dataclass(frozen=True)
class GovernedTable:
    """A catalog table and how it is classified (PII columns are tagged ``pii``)."""

    resource: glue.CfnTable
    database: str
    name: str
    classification: str
    pii_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class RowFilter:
    """The worked data-cells filter: rows of ``table`` whose ``column`` is one of ``values``."""

    table: GovernedTable
    column: str
    values: tuple[str, ...]
    reader: iam.IRole

    @property
    def name(self) -> str:
        return f"{self.table.name}_{self.column}_" + "_".join(v.lower() for v in self.values)

    @property
    def expression(self) -> str:
        return f"{self.column} IN (" + ", ".join(f"'{v}'" for v in self.values) + ")"


@dataclass(frozen=True)
class TableGrant:
    """Named-resource grants of one service role: exactly the tables its step touches."""

    principal: iam.IRole
    tables: tuple[GovernedTable, ...]
    permissions: tuple[str, ...]
    #: Databases it must describe (and, for crawlers, alter).
    database_permissions: tuple[str, ...] = ("DESCRIBE",)
    #: Registered locations it reads through Lake Formation credentials (crawlers).
    locations: tuple[str, ...] = ()


class _Permissions(Construct):
    """Tag associations, and grants each ordered after the associations it relies on.

    A grant by tag expression reaches what carries its tags when it is made: it waits for every
    association, or a reader could see a PII column in the moment before its ``pii`` tag. A grant
    on a named database or table does not read tags: it waits for that database's and table's
    associations alone, so each dataset adds dependencies of its own, not ones on every other
    dataset (which grew the template with the square of the datasets).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        tag_keys: tuple[str, str],
        on: dict[tuple[str, ...], list[lf.CfnTagAssociation]] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.tag_keys = tag_keys
        self.associations: list[lf.CfnTagAssociation] = []
        #: The associations on each database (``(name,)``) and table (``(database, name)``),
        #: those made elsewhere (``on``: the catalog's databases') too.
        self.on: dict[tuple[str, ...], list[lf.CfnTagAssociation]] = {
            k: list(v) for k, v in (on or {}).items()
        }

    def associate(
        self,
        cid: str,
        resource: lf.CfnTagAssociation.ResourceProperty,
        tags: dict[str, str],
        after: Construct,
        *names: str,
    ) -> None:
        association = lf.CfnTagAssociation(
            self,
            cid,
            resource=resource,
            lf_tags=[
                lf.CfnTagAssociation.LFTagPairProperty(catalog_id=Aws.ACCOUNT_ID, tag_key=k, tag_values=[v])
                for k, v in tags.items()
            ],
        )
        association.node.add_dependency(after)
        self.associations.append(association)
        self.on.setdefault(names, []).append(association)

    def grant(
        self,
        cid: str,
        principal: str,
        resource: Permissions.ResourceProperty,
        permissions: Sequence[str],
        *named: str,
        after: Sequence[lf.CfnTagAssociation] = (),
    ) -> lf.CfnPrincipalPermissions:
        """A grant after the associations of the ``named`` database (and table), and ``after``
        (a data location names none)."""
        permission = lf_grant(self, cid, principal, resource, permissions)
        for association in [
            *after,
            *(a for n in range(1, len(named) + 1) for a in self.on.get(named[:n], [])),
        ]:
            permission.node.add_dependency(association)
        return permission


class CatalogPermissions(_Permissions):
    """The catalog's: tag associations on the databases (the zone, and a default classification
    every table inherits), each dataset's :class:`DatasetPermissions` (:meth:`add_dataset`), then
    the grants by tag expression (:meth:`grant_by_tags`), after every association.

    :param databases: database name to (database resource, zone).
    :param tag_keys: the ``zone`` and ``classification`` tag keys; pass the ``CfnTag.ref`` of the
        setup's tags so these resources depend on the tags existing.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        databases: dict[str, tuple[glue.CfnDatabase, str]],
        tag_keys: tuple[str, str],
    ) -> None:
        super().__init__(scope, construct_id, tag_keys=tag_keys)
        zone_key, class_key = tag_keys
        self.datasets: list[DatasetPermissions] = []
        for db_name, (database, zone) in databases.items():
            self.associate(
                f"Db{_cid(db_name)}",
                lf.CfnTagAssociation.ResourceProperty(
                    database=lf.CfnTagAssociation.DatabaseResourceProperty(
                        catalog_id=Aws.ACCOUNT_ID, name=db_name
                    )
                ),
                {zone_key: zone, class_key: "internal"},
                database,
                db_name,
            )
        self._by_tags = False

    def add_dataset(
        self,
        scope: Construct,
        construct_id: str,
        *,
        tables: Sequence[GovernedTable],
        service_grants: Sequence[TableGrant],
        row_filters: Sequence[RowFilter] = (),
    ) -> DatasetPermissions:
        """A dataset's tables' associations and named grants, in ``scope`` (its nested stack);
        before :meth:`grant_by_tags`, which waits for them."""
        if self._by_tags:
            raise ValueError("add every dataset before grant_by_tags: its grants wait for their tags")
        permissions = DatasetPermissions(
            scope,
            construct_id,
            tag_keys=self.tag_keys,
            on=self.on,
            tables=tables,
            service_grants=service_grants,
            row_filters=row_filters,
        )
        self.datasets.append(permissions)
        return permissions

    def grant_by_tags(
        self, *, engineers: Sequence[str], readers: Sequence[str], pii_readers: Sequence[str]
    ) -> None:
        """The grants by tag expression, each after every association (this construct's and every
        dataset's):

        :param engineers: may do everything with every zone's tables.
        :param readers: SELECT on curated and analytics tables without PII columns (analysts,
            QuickSight, the warehouse analysts' external schema).
        :param pii_readers: SELECT on curated tables including PII columns (the warehouse's own
            external schema, which only its admin and ``pii_reader`` may use: Redshift cannot mask
            an external table's columns; Athena's Spark notebooks, which read the curated zone
            from S3 because their engine does not support Lake Formation: the grant lets the
            catalog show them the tables, and shows in Lake Formation who reads PII).
        """
        self._by_tags = True
        every = [*self.associations, *(a for d in self.datasets for a in d.associations)]

        def grant(
            cid: str, principal: str, resource: Permissions.ResourceProperty, permissions: Sequence[str]
        ) -> None:
            self.grant(cid, principal, resource, permissions, after=every)

        def tag_policy(resource_type: str, **expression: Sequence[str]) -> Permissions.ResourceProperty:
            return lf_tag_policy(resource_type, self.tag_keys, **expression)

        every_zone = list(ZONES)
        for i, principal in enumerate(engineers):
            grant(
                f"EngineerDatabases{i}",
                principal,
                tag_policy("DATABASE", zone=every_zone),
                ["DESCRIBE", "CREATE_TABLE", "ALTER"],
            )
            grant(
                f"EngineerTables{i}",
                principal,
                tag_policy("TABLE", zone=every_zone),
                ["SELECT", "INSERT", "DELETE", "DESCRIBE", "ALTER", "DROP"],
            )
        for i, principal in enumerate(readers):
            for suffix, (resource, permissions) in reader_grants(self.tag_keys).items():
                grant(f"Reader{suffix}{i}", principal, resource, permissions)
        for i, principal in enumerate(pii_readers):
            grant(f"PiiReaderDatabases{i}", principal, tag_policy("DATABASE", zone=["curated"]), ["DESCRIBE"])
            grant(f"PiiReaderTables{i}", principal, tag_policy("TABLE", zone=["curated"]), READ)


class DatasetPermissions(_Permissions):
    """A dataset's: tag associations on its tables and PII columns, named grants to its service
    roles, and the worked data-cells filter. Made by :meth:`CatalogPermissions.add_dataset`.

    :param tables: the dataset's governed tables.
    :param service_grants: its pipeline roles' grants on exactly the tables each step touches.
    :param row_filters: data-cells filters on its tables and their readers.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        tag_keys: tuple[str, str],
        on: dict[tuple[str, ...], list[lf.CfnTagAssociation]],
        tables: Sequence[GovernedTable],
        service_grants: Sequence[TableGrant],
        row_filters: Sequence[RowFilter] = (),
    ) -> None:
        super().__init__(scope, construct_id, tag_keys=tag_keys, on=on)
        account = Aws.ACCOUNT_ID
        _, class_key = tag_keys
        # Tables and columns override the database's classification where they hold more
        # sensitive data.
        for table in tables:
            self.associate(
                f"Table{_cid(table.database)}{_cid(table.name)}",
                lf.CfnTagAssociation.ResourceProperty(
                    table=lf.CfnTagAssociation.TableResourceProperty(
                        catalog_id=account, database_name=table.database, name=table.name
                    )
                ),
                {class_key: table.classification},
                table.resource,
                table.database,
                table.name,
            )
            if table.pii_columns:
                self.associate(
                    f"Pii{_cid(table.database)}{_cid(table.name)}",
                    lf.CfnTagAssociation.ResourceProperty(
                        table_with_columns=lf.CfnTagAssociation.TableWithColumnsResourceProperty(
                            catalog_id=account,
                            database_name=table.database,
                            name=table.name,
                            column_names=list(table.pii_columns),
                        )
                    ),
                    {class_key: "pii"},
                    table.resource,
                    table.database,
                    table.name,
                )

        for i, sg in enumerate(service_grants):
            principal = sg.principal.role_arn
            for db in dict.fromkeys(t.database for t in sg.tables):
                self.grant(
                    f"Service{i}Db{_cid(db)}",
                    principal,
                    Permissions.ResourceProperty(
                        database=Permissions.DatabaseResourceProperty(catalog_id=account, name=db)
                    ),
                    sg.database_permissions,
                    db,
                )
            for table in sg.tables:
                self.grant(
                    f"Service{i}Table{_cid(table.name)}",
                    principal,
                    Permissions.ResourceProperty(
                        table=Permissions.TableResourceProperty(
                            catalog_id=account, database_name=table.database, name=table.name
                        )
                    ),
                    sg.permissions,
                    table.database,
                    table.name,
                )
            for j, location in enumerate(sg.locations):
                self.grant(
                    f"Service{i}Location{j}",
                    principal,
                    Permissions.ResourceProperty(
                        data_location=Permissions.DataLocationResourceProperty(
                            catalog_id=account, resource_arn=location
                        )
                    ),
                    ["DATA_LOCATION_ACCESS"],
                )

        for i, rf in enumerate(row_filters):
            cells = lf.CfnDataCellsFilter(
                self,
                f"RowFilter{i}",
                table_catalog_id=account,
                database_name=rf.table.database,
                table_name=rf.table.name,
                name=rf.name,
                row_filter=lf.CfnDataCellsFilter.RowFilterProperty(filter_expression=rf.expression),
                column_wildcard=lf.CfnDataCellsFilter.ColumnWildcardProperty(
                    excluded_column_names=list(rf.table.pii_columns)
                ),
            )
            cells.node.add_dependency(rf.table.resource)
            self.grant(
                f"RowFilterDatabase{i}",
                rf.reader.role_arn,
                Permissions.ResourceProperty(
                    database=Permissions.DatabaseResourceProperty(catalog_id=account, name=rf.table.database)
                ),
                ["DESCRIBE"],
                rf.table.database,
            )
            self.grant(
                f"RowFilterSelect{i}",
                rf.reader.role_arn,
                Permissions.ResourceProperty(
                    data_cells_filter=Permissions.DataCellsFilterResourceProperty(
                        table_catalog_id=account,
                        database_name=rf.table.database,
                        table_name=rf.table.name,
                        name=rf.name,
                    )
                ),
                ["SELECT"],
                rf.table.database,
                rf.table.name,
            ).node.add_dependency(cells)


def tag_key_names(tag_prefix: str) -> tuple[str, str]:
    """The stage's ``zone`` and ``classification`` tag keys (``lf_tag_prefix`` of its config first)."""
    return f"{tag_prefix}zone", f"{tag_prefix}classification"


def lf_grant(
    scope: Construct,
    construct_id: str,
    principal: str,
    resource: lf.CfnPrincipalPermissions.ResourceProperty,
    permissions: Sequence[str],
) -> lf.CfnPrincipalPermissions:
    """``permissions`` on ``resource`` to ``principal`` (an IAM ARN), without grant option."""
    return Permissions(
        scope,
        construct_id,
        catalog=Aws.ACCOUNT_ID,
        principal=Permissions.DataLakePrincipalProperty(data_lake_principal_identifier=principal),
        resource=resource,
        permissions=list(permissions),
        permissions_with_grant_option=[],
    )


def lf_tag_policy(
    resource_type: str, tag_keys: tuple[str, str], **expression: Sequence[str]
) -> lf.CfnPrincipalPermissions.ResourceProperty:
    """The ``DATABASE`` or ``TABLE`` resources whose tags match ``expression`` (``zone=...``,
    ``classification=...``), given the stage's ``zone`` and ``classification`` tag keys."""
    keys = dict(zip(("zone", "classification"), tag_keys, strict=True))
    return Permissions.ResourceProperty(
        lf_tag_policy=Permissions.LFTagPolicyResourceProperty(
            catalog_id=Aws.ACCOUNT_ID,
            resource_type=resource_type,
            expression=[
                Permissions.LFTagProperty(tag_key=keys[k], tag_values=list(v)) for k, v in expression.items()
            ],
        )
    )


def reader_grants(
    tag_keys: tuple[str, str],
) -> dict[str, tuple[lf.CfnPrincipalPermissions.ResourceProperty, list[str]]]:
    """What a reader gets, by construct id suffix: DESCRIBE on the curated and analytics databases,
    SELECT and DESCRIBE on their tables, columns tagged ``pii`` excepted (they do not match
    ``classification`` in public, internal, so Lake Formation hides them)."""
    non_pii = [c for c in CLASSIFICATIONS if c != "pii"]
    return {
        "Databases": (lf_tag_policy("DATABASE", tag_keys, zone=["curated", "analytics"]), ["DESCRIBE"]),
        "Tables": (
            lf_tag_policy("TABLE", tag_keys, zone=["curated", "analytics"], classification=non_pii),
            READ,
        ),
    }


def _cid(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
