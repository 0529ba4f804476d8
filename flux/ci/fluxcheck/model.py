"""Objects under check and the findings about them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Obj:
    """One rendered Kubernetes object and its provenance."""

    obj: dict[str, Any]
    # File or directory it was rendered from, relative to the repository root.
    source: str
    # Top-level Flux Kustomization applying it ("" outside a cluster walk or for the
    # cluster directory itself).
    layer: str = ""
    # Flux Kustomization (possibly nested) whose render produced it.
    kustomization: str = ""

    @property
    def api_version(self) -> str:
        return str(self.obj.get("apiVersion", ""))

    @property
    def group(self) -> str:
        av = self.api_version
        return av.split("/", 1)[0] if "/" in av else ""

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str((self.obj.get("metadata") or {}).get("namespace") or "")

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.obj.get("spec")
        return spec if isinstance(spec, dict) else {}

    def label(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {ns}{self.name} ({self.source})"


@dataclass
class Report:
    """Counts checked objects and collects errors and warnings, in order."""

    checked: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self, msg: str) -> None:
        self.errors.append(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
