"""python3 -m helmcheck --repo . --helm HELM --gateway-api-crds DIR --work DIR --bin-dir DIR [--bless]

Lints and renders helm/portico with every values set (ci/*-values.yaml, the Flux
HelmRelease values per cluster, Terraform's bootstrap values, make e2e's), validates
every rendered object offline, and checks pod hardening, the config stream's TLS, the
flags passed to the binaries, and RBAC. --bless rewrites helm/portico/ci/rbac-expected.yaml
from the rendered RBAC (review the diff). hack/check-helm.sh runs it."""

from __future__ import annotations

import argparse
import filecmp
import sys
from pathlib import Path
from typing import Any

import yaml
from fluxcheck import kinds, schemas
from fluxcheck.model import Obj

from . import cli, pods, rbac, render, tls

EXPECTED_HEADER = """\
# The RBAC each component gets, per values set, as `make helm-check` renders it:
#   <scope> <apiGroup> <resource>[(resourceNames)] <verbs>
# scope: cluster, ns/RELEASE (the release namespace), ns/SECRETS
# (gatewayAPI.secretsNamespace). helm-check fails when the chart grants anything else or
# less: change the chart, run `make helm-check HELM_CHECK_ARGS=--bless`, review this diff.
"""


class Checker:
    def __init__(self, repo: Path, gateway_crds: Path, kube_version: str):
        self.repo = repo
        self.chart = repo / "helm/portico"
        self.builtin = schemas.BuiltinSchemas(kube_version)
        self.gateway = schemas.CrdSchemas(gateway_crds)
        self.portico = schemas.CrdSchemas(repo / "crates/api/crds")
        self.errors: list[str] = []
        self.checked = 0

    def sync(self, gateway_crds: Path) -> None:
        """The chart's copies of generated CRDs equal their sources."""
        pairs = [(self.repo / "crates/api/crds", self.chart / "crds", "*.yaml")]
        pairs.append((gateway_crds, self.chart / "charts/gateway-api-crds/crds", "gateway.networking.k8s.io_*.yaml"))
        for src_dir, copy_dir, pattern in pairs:
            src = {p.name for p in src_dir.glob(pattern) if "_vap_" not in p.name}
            dst = {p.name for p in copy_dir.glob("*.yaml")}
            for name in sorted(src ^ dst):
                self.errors.append(f"sync: {name} is in only one of {src_dir} and {copy_dir}")
            for name in sorted(src & dst):
                if not filecmp.cmp(src_dir / name, copy_dir / name, shallow=False):
                    self.errors.append(f"sync: {copy_dir / name} differs from {src_dir / name} (cp it)")

    def portico_errors(self, o: Obj) -> list[str]:
        v = self.portico.validators.get((o.api_version, o.kind))
        if v is None:
            return [f"no CRD schema for {o.api_version} {o.kind} in crates/api/crds"]
        body = {k: val for k, val in o.obj.items() if k not in ("apiVersion", "kind", "metadata")}
        return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(body)]

    def validate(self, vs: render.ValuesSet, docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            o = Obj(doc, source=vs.name)
            self.checked += 1
            fam = kinds.family(o)
            if o.group == "portico.dev":
                # Portico's CRD schemas (kube-derive) leave out apiVersion, kind and
                # metadata, which the API server accepts on every object anyway.
                errs = self.portico_errors(o) + self.builtin.validate_metadata(o)
                scoped = self.portico.scopes.get(o.kind)
            elif fam == "gateway":
                errs = self.gateway.validate(o) + self.builtin.validate_metadata(o)
                scoped = self.gateway.scopes.get(o.kind)
            elif fam == "builtin":
                errs = self.builtin.validate(o)
                scoped = kinds.namespaced(o, {})
            else:
                errs, scoped = [f"no schema for {o.api_version} {o.kind}"], None
            errs += schemas.check_name(o)
            if scoped is None:
                errs.append("scope of the kind unknown (add it to fluxcheck/kinds.py)")
            elif scoped and not o.namespace:
                errs.append("namespaced kind rendered without metadata.namespace")
            elif not scoped and o.namespace:
                errs.append("cluster-scoped kind rendered with a namespace")
            self.errors.extend(f"{o.label()}: {e}" for e in errs)


def main() -> int:
    ap = argparse.ArgumentParser(prog="helmcheck", description=__doc__)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--helm", type=Path, required=True)
    ap.add_argument("--gateway-api-crds", type=Path, required=True, help="the standard-channel CRD directory")
    ap.add_argument("--kube-version", default="1.35")
    ap.add_argument("--work", type=Path, required=True, help="scratch directory for rendered values files")
    ap.add_argument("--bless", action="store_true", help="rewrite ci/rbac-expected.yaml")
    ap.add_argument("--bin-dir", type=Path, required=True, help="where the Portico binaries are (their --help is checked)")
    args = ap.parse_args()

    repo = args.repo.resolve()
    checker = Checker(repo, args.gateway_api_crds.resolve(), args.kube_version)
    checker.sync(args.gateway_api_crds.resolve())
    expected_file = checker.chart / "ci/rbac-expected.yaml"
    expected = yaml.safe_load(expected_file.read_text(encoding="utf-8")) if expected_file.is_file() else {}
    rendered_rbac: dict[str, dict[str, list[str]]] = {}
    skipped_binaries: set[str] = set()

    sets = render.ci_values(repo, checker.chart) + render.delivery_values(repo)
    for vs in sets:
        try:
            vfile = render.values_file(args.work, vs)
            render.lint(args.helm, checker.chart, vfile)
            docs = render.template(args.helm, checker.chart, vfile)
        except render.HelmError as e:
            checker.errors.append(f"{vs.name} ({vs.source}): {e}")
            continue
        before = len(checker.errors)
        checker.validate(vs, docs)
        checker.errors.extend(f"{vs.name}: {p}" for p in pods.check(docs))
        checker.errors.extend(f"{vs.name}: {p}" for p in tls.check(docs))
        if vs.name == "default":
            # Once is enough: every values set makes the certificate the same way.
            shake = tls.handshake(docs, args.bin_dir / "portico-proxy")
            if shake is None:
                skipped_binaries.add("portico-proxy (TLS handshake)")
            else:
                checker.errors.extend(f"{vs.name}: {p}" for p in shake)
        cli_problems, not_built = cli.check(docs, args.bin_dir)
        checker.errors.extend(f"{vs.name}: {p}" for p in cli_problems)
        skipped_binaries |= not_built
        by_sa, problems = rbac.grants(docs)
        secrets_ns = ((vs.values.get("gatewayAPI") or {}).get("secretsNamespace")) or "portico-secrets"
        problems += rbac.secret_readers(by_sa, secrets_ns)
        checker.errors.extend(f"{vs.name}: {p}" for p in problems)
        got = rbac.lines(by_sa, render.NAMESPACE, secrets_ns)
        rendered_rbac[vs.name] = got
        if not args.bless:
            checker.errors.extend(rbac.compare(vs.name, got, (expected or {}).get(vs.name)))
        print(f"{vs.name}: {len(docs)} objects, {len(checker.errors) - before} errors ({vs.source})")

    st_pass, st_fail = self_test(Path(__file__).parent / "testdata", checker)

    if args.bless:
        body = yaml.safe_dump(rendered_rbac, sort_keys=True, width=200)
        expected_file.write_text(EXPECTED_HEADER + body, encoding="utf-8")
        print(f"helmcheck: wrote {expected_file.relative_to(repo)}")
    for b in sorted(skipped_binaries):
        print(f"WARNING {b} is not built in {args.bin_dir}: the chart's flags for it were NOT checked")
    for e in checker.errors:
        print(f"ERROR {e}")
    print(f"helmcheck: {len(sets)} values sets, {checker.checked} objects, "
          f"self-test {st_pass} broken samples caught, {st_fail} missed; {len(checker.errors)} errors")
    return 1 if checker.errors else 0


def self_test(testdata: Path, checker: Checker) -> tuple[int, int]:
    """Each testdata file is rendered-looking YAML with `# expect: <text>` lines; the
    RBAC, pod and TLS checks must report every expected text."""
    passed = failed = 0
    for f in sorted(testdata.glob("*.yaml")):
        text = f.read_text(encoding="utf-8")
        expects = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# expect:")]
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
        by_sa, problems = rbac.grants(docs)
        problems += rbac.secret_readers(by_sa, "portico-secrets") + pods.check(docs) + tls.check(docs)
        missed = [e for e in expects if not any(e in p for p in problems)]
        if not expects or missed:
            failed += 1
            checker.errors.append(f"[self-test] {f.name}: not reported: {missed or 'no # expect: line'} (got {problems})")
        else:
            passed += 1
    return passed, failed


if __name__ == "__main__":
    sys.exit(main())
