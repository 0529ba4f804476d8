"""Flux and cert-manager objects, validated in one batch by validate-crs.mjs (node)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .model import Obj

NODE_TIMEOUT_S = 120


def validate_batch(script: Path, objs: list[Obj]) -> list[list[str]]:
    """Errors per object, in order. The models come from the @kubernetes-models
    packages that hack/check-flux.sh installs beside the script."""
    if not objs:
        return []
    payload = json.dumps([{"id": str(i), "object": o.obj} for i, o in enumerate(objs)])
    try:
        proc = subprocess.run(
            ["node", str(script)],
            input=payload,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as e:
        raise SystemExit("node not found: it validates the Flux and cert-manager kinds") from e
    except subprocess.TimeoutExpired as e:
        raise SystemExit(f"{script} timed out after {NODE_TIMEOUT_S}s") from e
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed: {proc.stderr.strip()}")
    results = json.loads(proc.stdout)
    by_id = {r["id"]: r["errors"] for r in results}
    return [by_id.get(str(i), ["validator returned no result"]) for i in range(len(objs))]
