"""Resolve the intrinsic functions of synthesized templates to the values a deployment would give.

Enough of CloudFormation for the offline pipeline and alert tests: the pseudo parameters, ``Ref``
and ``Fn::GetAtt`` of the resource types those stacks refer to, ``Fn::Join``, ``Fn::Sub``
and the cross-stack ``Fn::GetStackOutput``. Anything else fails with the function and the stack named,
so a template that grows a new kind of reference is noticed rather than half resolved.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

ACCOUNT = "123456789012"
REGION = "eu-west-1"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
}
#: The property that names a resource of each type (what ``Ref`` returns, or builds the ARN from).
NAME_PROPERTY = {
    "AWS::Glue::Job": "Name",
    "AWS::Glue::Crawler": "Name",
    "AWS::Glue::SecurityConfiguration": "Name",
    "AWS::SNS::Topic": "TopicName",
    "AWS::IAM::Role": "RoleName",
    "AWS::CloudTrail::Trail": "TrailName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Athena::WorkGroup": "Name",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Glue::Database": "DatabaseInput.Name",
    "AWS::KinesisFirehose::DeliveryStream": "DeliveryStreamName",
    "AWS::Lambda::Function": "FunctionName",
}
#: ``Fn::GetAtt <resource>.Arn`` of these types: the naming property, CloudFormation's longest
#: generated name, and the ARN's shape.
GENERATED_ARNS = {
    "AWS::SQS::Queue": ("QueueName", 80, "arn:aws:sqs:{region}:{account}:{name}"),
    "AWS::Events::Rule": ("Name", 64, "arn:aws:events:{region}:{account}:rule/{name}"),
    "AWS::Logs::LogGroup": ("LogGroupName", 512, "arn:aws:logs:{region}:{account}:log-group:{name}:*"),
    "AWS::Lambda::Function": ("FunctionName", 64, "arn:aws:lambda:{region}:{account}:function:{name}"),
    "AWS::KinesisFirehose::DeliveryStream": (
        "DeliveryStreamName",
        64,
        "arn:aws:firehose:{region}:{account}:deliverystream/{name}",
    ),
    "AWS::Kinesis::Stream": ("Name", 128, "arn:aws:kinesis:{region}:{account}:stream/{name}"),
    "AWS::StepFunctions::StateMachine": (
        "StateMachineName",
        80,
        "arn:aws:states:{region}:{account}:stateMachine:{name}",
    ),
}
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class Resolver:
    """Values of template expressions, given every stack's template by stack name."""

    def __init__(self, templates: dict[str, dict[str, Any]]) -> None:
        self.templates = templates

    def resolve(self, stack: str, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(stack, n) for n in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref":
                return self._ref(stack, arg)
            if fn == "Fn::GetAtt":
                return self._get_att(stack, *arg)
            if fn == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(stack, p)) for p in self.resolve(stack, parts))
            if fn == "Fn::Sub":
                return self._sub(stack, arg)
            if fn == "Fn::GetStackOutput":
                other = arg["StackName"]
                return self.resolve(other, self._template(other)["Outputs"][arg["OutputName"]]["Value"])
            if fn.startswith("Fn::") or fn == "Condition":
                raise NotImplementedError(f"{stack}: {fn} is not resolved offline (tests/cfn_resolve.py)")
        return {k: self.resolve(stack, v) for k, v in node.items()}

    def _template(self, stack: str) -> dict[str, Any]:
        if stack not in self.templates:
            raise KeyError(f"no synthesized template for stack {stack}")
        return self.templates[stack]

    def physical_name(self, stack: str, logical_id: str) -> str:
        resource = self._template(stack)["Resources"][logical_id]
        path = NAME_PROPERTY.get(resource["Type"])
        if path is None:
            raise NotImplementedError(
                f"{stack}: Ref of {resource['Type']} ({logical_id}) is not resolved offline"
            )
        value: Any = resource.get("Properties", {})
        for part in path.split("."):  # a nested property: DatabaseInput.Name
            value = value.get(part) if isinstance(value, dict) else None
        # CloudFormation generates a name when the template gives none; the logical id stands in.
        return logical_id if value is None else str(self.resolve(stack, value))

    def _ref(self, stack: str, name: str) -> str:
        if name in PSEUDO:
            return PSEUDO[name]
        resource_type = self._template(stack)["Resources"][name]["Type"]
        if resource_type == "AWS::KMS::Key":
            return key_id(name)
        if resource_type == "AWS::StepFunctions::StateMachine":  # its Ref is its ARN
            return self._get_att(stack, name, "Arn")
        physical = self.physical_name(stack, name)
        if resource_type == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{physical}"
        return physical

    def _get_att(self, stack: str, logical_id: str, attribute: str) -> str:
        resource_type = self._template(stack)["Resources"][logical_id]["Type"]
        if resource_type == "AWS::CloudFormation::Stack" and attribute.startswith("Outputs."):
            # a nested stack's output: the templates given hold it merged into its parent's
            output = attribute.removeprefix("Outputs.")
            return str(self.resolve(stack, self._template(stack)["Outputs"][output]["Value"]))
        if (resource_type, attribute) == ("AWS::IAM::Role", "Arn"):
            return f"arn:aws:iam::{ACCOUNT}:role/{self.physical_name(stack, logical_id)}"
        if (resource_type, attribute) == ("AWS::KMS::Key", "Arn"):
            return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id(logical_id)}"
        if (resource_type, attribute) == ("AWS::S3::Bucket", "Arn"):
            return f"arn:aws:s3:::{self.physical_name(stack, logical_id)}"
        if (resource_type, attribute) == ("AWS::CloudTrail::Trail", "Arn"):
            return f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/{self.physical_name(stack, logical_id)}"
        if (resource_type, attribute) == ("AWS::EC2::VPC", "DefaultSecurityGroup"):
            return f"sg-{key_id(logical_id).replace('-', '')[:17]}"  # an id EC2 makes; one stands in
        serverless = {
            ("AWS::RedshiftServerless::Workgroup", "Workgroup.WorkgroupArn"): "workgroup",
            ("AWS::RedshiftServerless::Namespace", "Namespace.NamespaceArn"): "namespace",
        }
        if (resource_type, attribute) in serverless:
            # Redshift Serverless names them in their ARNs by ids it makes; the logical id's stands in
            kind = serverless[(resource_type, attribute)]
            return f"arn:aws:redshift-serverless:{REGION}:{ACCOUNT}:{kind}/{key_id(logical_id)}"
        # named or not: an unnamed one as long as the name CloudFormation would generate
        if attribute == "Arn" and resource_type in GENERATED_ARNS:
            name_property, limit, arn = GENERATED_ARNS[resource_type]
            given = self._template(stack)["Resources"][logical_id].get("Properties", {}).get(name_property)
            name = generated_name(stack, logical_id, limit) if given is None else self.resolve(stack, given)
            return arn.format(region=REGION, account=ACCOUNT, name=name)
        raise NotImplementedError(f"{stack}: Fn::GetAtt {resource_type}.{attribute} is not resolved offline")

    def _sub(self, stack: str, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else arg

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(stack, variables[name]))
            if "." in name:
                return str(self._get_att(stack, *name.split(".", 1)))
            return str(self._ref(stack, name))

        return _SUB_VARIABLE.sub(value, text)


def generated_name(stack: str, logical_id: str, limit: int) -> str:
    """A name of the shape CloudFormation generates for a resource the template names not
    (``<stack>-<logical id>-<random suffix>``, cut to the resource type's ``limit``), for
    measuring what holds it."""
    return f"{stack}-{logical_id}-{uuid.uuid5(uuid.NAMESPACE_URL, logical_id).hex[:12].upper()}"[:limit]


def key_id(logical_id: str) -> str:
    """A KMS key's id (its ``Ref``): a UUID KMS makes at creation; one derived from the logical id
    stands in."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, logical_id))
