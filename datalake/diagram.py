"""The architecture diagram, drawn from the synthesized cloud assembly as Mermaid.

Every node is a resource found in the templates, named by its physical name; every edge comes from
what the templates say (a bucket's encryption key, a job's paths, a state machine's definition,
a schedule's target, a Lake Formation registration). Nothing is drawn that the app does not
synthesize, so the README's diagram cannot drift from the code: ``tests/test_diagram.py``
regenerates it and compares.

    make diagram                         # synth, then rewrite the README's diagram block
    python -m datalake.diagram cdk.out   # print the Mermaid for an existing assembly
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datalake.assembly import nested_template_files, stack_template_files, with_nested

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- diagram:start (make diagram) -->", "<!-- diagram:end -->"
_PSEUDO = {"AWS::AccountId": "<account>", "AWS::Region": "<region>", "AWS::Partition": "aws"}
ZONES = ("raw", "curated", "analytics", "athena-results", "access-logs", "audit")


def text(value: Any) -> str:
    """A CloudFormation value as readable text: intrinsics become placeholders or their names."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(text(v) for v in value)
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return _PSEUDO.get(arg, f"<{arg}>")
        if fn == "Fn::Join":
            return text(arg[0]).join(text(v) for v in arg[1])
        if fn == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>" if isinstance(arg, list) else f"<{arg}>"
        if fn == "Fn::Sub":
            template = arg if isinstance(arg, str) else arg[0]
            return re.sub(r"\$\{([^}]+)\}", lambda m: _PSEUDO.get(m.group(1), f"<{m.group(1)}>"), template)
        if fn in ("Fn::Select", "Fn::GetStackOutput", "Fn::ImportValue", "Fn::GetAZs"):
            return "<import>"
    return json.dumps(value, sort_keys=True)


def referenced(value: Any) -> set[str]:
    """Logical ids a value points at (Ref / Fn::GetAtt), at any depth."""
    found: set[str] = set()
    if isinstance(value, dict):
        for fn, arg in value.items():
            if fn == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif fn == "Fn::GetAtt":
                found.add(arg[0] if isinstance(arg, list) else arg.split(".")[0])
            else:
                found |= referenced(arg)
    elif isinstance(value, list):
        for v in value:
            found |= referenced(v)
    return found


