"""python3 -m fluxcheck --repo . --gateway-api-crds ../shared/gateway-api/crds/standard
--crs-script target/flux-check/node/validate-crs.mjs"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import schemas, walk
from .model import Report


def main() -> int:
    ap = argparse.ArgumentParser(prog="fluxcheck", description=__doc__)
    ap.add_argument("--repo", type=Path, required=True, help="repository root (holds flux/)")
    ap.add_argument("--gateway-api-crds", type=Path, required=True, help="directory of the Gateway API CRD YAML files")
    ap.add_argument("--crs-script", type=Path, required=True, help="validate-crs.mjs beside its node_modules")
    ap.add_argument("--kube-version", default="1.35", help="Kubernetes version of the built-in schemas")
    args = ap.parse_args()

    repo = args.repo.resolve()
    flux_dir = repo / "flux"
    report = Report()
    ctx = walk.Context(
        repo=repo,
        flux_dir=flux_dir,
        builtin=schemas.BuiltinSchemas(args.kube_version),
        gateway=schemas.CrdSchemas(args.gateway_api_crds.resolve()),
        crs_script=args.crs_script.resolve(),
        report=report,
    )
    print(f"fluxcheck: Kubernetes {ctx.builtin.version} schemas, Gateway API "
          f"{', '.join(sorted(ctx.gateway.bundle_versions))} CRDs, {len(ctx.gateway.validators)} kinds/versions")

    # 1. Each cluster as Flux reconciles it (layers, substitution, references).
    fallback: dict[str, str] = {}
    clusters = sorted(p for p in (flux_dir / "clusters").iterdir() if p.is_dir())
    for cluster_dir in clusters:
        before = (report.checked, len(report.errors))
        _, used = walk.walk_cluster(ctx, cluster_dir)
        # Directories outside a cluster walk are substituted with the union of the
        # clusters' variables (a later cluster's value wins).
        fallback.update(used)
        print(f"cluster {cluster_dir.name}: {report.checked - before[0]} objects, {len(report.errors) - before[1]} errors")

    # 2. Every kustomization directory on its own.
    before = (report.checked, len(report.errors))
    walk.walk_dirs(ctx, fallback)
    print(f"kustomization dirs: {report.checked - before[0]} objects, {len(report.errors) - before[1]} errors")

    # 3. The validators must reject the broken samples.
    st_pass, st_fail = walk.self_test(ctx, flux_dir / "ci" / "testdata", fallback)
    print(f"self-test: {st_pass} broken samples rejected as expected, {st_fail} not")

    for w in report.warnings:
        print(f"WARNING {w}")
    for e in report.errors:
        print(f"ERROR {e}")
    failed_objects = len({e.split(": ", 1)[0] for e in report.errors if not e.startswith("[self-test]")})
    passed = report.checked - failed_objects + st_pass
    print(f"fluxcheck: {passed} passed, {failed_objects + st_fail} failed")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
