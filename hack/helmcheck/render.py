"""helm lint and helm template, bounded by timeouts; values sets taken from the repo."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Bound every helm run: CI must never hang on one.
HELM_TIMEOUT_S = 120
NAMESPACE = "portico-system"
RELEASE = "portico"
VARIABLE = re.compile(r"\$\{([a-z0-9_]+)\}")


class HelmError(Exception):
    pass


@dataclass
class ValuesSet:
    """One way the chart is installed: a name, where it comes from, the values."""

    name: str
    source: str
    values: dict[str, Any]


def run_helm(helm: Path, args: list[str]) -> str:
    try:
        proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=HELM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        raise HelmError(f"helm {' '.join(args[:2])} timed out") from e
    if proc.returncode != 0:
        raise HelmError(f"helm {' '.join(args[:2])} failed:\n{proc.stdout}{proc.stderr}".strip())
    return proc.stdout


def values_file(work: Path, vs: ValuesSet) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    f = work / f"{vs.name}.yaml"
    f.write_text(yaml.safe_dump(vs.values, sort_keys=True), encoding="utf-8")
    return f


def lint(helm: Path, chart: Path, values: Path) -> None:
    run_helm(helm, ["lint", "--strict", str(chart), "--namespace", NAMESPACE, "--values", str(values)])


def template(helm: Path, chart: Path, values: Path) -> list[dict[str, Any]]:
    out = run_helm(
        helm,
        ["template", RELEASE, str(chart), "--namespace", NAMESPACE, "--include-crds", "--values", str(values)],
    )
    return [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's and Flux's merge of values: maps merge, everything else is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def substitute(text: str, variables: dict[str, str], source: str) -> str:
    missing = sorted({m for m in VARIABLE.findall(text) if m not in variables})
    if missing:
        raise HelmError(f"{source}: no value for {', '.join(missing)}")
    return VARIABLE.sub(lambda m: variables[m.group(1)], text)


def _configmap_data(path: Path) -> dict[str, str]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {k: str(v) for k, v in (doc.get("data") or {}).items()}


def _helmrelease_values(path: Path) -> dict[str, Any]:
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if isinstance(doc, dict) and doc.get("kind") == "HelmRelease":
            return ((doc.get("spec") or {}).get("values")) or {}
    raise HelmError(f"{path}: no HelmRelease")


def ci_values(repo: Path, chart: Path) -> list[ValuesSet]:
    sets = []
    for f in sorted((chart / "ci").glob("*-values.yaml")):
        values = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        sets.append(ValuesSet(f.name.removesuffix("-values.yaml"), f.relative_to(repo).as_posix(), values))
    return sets


def delivery_values(repo: Path) -> list[ValuesSet]:
    """The values the repository installs the chart with: the Flux HelmRelease (base
    merged with each cluster's patch, variables substituted as Flux does),
    Terraform's bootstrap install on EKS, and `make e2e`'s."""
    flux = repo / "flux"
    base = flux / "infrastructure/base/portico/helmrelease.yaml"
    clusters = {
        "kind": flux / "clusters/kind/cluster-vars.yaml",
        "mycluster-0": flux / "ci/cluster-vars/mycluster-0.yaml",
    }
    sets = []
    for cluster, vars_file in clusters.items():
        variables = _configmap_data(vars_file)
        patch = flux / f"infrastructure/{cluster}/controllers/portico-values.yaml"
        merged = deep_merge(_helmrelease_values(base), _helmrelease_values(patch))
        text = substitute(yaml.safe_dump(merged), variables, patch.relative_to(repo).as_posix())
        sets.append(ValuesSet(f"flux-{cluster}", patch.relative_to(repo).as_posix(), yaml.safe_load(text)))
    tftpl = repo / "terraform/eks/templates/portico-values.yaml.tftpl"
    if tftpl.is_file():
        variables = _configmap_data(clusters["mycluster-0"])
        text = substitute(tftpl.read_text(encoding="utf-8"), variables, tftpl.relative_to(repo).as_posix())
        sets.append(ValuesSet("terraform-eks", tftpl.relative_to(repo).as_posix(), yaml.safe_load(text) or {}))
    # `make e2e` installs the chart on kind with these (plus the image tag and pool it
    # adds on the command line).
    e2e = repo / "e2e/kind/values.yaml"
    if e2e.is_file():
        sets.append(ValuesSet("e2e-kind", e2e.relative_to(repo).as_posix(), yaml.safe_load(e2e.read_text(encoding="utf-8")) or {}))
    return sets
