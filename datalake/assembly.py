"""Reading a synthesized cloud assembly's nested stacks.

CDK writes a nested stack's template beside its parent's (``<id>.nested.template.json``) and names
it in the parent's ``TemplateURL`` by the asset hash the assets manifests map to the file. A
stale file of an earlier synth (another stage, a removed dataset) stays in the directory, so what
belongs to a stack is found from its template, never by globbing the directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def nested_template_files(outdir: Path) -> dict[str, str]:
    """The nested stacks' template files of a cloud assembly, by the asset hash that names them
    in their parent's ``TemplateURL`` (from the assets manifests CDK writes beside them)."""
    files: dict[str, str] = {}
    for manifest in outdir.glob("*.assets.json"):
        for asset_hash, asset in json.loads(manifest.read_text()).get("files", {}).items():
            if asset["source"].get("path", "").endswith(".nested.template.json"):
                files[asset_hash] = asset["source"]["path"]
    return files


def nested_templates(
    outdir: Path, template: dict[str, Any], files: dict[str, str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, template) of each stack nested in ``template``, at any depth, parents first;
    ``files`` from :func:`nested_template_files`."""
    for resource in template.get("Resources", {}).values():
        if resource["Type"] != "AWS::CloudFormation::Stack":
            continue
        url = resource["Properties"]["TemplateURL"]["Fn::Join"][1][-1]  # ".../<asset hash>.json"
        path = files[url.rsplit("/", 1)[-1].removesuffix(".json")]
        inner = json.loads((outdir / path).read_text())
        yield path, inner
        yield from nested_templates(outdir, inner, files)


def stack_template_files(outdir: Path) -> dict[str, tuple[Path, list[Path]]]:
    """Each stack of the cloud assembly in ``outdir`` (its manifest's), by its name: its template
    file and those of the stacks nested in it, at any depth, found from its template."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    files = nested_template_files(outdir)
    stacks = {}
    for artifact in manifest["artifacts"].values():
        if artifact["type"] == "aws:cloudformation:stack":
            props = artifact["properties"]
            path = outdir / props["templateFile"]
            name = props.get("stackName") or path.name.split(".")[0]
            nested = [outdir / n for n, _ in nested_templates(outdir, json.loads(path.read_text()), files)]
            stacks[name] = (path, nested)
    return stacks


def with_nested(outdir: Path, template: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    """``template`` with the resources and outputs of its nested stacks (a dataset's each)
    merged in, as if it held them: their logical ids are distinct. The
    ``AWS::CloudFormation::Stack`` resources that deploy them stay, as the parent's outputs refer
    to them."""
    merged = {
        **template,
        "Resources": dict(template.get("Resources", {})),
        "Outputs": dict(template.get("Outputs", {})),
    }
    for _, inner in nested_templates(outdir, template, files):
        merged["Resources"].update(inner.get("Resources", {}))
        merged["Outputs"].update(inner.get("Outputs", {}))
    return merged


def joined_json(value: str | dict[str, Any]) -> Any:
    """A JSON document a template gives as a string or builds with ``Fn::Join`` (a state
    machine's definition, a dashboard's body); its tokens (ARNs, names, the region) always sit
    inside JSON strings, read here as ``TOKEN``."""
    if isinstance(value, str):
        return json.loads(value)
    return json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in value["Fn::Join"][1]))
