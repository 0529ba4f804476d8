"""Rendering like Flux's kustomize-controller: build a directory, substitute variables."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .model import Obj

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# Bound every external command: CI must never hang on one.
KUBECTL_TIMEOUT_S = 120


class RenderError(Exception):
    pass


def kustomization_file(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def load_docs(text: str, source: str) -> list[dict[str, Any]]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise RenderError(f"{source}: invalid YAML: {e}") from e
    out = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise RenderError(f"{source}: a document is not a mapping")
        out.append(doc)
    return out


def kustomize_build(directory: Path, repo: Path) -> list[dict[str, Any]]:
    rel = directory.relative_to(repo).as_posix()
    try:
        proc = subprocess.run(
            ["kubectl", "kustomize", str(directory)],
            capture_output=True,
            text=True,
            timeout=KUBECTL_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as e:
        raise RenderError("kubectl not found: it renders the kustomizations") from e
    except subprocess.TimeoutExpired as e:
        raise RenderError(f"{rel}: kubectl kustomize timed out") from e
    if proc.returncode != 0:
        raise RenderError(f"{rel}: kubectl kustomize failed: {proc.stderr.strip()}")
    return load_docs(proc.stdout, rel)


def load_flux_path(directory: Path, repo: Path) -> list[dict[str, Any]]:
    """What kustomize-controller applies for a Kustomization path: the kustomize build
    if the directory has a kustomization file, otherwise every YAML file under it
    (Flux generates a kustomization listing them)."""
    if not directory.is_dir():
        raise RenderError(f"{directory.relative_to(repo).as_posix()}: no such directory")
    if kustomization_file(directory) is not None:
        return kustomize_build(directory, repo)
    docs: list[dict[str, Any]] = []
    for f in sorted(directory.rglob("*")):
        if f.suffix not in (".yaml", ".yml") or any(p.startswith(".") for p in f.relative_to(directory).parts):
            continue
        docs.extend(load_docs(f.read_text(encoding="utf-8"), f.relative_to(repo).as_posix()))
    return docs


# Flux post-build substitution (drone/envsubst syntax as Flux documents it):
# ${var}, ${var:=default}, ${var:-default}; "$${" escapes a literal "${".
_VAR = re.compile(r"\$\$|\$\{([^}]*)\}")
_NAME = re.compile(r"^[_a-zA-Z][_a-zA-Z0-9]*$")
SUBSTITUTE_ANNOTATION = "kustomize.toolkit.fluxcd.io/substitute"


def substitute_text(text: str, variables: dict[str, str], where: str, problems: list[str]) -> str:
    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        expr = m.group(1)
        name, default = expr, None
        for op in (":=", ":-"):
            if op in expr:
                name, default = expr.split(op, 1)
                break
        if not _NAME.match(name):
            problems.append(f"{where}: unsupported substitution ${{{expr}}}")
            return m.group(0)
        if name in variables:
            return variables[name]
        if default is not None:
            return default
        # Flux would silently substitute "" here; an undefined variable is always a bug.
        problems.append(f"{where}: variable ${{{name}}} is not defined")
        return m.group(0)

    return _VAR.sub(repl, text)


def substitute(o: Obj, variables: dict[str, str], problems: list[str]) -> Obj:
    annotations = (o.obj.get("metadata") or {}).get("annotations") or {}
    if annotations.get(SUBSTITUTE_ANNOTATION) == "disabled":
        return o
    text = yaml.safe_dump(o.obj, sort_keys=False, width=1 << 30)
    out = substitute_text(text, variables, o.label(), problems)
    if out == text:
        return o
    return Obj(yaml.safe_load(out), o.source, o.layer, o.kustomization)


def configmap_data(objs: list[Obj]) -> dict[tuple[str, str], dict[str, str]]:
    """ConfigMaps by (namespace, name), for substituteFrom."""
    out = {}
    for o in objs:
        if o.api_version == "v1" and o.kind == "ConfigMap":
            data = o.obj.get("data") or {}
            out[(o.namespace, o.name)] = {str(k): str(v) for k, v in data.items()}
    return out
