"""The chart's command lines against the binaries': every `--flag` a container passes,
and every PORTICO_* variable it sets, must be one the binary's --help lists, so a
renamed flag fails here instead of in a crash-looping pod.

The binaries come from target/debug (built by `make test` before `make helm-check` in
CI); one that is not built is reported as skipped, not as passing."""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

HELP_TIMEOUT_S = 30
# image component -> (binary, subcommand whose --help lists the flags)
BINARIES = {
    "operator": ("portico-operator", []),
    "proxy": ("portico-proxy", []),
    "agent": ("portico-agent", ["run"]),
    "cert-sync": ("portico-cert-sync", []),
}
FLAG = re.compile(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)")
ENV = re.compile(r"\[env: ([A-Z0-9_]+)=")


@lru_cache(maxsize=None)
def _help(binary: Path, sub: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]] | None:
    if not binary.is_file():
        return None
    proc = subprocess.run([str(binary), *sub, "--help"], capture_output=True, text=True, timeout=HELP_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{binary.name} {' '.join(sub)} --help failed: {proc.stderr.strip()}")
    return frozenset(FLAG.findall(proc.stdout)), frozenset(ENV.findall(proc.stdout))


def _component(image: str) -> str:
    # <repository>/<component>:<tag>
    return image.rsplit("/", 1)[-1].split(":", 1)[0]


def check(objs: list[dict[str, Any]], bin_dir: Path) -> tuple[list[str], set[str]]:
    """(problems, binaries not built)."""
    problems: list[str] = []
    skipped: set[str] = set()
    for o in objs:
        if o.get("kind") not in ("Deployment", "DaemonSet"):
            continue
        for c in o["spec"]["template"]["spec"].get("containers") or []:
            comp = _component(str(c.get("image", "")))
            if comp not in BINARIES:
                problems.append(f"{o['kind']} {o['metadata']['name']}: image {c.get('image')} is no Portico component")
                continue
            name, sub = BINARIES[comp]
            known = _help(bin_dir / name, tuple(sub))
            if known is None:
                skipped.add(name)
                continue
            flags, envs = known
            args = [a for a in c.get("args") or [] if a not in sub]
            for arg in args:
                flag = arg.split("=", 1)[0]
                if flag.startswith("--") and flag not in flags:
                    problems.append(f"{o['kind']} {o['metadata']['name']}: {name} has no flag {flag}")
            for env in c.get("env") or []:
                if env.get("name", "").startswith("PORTICO") and env["name"] not in envs:
                    problems.append(f"{o['kind']} {o['metadata']['name']}: {name} reads no {env['name']}")
    return problems, skipped
