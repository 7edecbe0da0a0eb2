"""QuickSight as code: an Athena data source, datasets without PII, an analysis and a dashboard.

The data source runs its queries as a role of our own (``RoleArn`` of the Athena parameters) in the
analysts' workgroup, so the account-wide ``aws-quicksight-service-role-v0`` needs no access to the
lake, and Lake Formation applies to QuickSight exactly as to analysts. Datasets are direct-query:
every visual asks Athena, so a revoked grant or a new partition shows at the next refresh and no
copy of the data sits in SPICE.

What must exist first (QuickSight cannot be created by CloudFormation): a QuickSight Enterprise
subscription in the account and region, and the user or group named by the stage's
``quicksight_principal_arn``. The README's deploy section says how.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_quicksight as quicksight
from constructs import Construct

from datalake.dataset import Column, Dataset, DatasetConfigError

#: QuickSight input column types of the dataset model's scalar types (arrays and structs are left out).
_INPUT_TYPES = {
    "string": ("STRING", None),
    "int": ("INTEGER", None),
    "bigint": ("INTEGER", None),
    "double": ("DECIMAL", "FLOAT"),
    "boolean": ("BOOLEAN", None),
    "date": ("DATETIME", None),
    "timestamp": ("DATETIME", None),
}

DATA_SOURCE_ACTIONS = (
    "quicksight:DescribeDataSource",
    "quicksight:DescribeDataSourcePermissions",
    "quicksight:PassDataSource",
    "quicksight:UpdateDataSource",
    "quicksight:DeleteDataSource",
    "quicksight:UpdateDataSourcePermissions",
)
DATA_SET_ACTIONS = (
    "quicksight:DescribeDataSet",
    "quicksight:DescribeDataSetPermissions",
    "quicksight:PassDataSet",
    "quicksight:DescribeIngestion",
    "quicksight:ListIngestions",
    "quicksight:UpdateDataSet",
    "quicksight:DeleteDataSet",
    "quicksight:CreateIngestion",
    "quicksight:CancelIngestion",
    "quicksight:UpdateDataSetPermissions",
)
ANALYSIS_ACTIONS = (
    "quicksight:RestoreAnalysis",
    "quicksight:UpdateAnalysisPermissions",
    "quicksight:DeleteAnalysis",
    "quicksight:DescribeAnalysisPermissions",
    "quicksight:QueryAnalysis",
    "quicksight:DescribeAnalysis",
    "quicksight:UpdateAnalysis",
)
DASHBOARD_ACTIONS = (
    "quicksight:DescribeDashboard",
    "quicksight:ListDashboardVersions",
    "quicksight:UpdateDashboardPermissions",
    "quicksight:QueryDashboard",
    "quicksight:UpdateDashboard",
    "quicksight:DeleteDashboard",
    "quicksight:DescribeDashboardPermissions",
    "quicksight:UpdateDashboardPublishedVersion",
)
#: Statuses whose orders count as revenue (as in ``sql/athena/daily_revenue_by_country.sql``).
REVENUE_STATUSES = ("PAID", "SHIPPED")
#: The dataset the analysis and dashboard are built on, and the non-PII columns they read
#: besides its key and event time.
DASHBOARD_DATASET = "orders"
DASHBOARD_COLUMNS = ("amount", "country", "currency", "status")


def input_columns(dataset: Dataset) -> list[dict[str, Any]]:
    """The dataset's columns QuickSight may see: scalar, decimal, not PII (CloudFormation shape)."""
    columns: list[dict[str, Any]] = []
    for column in dataset.columns:
        if column.name in dataset.pii_columns:
            continue
        kind = _input_type(column)
        if kind is None:
            continue
        spec: dict[str, Any] = {"Name": column.name, "Type": kind[0]}
        if kind[1] is not None:
            spec["SubType"] = kind[1]
        columns.append(spec)
    return columns


def _input_type(column: Column) -> tuple[str, str | None] | None:
    if column.type.startswith("decimal("):
        return ("DECIMAL", "FIXED")
    return _INPUT_TYPES.get(column.type)


def check_dashboard_dataset(datasets: Sequence[Dataset], name: str = DASHBOARD_DATASET) -> None:
    """Raises :class:`DatasetConfigError` when dataset ``name`` (if there is one: without it there is
    no dashboard) lacks a column the dashboard reads, or declares it PII (QuickSight sees none)."""
    for ds in datasets:
        if ds.name != name:
            continue
        declared = {c.name for c in ds.columns}
        problems = [
            (
                "governance.pii_columns" if column in declared else "columns",
                f"the QuickSight dashboard reads {column}"
                + (" and sees no PII: take it out" if column in declared else ": declare it")
                + ", or leave features.quicksight_principal_arn unset",
            )
            for column in DASHBOARD_COLUMNS
            if column not in ds.non_pii_columns
        ]
        if problems:
            raise DatasetConfigError(ds.source_file or ds.name, problems)


