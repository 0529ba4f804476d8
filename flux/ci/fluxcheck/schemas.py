"""Schema validation of built-in and Gateway API objects (Flux and cert-manager: crs.py)."""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import importlib.resources
import jsonschema
import yaml
from referencing import Registry, Resource

from .model import Obj

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
OBJECT_META_REF = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _path(err: jsonschema.ValidationError) -> str:
    return "/" + "/".join(str(p) for p in err.absolute_path)


def _messages(errors: Iterator[jsonschema.ValidationError], limit: int = 5) -> list[str]:
    out = []
    for err in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        out.append(f"{_path(err)}: {err.message}")
        if len(out) == limit:
            out.append("... (more errors elided)")
            break
    return out


class BuiltinSchemas:
    """The strict Kubernetes schemas shipped by the kubernetes-validate package
    (additionalProperties false everywhere: an unknown field is an error, as with
    `kubectl apply --validate=strict`)."""

    def __init__(self, kube_version: str):
        root = importlib.resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
        available = sorted(
            (p.name for p in root.iterdir() if p.name.endswith("-local-strict")),
            key=lambda n: tuple(int(x) for x in n[1:].split("-")[0].split(".")),
        )
        want = tuple(int(x) for x in kube_version.split("."))[:2]
        chosen = [n for n in available if tuple(int(x) for x in n[1:].split("-")[0].split("."))[:2] <= want]
        if not chosen:
            raise SystemExit(f"kubernetes-validate has no schemas for Kubernetes {kube_version}")
        self.dir = root.joinpath(chosen[-1])
        self.version = chosen[-1][1:].split("-")[0]
        defs = json.loads(self.dir.joinpath("_definitions.json").read_text(encoding="utf-8"))
        self.registry = Resource.from_contents(defs) @ Registry()

    @lru_cache(maxsize=None)
    def _validator(self, kind: str, api_version: str) -> jsonschema.Validator | None:
        # rbac.authorization.k8s.io/v1 -> rbac-v1, apps/v1 -> apps-v1, v1 -> v1
        av = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        f = self.dir.joinpath(f"{kind.lower()}-{av}.json")
        if not f.is_file():
            return None
        schema = json.loads(f.read_text(encoding="utf-8"))
        registry = Resource.from_contents(schema) @ self.registry
        return jsonschema.Draft202012Validator(schema, registry=registry)

    def validate(self, o: Obj) -> list[str]:
        v = self._validator(o.kind, o.api_version)
        if v is None:
            return [f"no Kubernetes {self.version} schema for {o.api_version} {o.kind}"]
        return _messages(v.iter_errors(o.obj))

    @lru_cache(maxsize=1)
    def _meta_validator(self) -> jsonschema.Validator:
        return jsonschema.Draft202012Validator({"$ref": OBJECT_META_REF}, registry=self.registry)

    def validate_metadata(self, o: Obj) -> list[str]:
        """ObjectMeta of custom resources (their CRD schemas only say `type: object`)."""
        meta = o.obj.get("metadata")
        if not isinstance(meta, dict):
            return ["/metadata: missing"]
        return [f"/metadata{m}" for m in _messages(self._meta_validator().iter_errors(meta))]


def strict_openapi(schema: Any) -> Any:
    """A CRD openAPIV3Schema as JSON Schema with the API server's strictness: an object
    that declares `properties` accepts no other key unless it preserves unknown fields,
    and `nullable: true` admits null."""
    if isinstance(schema, list):
        return [strict_openapi(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_openapi(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


class CrdSchemas:
    """Validators for the kinds of a set of CRD files (here: Gateway API v1.6.1)."""

    def __init__(self, crd_dir: Path):
        self.validators: dict[tuple[str, str], jsonschema.Validator] = {}
        self.unserved: set[tuple[str, str]] = set()
        self.scopes: dict[str, bool] = {}
        self.bundle_versions: set[str] = set()
        for f in sorted(crd_dir.glob("*.yaml")):
            for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                bundle = (doc.get("metadata", {}).get("annotations") or {}).get("gateway.networking.k8s.io/bundle-version")
                if bundle:
                    self.bundle_versions.add(bundle)
                kind = spec["names"]["kind"]
                self.scopes[kind] = spec.get("scope") == "Namespaced"
                for ver in spec["versions"]:
                    api_version = f"{spec['group']}/{ver['name']}"
                    if not ver.get("served", False):
                        self.unserved.add((api_version, kind))
                        continue
                    schema = strict_openapi(copy.deepcopy(ver["schema"]["openAPIV3Schema"]))
                    self.validators[(api_version, kind)] = jsonschema.Draft7Validator(schema)
        if not self.validators:
            raise SystemExit(f"no CRD found in {crd_dir}")

    def validate(self, o: Obj) -> list[str]:
        key = (o.api_version, o.kind)
        if key in self.unserved:
            return [f"{o.api_version} {o.kind} is not served by these CRDs (use a newer version)"]
        v = self.validators.get(key)
        if v is None:
            return [f"no CRD schema for {o.api_version} {o.kind}"]
        return _messages(v.iter_errors(o.obj))


def check_name(o: Obj) -> list[str]:
    name = o.name
    if not name:
        return ["/metadata/name: missing"]
    # RBAC names may contain ':' (system:...); everything used here is a DNS subdomain.
    if o.group == "rbac.authorization.k8s.io":
        return []
    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        return [f"/metadata/name: {name!r} is not a DNS-1123 subdomain"]
    return []
