"""The three passes: each cluster as Flux applies it, every kustomization directory on
its own, and the self-test on deliberately broken manifests."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import crs, kinds, refs, render, schemas
from .model import Obj, Report


@dataclass
class Context:
    repo: Path
    flux_dir: Path
    builtin: schemas.BuiltinSchemas
    gateway: schemas.CrdSchemas
    crs_script: Path
    report: Report
    # Per-object errors, keyed by Obj.label() within one pass.
    failures: dict[str, list[str]] = field(default_factory=dict)

    def fail(self, o: Obj, msg: str) -> None:
        self.failures.setdefault(o.label(), []).append(msg)

    def flush(self, objs: list[Obj], pass_name: str) -> None:
        """Count every object of a pass once, as passed or failed."""
        labels = list(dict.fromkeys(o.label() for o in objs))
        for label in labels:
            self.report.checked += 1
            for msg in self.failures.pop(label, []):
                self.report.error(f"[{pass_name}] {label}: {msg}")
        for label, msgs in self.failures.items():
            for msg in msgs:
                self.report.error(f"[{pass_name}] {label}: {msg}")
        self.failures.clear()


def validate_objects(ctx: Context, objs: list[Obj]) -> None:
    """Schema checks of every object; Flux and cert-manager ones in one node batch."""
    batch = []
    for o in objs:
        for msg in schemas.check_name(o):
            ctx.fail(o, msg)
        fam = kinds.family(o)
        if fam == "builtin":
            errs = ctx.builtin.validate(o)
        elif fam == "gateway":
            errs = ctx.gateway.validate(o) + ctx.builtin.validate_metadata(o)
        elif fam in ("flux", "cert-manager"):
            batch.append(o)
            errs = ctx.builtin.validate_metadata(o)
        else:
            errs = [f"no schema for {o.api_version} {o.kind}: add one to flux/ci before using this kind"]
        for msg in errs:
            ctx.fail(o, msg)
    for o, errs in zip(batch, crs.validate_batch(ctx.crs_script, batch)):
        for msg in errs:
            ctx.fail(o, msg)


def _objs(docs: list[dict], source: str, layer: str = "", kustomization: str = "") -> list[Obj]:
    return [Obj(d, source, layer, kustomization) for d in docs]


def sample_vars(ctx: Context, cluster: str) -> dict[tuple[str, str], dict[str, str]]:
    f = ctx.flux_dir / "ci" / "cluster-vars" / f"{cluster}.yaml"
    if not f.is_file():
        return {}
    return render.configmap_data(_objs(render.load_docs(f.read_text(encoding="utf-8"), str(f)), str(f)))


def walk_cluster(ctx: Context, cluster_dir: Path) -> tuple[set[Path], dict[str, str]]:
    """Render a cluster the way Flux reconciles it; returns the directories it rendered
    and the variables it used (for the directory pass)."""
    name = cluster_dir.name
    rel = cluster_dir.relative_to(ctx.repo).as_posix()
    rendered: set[Path] = set()
    try:
        root = _objs(render.load_flux_path(cluster_dir, ctx.repo), rel)
    except render.RenderError as e:
        ctx.report.error(f"[cluster {name}] {e}")
        return rendered, {}
    configmaps = sample_vars(ctx, name)
    configmaps.update(render.configmap_data(root))
    all_objs = list(root)
    depends: dict[str, list[str]] = {}
    used_vars: dict[str, str] = {}
    # (Kustomization, top-level layer name); top-level = applied by the cluster root.
    queue = [(k, k.name) for k in root if k.kind == "Kustomization"]
    for k, _ in queue:
        depends[k.name] = [d.get("name") for d in (k.spec.get("dependsOn") or [])]
    seen = 0
    while queue:
        seen += 1
        if seen > 200:  # nested Kustomizations form a tree; a cycle would loop forever
            ctx.report.error(f"[cluster {name}] more than 200 Kustomizations: a cycle?")
            break
        k, layer = queue.pop(0)
        ref = k.spec.get("sourceRef") or {}
        if (ref.get("namespace", k.namespace), ref.get("name")) not in refs.KNOWN_GIT_REPOSITORIES:
            # Another source (the upstream Gateway API repository): its content is not
            # here; the check compares its version with the CRDs it validates against.
            _check_external_source(ctx, k, all_objs)
            continue
        path = (ctx.repo / str(k.spec.get("path", "./"))).resolve()
        krel = path.relative_to(ctx.repo).as_posix() if path.is_relative_to(ctx.repo) else str(path)
        try:
            docs = render.load_flux_path(path, ctx.repo)
        except render.RenderError as e:
            ctx.fail(k, str(e))
            continue
        rendered.add(path)
        variables: dict[str, str] = {}
        post = k.spec.get("postBuild") or {}
        for src in post.get("substituteFrom") or []:
            data = configmaps.get((k.namespace, src.get("name")))
            if src.get("kind") != "ConfigMap" or data is None:
                if not src.get("optional"):
                    ctx.fail(k, f"substituteFrom {src.get('kind')} {src.get('name')!r} not found "
                                f"(in the cluster directory or flux/ci/cluster-vars/{name}.yaml)")
                continue
            variables.update(data)
        variables.update({str(a): str(b) for a, b in (post.get("substitute") or {}).items()})
        used_vars.update(variables)
        problems: list[str] = []
        objs = [render.substitute(o, variables, problems) for o in _objs(docs, krel, layer, k.name)]
        for p in problems:
            ctx.fail(k, p)
        all_objs.extend(objs)
        queue.extend((n, layer) for n in objs if n.kind == "Kustomization")
    validate_objects(ctx, all_objs)
    cluster = refs.Cluster(name, all_objs, depends)
    refs.check_cluster(cluster, ctx.repo, ctx.gateway.scopes, ctx.fail, ctx.report.warn)
    ctx.flush(all_objs, f"cluster {name}")
    return rendered, used_vars


def _check_external_source(ctx: Context, k: Obj, objs: list[Obj]) -> None:
    ref = k.spec.get("sourceRef") or {}
    for src in objs:
        if src.kind == ref.get("kind") and src.name == ref.get("name") and src.namespace == ref.get("namespace", k.namespace):
            if "kubernetes-sigs/gateway-api" in str(src.spec.get("url", "")):
                tag = (src.spec.get("ref") or {}).get("tag")
                if tag not in ctx.gateway.bundle_versions:
                    ctx.fail(src, f"installs Gateway API {tag} but the schemas checked here are "
                                  f"{sorted(ctx.gateway.bundle_versions)}: keep them equal")
            return


def kustomization_dirs(flux_dir: Path) -> list[Path]:
    dirs = []
    for f in sorted(flux_dir.rglob("*")):
        if f.name in render.KUSTOMIZATION_FILES and f.is_file():
            dirs.append(f.parent)
    return dirs


def walk_dirs(ctx: Context, fallback_vars: dict[str, str]) -> None:
    """`kubectl kustomize` on every directory with a kustomization file; Components are
    checked through the overlays that include them (they cannot be built alone)."""
    all_objs: list[Obj] = []
    for d in kustomization_dirs(ctx.flux_dir):
        rel = d.relative_to(ctx.repo).as_posix()
        kfile = render.kustomization_file(d)
        assert kfile is not None
        if (yaml.safe_load(kfile.read_text(encoding="utf-8")) or {}).get("kind") == "Component":
            continue
        try:
            docs = render.kustomize_build(d, ctx.repo)
        except render.RenderError as e:
            ctx.report.error(f"[dirs] {e}")
            continue
        problems: list[str] = []
        objs = [render.substitute(o, fallback_vars, problems) for o in _objs(docs, rel)]
        for p in problems:
            ctx.report.error(f"[dirs] {p}")
        all_objs.extend(objs)
    validate_objects(ctx, all_objs)
    ctx.flush(all_objs, "dirs")


EXPECT = re.compile(r"^#\s*expect:\s*(.+?)\s*$", re.MULTILINE)


def self_test(ctx: Context, testdata: Path, fallback_vars: dict[str, str]) -> tuple[int, int]:
    """Each file of testdata/ is a small broken object set with `# expect: <text>` lines;
    the check must report an error containing each text. Proves the validators reject
    what they claim to, so a green run means something."""
    passed = failed = 0
    for f in sorted(testdata.glob("*.yaml")):
        text = f.read_text(encoding="utf-8")
        expected = EXPECT.findall(text)
        rel = f.relative_to(ctx.repo).as_posix()
        problems: list[str] = []
        objs = [render.substitute(o, fallback_vars, problems) for o in _objs(render.load_docs(text, rel), rel)]
        validate_objects(ctx, objs)
        refs.check_cluster(refs.Cluster("self-test", objs, layered=False), ctx.repo, ctx.gateway.scopes, ctx.fail, lambda _: None)
        got = problems + [m for msgs in ctx.failures.values() for m in msgs]
        ctx.failures.clear()
        missing = [e for e in expected if not any(e in g for g in got)]
        if not expected or missing:
            failed += 1
            ctx.report.error(f"[self-test] {rel}: expected errors {missing or '(none declared)'} not reported; got {got}")
        else:
            passed += 1
    return passed, failed