def _column(dataset_id: str, name: str) -> dict[str, str]:
    return {"DataSetIdentifier": dataset_id, "ColumnName": name}


def _title(text: str) -> dict[str, Any]:
    return {"Visibility": "VISIBLE", "FormatText": {"PlainText": text}}


def orders_definition(data_set_arn: str, dataset: Dataset) -> dict[str, Any]:
    """One sheet: daily revenue (line), revenue by country (bar), orders by status (funnel).

    Revenue is the sum of ``amount`` over paid and shipped orders, as the shipped Athena query
    computes it, and always per currency (a line or a bar each): a sum of won and euros is no
    amount. The funnel counts distinct orders by their latest status.
    """
    ds = dataset.name
    per_currency = [{"CategoricalDimensionField": {"FieldId": "currency", "Column": _column(ds, "currency")}}]
    revenue = {
        "NumericalMeasureField": {
            "FieldId": "revenue",
            "Column": _column(ds, "amount"),
            "AggregationFunction": {"SimpleNumericalAggregation": "SUM"},
        }
    }
    line = {
        "VisualId": "daily-revenue",
        "Title": _title("Daily revenue by currency (paid and shipped orders, UTC days)"),
        "ChartConfiguration": {
            "FieldWells": {
                "LineChartAggregatedFieldWells": {
                    "Category": [
                        {
                            "DateDimensionField": {
                                "FieldId": "order-day",
                                "Column": _column(ds, dataset.event_time),
                                "DateGranularity": "DAY",
                            }
                        }
                    ],
                    "Values": [revenue],
                    "Colors": per_currency,
                }
            },
        },
    }
    bar = {
        "VisualId": "revenue-by-country",
        "Title": _title("Revenue by country and currency"),
        "ChartConfiguration": {
            "Orientation": "HORIZONTAL",
            # Side by side, never stacked: a stack would add one currency to another.
            "BarsArrangement": "CLUSTERED",
            "FieldWells": {
                "BarChartAggregatedFieldWells": {
                    "Category": [
                        {
                            "CategoricalDimensionField": {
                                "FieldId": "country",
                                "Column": _column(ds, "country"),
                            }
                        }
                    ],
                    "Values": [revenue],
                    "Colors": per_currency,
                }
            },
            # By country: an order by revenue would rank sums of several currencies.
            "SortConfiguration": {
                "CategorySort": [{"FieldSort": {"FieldId": "country", "Direction": "ASC"}}]
            },
        },
    }
    funnel = {
        "VisualId": "status-funnel",
        "Title": _title("Orders by latest status"),
        "ChartConfiguration": {
            "FieldWells": {
                "FunnelChartAggregatedFieldWells": {
                    "Category": [
                        {"CategoricalDimensionField": {"FieldId": "status", "Column": _column(ds, "status")}}
                    ],
                    "Values": [
                        {
                            "CategoricalMeasureField": {
                                "FieldId": "orders",
                                "Column": _column(ds, dataset.record_key),
                                "AggregationFunction": "DISTINCT_COUNT",
                            }
                        }
                    ],
                }
            },
            "SortConfiguration": {
                "CategorySort": [{"FieldSort": {"FieldId": "orders", "Direction": "DESC"}}]
            },
        },
    }
    paid_only = {
        "FilterGroupId": "revenue-statuses",
        "CrossDataset": "SINGLE_DATASET",
        "Status": "ENABLED",
        "Filters": [
            {
                "CategoryFilter": {
                    "FilterId": "paid-or-shipped",
                    "Column": _column(ds, "status"),
                    "Configuration": {
                        "FilterListConfiguration": {
                            "MatchOperator": "CONTAINS",
                            "CategoryValues": list(REVENUE_STATUSES),
                        }
                    },
                }
            }
        ],
        "ScopeConfiguration": {
            "SelectedSheets": {
                "SheetVisualScopingConfigurations": [
                    {
                        "SheetId": "overview",
                        "Scope": "SELECTED_VISUALS",
                        "VisualIds": [line["VisualId"], bar["VisualId"]],
                    }
                ]
            }
        },
    }
    return {
        "DataSetIdentifierDeclarations": [{"Identifier": ds, "DataSetArn": data_set_arn}],
        "Sheets": [
            {
                "SheetId": "overview",
                "Name": "Orders",
                "Visuals": [
                    {"LineChartVisual": line},
                    {"BarChartVisual": bar},
                    {"FunnelChartVisual": funnel},
                ],
            }
        ],
        "FilterGroups": [paid_only],
    }