def _node_id(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")


@dataclass
class Diagram:
    """Nodes grouped by stack, and edges; rendered in a stable order."""

    groups: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    edges: set[tuple[str, str, str, str]] = field(default_factory=set)

    def node(self, group: str, label: str, shape: str = "box") -> str:
        nid = _node_id(f"{shape} {label}")
        entry = (nid, label, shape)
        members = self.groups.setdefault(group, [])
        if entry not in members:
            members.append(entry)
        return nid

    def edge(self, source: str, target: str, label: str = "", style: str = "-->") -> None:
        if source != target:
            self.edges.add((source, target, label, style))

    def render(self) -> str:
        shapes = {
            "box": '["{}"]',
            "db": '[("{}")]',
            "store": '[("{}")]',
            "round": '("{}")',
            "key": '{{"{}"}}',
        }
        lines = ["flowchart LR"]
        for group in self.groups:
            lines.append(f'  subgraph {_node_id(group)}["{group}"]')
            for nid, label, shape in sorted(self.groups[group]):
                lines.append(f"    {nid}{shapes[shape].format(label)}")
            lines.append("  end")
        for source, target, label, style in sorted(self.edges):
            arrow = f"{style}|{label}|" if label else style
            lines.append(f"  {source} {arrow} {target}")
        return "\n".join(lines)


class Assembly:
    """The templates of one synthesized app: ``{stack name: template}``, each with its nested
    stacks' resources."""

    def __init__(self, templates: dict[str, dict[str, Any]]) -> None:
        self.templates = templates

    @classmethod
    def from_dir(cls, outdir: Path) -> Assembly:
        nested = nested_template_files(outdir)
        return cls(
            {
                name: with_nested(outdir, json.loads(path.read_text()), nested)
                for name, (path, _) in stack_template_files(outdir).items()
            }
        )

    def resources(self, type_: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(stack, logical id, properties) of every resource of a type, in a stable order."""
        for stack in sorted(self.templates):
            for logical, resource in sorted(self.templates[stack].get("Resources", {}).items()):
                if resource["Type"] == type_:
                    yield stack, logical, resource.get("Properties", {})

    def stack_of(self, suffix: str) -> str:
        (name,) = [s for s in self.templates if s.endswith(f"-{suffix}")]
        return name


def _zone_of(value: str, prefix: str) -> str | None:
    for zone in ZONES:
        if f"{prefix}-{zone}-" in value:
            return zone
    return None


def build(assembly: Assembly) -> Diagram:
    d = Diagram()
    foundation = assembly.stack_of("foundation")
    prefix = foundation.removesuffix("-foundation")

    # Zones and the keys that encrypt them.
    buckets: dict[str, str] = {}
    zone_of_bucket: dict[str, str] = {}  # logical id -> zone
    keys: dict[str, str] = {}
    aliases = {
        next(iter(referenced(p["TargetKeyId"]))): p["AliasName"]
        for _, _, p in assembly.resources("AWS::KMS::Alias")
    }
    for stack, logical, _ in assembly.resources("AWS::KMS::Key"):
        keys[logical] = d.node(stack, "KMS " + aliases.get(logical, logical).removeprefix("alias/"), "key")
    for stack, logical, props in assembly.resources("AWS::S3::Bucket"):
        name = text(props.get("BucketName", ""))
        zone = _zone_of(name, prefix)
        if zone is None:
            continue
        buckets[zone] = d.node(stack, f"S3 {zone}: {name}", "store")
        zone_of_bucket[logical] = zone
        rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        for rule in rules:
            for key in referenced(rule.get("ServerSideEncryptionByDefault", {})):
                if key in keys:
                    d.edge(keys[key], buckets[zone], "encrypts", "-.->")

    # Ingestion: producers, Firehose and its transform, into the raw zone.
    functions = {}
    for stack, _, props in assembly.resources("AWS::KinesisFirehose::DeliveryStream"):
        stream = d.node(stack, f"Firehose {props['DeliveryStreamName']}")
        d.edge(d.node("producers", "producers (PutRecordBatch)", "round"), stream)
        dest = props.get("ExtendedS3DestinationConfiguration", {})
        for processor in dest.get("ProcessingConfiguration", {}).get("Processors", []):
            for logical_fn in referenced(processor):
                functions[logical_fn] = d.node(stack, "Lambda transform (validate, partition keys)")
                d.edge(stream, functions[logical_fn], "records")
        if "raw" in buckets:
            d.edge(stream, buckets["raw"], "JSON by event hour; rejects")

    # Processing: job, crawler, data quality, state machine, schedule.
    jobs: dict[str, str] = {}
    for stack, logical, props in assembly.resources("AWS::Glue::Job"):
        job = d.node(stack, f"Glue job {props['Name']} ({props.get('GlueVersion', '')})")
        jobs[props["Name"]] = jobs[f"<{logical}>"] = job
        args = props.get("DefaultArguments", {})
        for arg, direction in (("--raw_path", "in"), ("--curated_path", "out"), ("--quarantine_path", "out")):
            zone = _zone_of(text(args.get(arg, "")), prefix)
            if zone in buckets:
                if direction == "in":
                    d.edge(buckets[zone], job, "new days")
                else:
                    d.edge(job, buckets[zone], "Parquet" if arg == "--curated_path" else "quarantine")
    databases: dict[str, str] = {}
    db_names = {
        f"<{logical}>": p["DatabaseInput"]["Name"]
        for _, logical, p in assembly.resources("AWS::Glue::Database")
    }
    tables: dict[str, list[str]] = {}
    for _, _, props in assembly.resources("AWS::Glue::Table"):
        db = text(props["DatabaseName"])
        tables.setdefault(db_names.get(db, db), []).append(props["TableInput"]["Name"])
    for stack, _, props in assembly.resources("AWS::Glue::Database"):
        name = props["DatabaseInput"]["Name"]
        listed = ", ".join(sorted(tables.get(name, [])))
        databases[name] = d.node(stack, f"Glue database {name}" + (f": {listed}" if listed else ""), "db")
    curated_db = next((db for db in databases if db.endswith("_curated")), None)
    for job in set(jobs.values()):
        if curated_db:
            d.edge(job, databases[curated_db], "BatchCreatePartition")
    crawlers: dict[str, str] = {}
    for stack, logical, props in assembly.resources("AWS::Glue::Crawler"):
        crawler = d.node(stack, f"crawler {props['Name']}")
        crawlers[props["Name"]] = crawlers[f"<{logical}>"] = crawler
        db = text(props.get("DatabaseName", ""))
        for name, node in databases.items():
            if name in db:
                d.edge(crawler, node, "logs drift")
    rulesets: dict[str, str] = {}
    for stack, logical, props in assembly.resources("AWS::Glue::DataQualityRuleset"):
        ruleset = d.node(stack, f"DQDL {props['Name']}")
        rulesets[props["Name"]] = rulesets[f"<{logical}>"] = ruleset
        if curated_db:
            d.edge(ruleset, databases[curated_db], "evaluates")
    machines: dict[str, str] = {}
    definitions: dict[str, str] = {}  # machine node: its definition as written, references included
    for stack, logical, props in assembly.resources("AWS::StepFunctions::StateMachine"):
        machines[logical] = machine = d.node(
            stack, f"Step Functions {text(props.get('StateMachineName', logical))}"
        )
        definitions[machine] = json.dumps(props.get("DefinitionString", ""))
        definition = text(props.get("DefinitionString", ""))
        for name, node in {**jobs, **crawlers, **rulesets}.items():
            if name in definition:
                d.edge(machine, node, "runs")
        if "UNLOAD" in definition and "analytics" in buckets:
            d.edge(machine, buckets["analytics"], "UNLOAD Parquet")
    # A function a schedule invokes is named by its handler's module: "Lambda trail check".
    scheduled: dict[str, dict[str, Any]] = {}
    lambdas = {(stack, logical): p for stack, logical, p in assembly.resources("AWS::Lambda::Function")}
    for stack, _, props in assembly.resources("AWS::Scheduler::Schedule"):
        schedule = d.node(stack, f"schedule {props['ScheduleExpression']}", "round")
        for target in referenced(props.get("Target", {}).get("Arn")):
            if target in machines:
                d.edge(schedule, machines[target], "starts")
            elif (stack, target) in lambdas:
                handler = lambdas[(stack, target)]
                module = handler["Handler"].split(".")[0].replace("_", " ")
                node = d.node(stack, f"Lambda {module}")
                scheduled[node] = handler
                d.edge(schedule, node, "invokes")

    # Consumption: Athena, Redshift, QuickSight.
    workgroups: dict[str, str] = {}
    for stack, logical, props in assembly.resources("AWS::Athena::WorkGroup"):
        workgroups[logical] = wg = d.node(stack, f"Athena workgroup {props['Name']}")
        reads = "audit" if props["Name"].endswith("-audit") else "curated"
        for name, node in databases.items():
            if name.endswith(f"_{reads}"):
                d.edge(node, wg, "queries")
        results = text(
            props["WorkGroupConfiguration"].get("ResultConfiguration", {}).get("OutputLocation", "")
        )
        if _zone_of(results, prefix) == "athena-results":
            d.edge(wg, buckets["athena-results"], "results")
    for stack, _, props in assembly.resources("AWS::RedshiftServerless::Workgroup"):
        redshift = d.node(stack, f"Redshift Serverless {props['WorkgroupName']} (Spectrum, masking)")
        if curated_db:
            d.edge(databases[curated_db], redshift, "external schema")
        # a schedule that calls the Data API on this workgroup (a universal target names a call)
        for caller_stack, _, caller in assembly.resources("AWS::Scheduler::Schedule"):
            target = caller.get("Target", {})
            if ":aws-sdk:redshiftdata:" not in text(target.get("Arn", "")):
                continue
            if json.loads(target.get("Input", "{}")).get("WorkgroupName") == props["WorkgroupName"]:
                node = d.node(caller_stack, f"schedule {caller['ScheduleExpression']}", "round")
                d.edge(node, redshift, "refreshes")
    for stack, _, props in assembly.resources("AWS::QuickSight::Dashboard"):
        dashboard = d.node(stack, f"QuickSight dashboard {props['Name']}")
        for wg in workgroups.values():
            if "analysts" in wg:
                d.edge(wg, dashboard, "direct query")

    # Governance: Lake Formation, personas, Macie, CloudTrail, alerts.
    governance = assembly.stack_of("governance")
    registered = list(assembly.resources("AWS::LakeFormation::Resource"))
    grants = list(assembly.resources("AWS::LakeFormation::PrincipalPermissions"))
    if registered:
        tags = [p["TagKey"] for _, _, p in assembly.resources("AWS::LakeFormation::Tag")]
        lake_formation = d.node(governance, f"Lake Formation: tags {', '.join(tags)}; {len(grants)} grants")
        for _, _, props in registered:
            zone = _zone_of(text(props["ResourceArn"]), prefix)
            if zone in buckets:
                d.edge(lake_formation, buckets[zone], "registers", "-.->")
        for node in databases.values():
            d.edge(lake_formation, node, "governs", "-.->")
    roles = sorted(
        text(p["RoleName"])
        for stack, _, p in assembly.resources("AWS::IAM::Role")
        if stack == governance and "RoleName" in p
    )
    if roles:
        d.node(governance, "personas and roles: " + ", ".join(r.removeprefix(f"{prefix}-") for r in roles))
    for stack, _, _props in assembly.resources("Custom::MacieClassificationJob"):
        macie = d.node(stack, "Macie classification job")
        for zone in ("raw", "curated"):
            if zone in buckets:
                d.edge(macie, buckets[zone], "scans for PII", "-.->")
    for stack, _, props in assembly.resources("AWS::CloudTrail::Trail"):
        trail = d.node(stack, "CloudTrail (S3 data events)")
        for node, handler in scheduled.items():
            if handler.get("Environment", {}).get("Variables", {}).get("TRAIL_NAME") == props["TrailName"]:
                d.edge(node, trail, "checks deliveries")
        for bucket in referenced(props.get("S3BucketName", "")):
            if bucket in zone_of_bucket:
                d.edge(trail, buckets[zone_of_bucket[bucket]], "logs", "-.->")
    alarms = [props for _, _, props in assembly.resources("AWS::CloudWatch::Alarm")]
    alarm_actions = json.dumps([a.get("AlarmActions") for a in alarms])
    for stack, logical, props in assembly.resources("AWS::SNS::Topic"):
        # "<prefix> data lake alerts", "<prefix> data lake pipeline notices"
        name = props.get("TopicName") or text(props.get("DisplayName", "alerts")).rsplit("data lake ", 1)[-1]
        topic = d.node(stack, f"SNS {name}", "round")
        if logical in alarm_actions:  # a reference to the topic names its logical id
            watch = d.node(assembly.stack_of("observability"), f"{len(alarms)} CloudWatch alarms, dashboard")
            d.edge(watch, topic, "alarm")
            continue
        for machine, definition in definitions.items():
            if logical in definition:
                d.edge(machine, topic, "run succeeded")
    return d


def mermaid(outdir: Path) -> str:
    return build(Assembly.from_dir(outdir)).render()


def readme_block(diagram: str) -> str:
    return f"{START}\n```mermaid\n{diagram}\n```\n{END}"


def current_readme_diagram(readme: Path = README) -> str | None:
    match = re.search(
        re.escape(START) + r"\n```mermaid\n(.*?)\n```\n" + re.escape(END), readme.read_text(), re.S
    )
    return match.group(1) if match else None


def write_readme(diagram: str, readme: Path = README) -> bool:
    """Put ``diagram`` between the markers; True when the README changed."""
    content = readme.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(content):
        raise SystemExit(f"{readme}: add the lines {START!r} and {END!r} where the diagram goes")
    updated = pattern.sub(lambda _: readme_block(diagram), content)
    readme.write_text(updated)
    return updated != content


def main(argv: Iterable[str]) -> int:
    args = list(argv)
    write = "--write-readme" in args
    paths = [a for a in args if not a.startswith("--")]
    outdir = Path(paths[0] if paths else "cdk.out")
    if not (outdir / "manifest.json").exists():
        print(f"error: no cloud assembly in {outdir}: run `make synth` first", file=sys.stderr)
        return 2
    diagram = mermaid(outdir)
    if write:
        print(f"README.md {'updated' if write_readme(diagram) else 'already up to date'}")
    else:
        print(diagram)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