class QuickSightDashboard(Construct):
    """An Athena data source, one direct-query dataset per lake dataset, and the orders dashboard.

    :param principal_arn: QuickSight user or group that owns every asset (it must exist).
    :param role: the role the data source runs Athena queries as (``Personas.quicksight``).
    :param workgroup: the analysts' Athena workgroup (its cutoff and encryption apply).
    :param dashboard_dataset: name of the dataset the analysis and dashboard are built on; it
        needs the non-PII columns of ``DASHBOARD_COLUMNS`` (the shipped ``orders`` has them).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        principal_arn: str,
        role: iam.IRole,
        workgroup: str,
        database: str,
        datasets: Sequence[Dataset],
        dashboard_dataset: str = DASHBOARD_DATASET,
    ) -> None:
        super().__init__(scope, construct_id)
        account = Aws.ACCOUNT_ID

        def permissions(resource: Any, actions: Sequence[str]) -> list[Any]:
            return [resource.ResourcePermissionProperty(principal=principal_arn, actions=list(actions))]

        self.data_source = quicksight.CfnDataSource(
            self,
            "AthenaSource",
            aws_account_id=account,
            data_source_id=f"{prefix}-athena",
            name=f"{prefix} lake (Athena {workgroup})",
            type="ATHENA",
            data_source_parameters=quicksight.CfnDataSource.DataSourceParametersProperty(
                athena_parameters=quicksight.CfnDataSource.AthenaParametersProperty(
                    work_group=workgroup, role_arn=role.role_arn
                )
            ),
            ssl_properties=quicksight.CfnDataSource.SslPropertiesProperty(disable_ssl=False),
            permissions=permissions(quicksight.CfnDataSource, DATA_SOURCE_ACTIONS),
        )
        self.data_sets: dict[str, quicksight.CfnDataSet] = {}
        for ds in datasets:
            data_set = quicksight.CfnDataSet(
                self,
                f"{ds.construct_id}DataSet",
                aws_account_id=account,
                data_set_id=f"{prefix}-{ds.resource_name}",
                name=f"{prefix} {ds.name} (curated, no PII)",
                import_mode="DIRECT_QUERY",
                permissions=permissions(quicksight.CfnDataSet, DATA_SET_ACTIONS),
            )
            data_set.add_property_override(
                "PhysicalTableMap",
                {
                    # a physical table id allows letters, digits and dashes only
                    ds.resource_name: {
                        "RelationalTable": {
                            "DataSourceArn": self.data_source.attr_arn,
                            "Catalog": "AwsDataCatalog",
                            "Schema": database,
                            "Name": ds.name,
                            "InputColumns": input_columns(ds),
                        }
                    }
                },
            )
            self.data_sets[ds.name] = data_set

        self.analysis: quicksight.CfnAnalysis | None = None
        self.dashboard: quicksight.CfnDashboard | None = None
        chosen = [ds for ds in datasets if ds.name == dashboard_dataset]
        if not chosen:
            return
        (ds,) = chosen
        check_dashboard_dataset(chosen, dashboard_dataset)
        definition = orders_definition(self.data_sets[ds.name].attr_arn, ds)
        self.analysis = quicksight.CfnAnalysis(
            self,
            "Analysis",
            aws_account_id=account,
            analysis_id=f"{prefix}-{ds.resource_name}-analysis",
            name=f"{prefix} {ds.name}",
            permissions=permissions(quicksight.CfnAnalysis, ANALYSIS_ACTIONS),
        )
        self.analysis.add_property_override("Definition", definition)
        self.dashboard = quicksight.CfnDashboard(
            self,
            "Dashboard",
            aws_account_id=account,
            dashboard_id=f"{prefix}-{ds.resource_name}",
            name=f"{prefix} {ds.name}",
            permissions=permissions(quicksight.CfnDashboard, DASHBOARD_ACTIONS),
            dashboard_publish_options=quicksight.CfnDashboard.DashboardPublishOptionsProperty(
                ad_hoc_filtering_option=quicksight.CfnDashboard.AdHocFilteringOptionProperty(
                    availability_status="ENABLED"
                ),
                # Viewers see aggregates; a CSV export would hand out the rows behind them.
                export_to_csv_option=quicksight.CfnDashboard.ExportToCSVOptionProperty(
                    availability_status="DISABLED"
                ),
            ),
        )
        self.dashboard.add_property_override("Definition", definition)
