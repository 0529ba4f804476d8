"""Reference checks over everything one cluster applies: what only apply time or the
controllers' status would otherwise reveal."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import kinds
from .model import Obj

GATEWAY_GROUP = "gateway.networking.k8s.io"

# Objects that exist without being in flux/: created by `flux bootstrap`
# (gotk-components.yaml, gotk-sync.yaml), by Kubernetes itself, or by the Portico chart
# (helm/portico, the GatewayClass). Reference checks accept them.
KNOWN_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease", "flux-system"}
KNOWN_SERVICES = {("flux-system", "webhook-receiver"): {80}}
KNOWN_GIT_REPOSITORIES = {("flux-system", "flux-system")}
KNOWN_GATEWAY_CLASSES = {"portico"}
CERT_MANAGER_ANNOTATIONS = ("cert-manager.io/cluster-issuer", "cert-manager.io/issuer")


@dataclass
class Cluster:
    """Everything one cluster applies, with the layer graph of its Flux Kustomizations."""

    name: str
    objs: list[Obj]
    # Top-level layer name -> names of the layers it depends on (directly).
    depends_on: dict[str, list[str]] = field(default_factory=dict)
    # Whether layer-order checks apply (not for the self-test's flat object sets).
    layered: bool = True

    def closure(self, layer: str) -> set[str]:
        """Layers applied strictly before `layer`: its transitive dependsOn, plus the
        cluster root ("", which applies the layers themselves)."""
        seen: set[str] = {""} if layer else set()
        stack = list(self.depends_on.get(layer, []))
        while stack:
            dep = stack.pop()
            if dep not in seen:
                seen.add(dep)
                stack.extend(self.depends_on.get(dep, []))
        return seen

    def find(self, kind: str, namespace: str | None = None, name: str | None = None) -> list[Obj]:
        return [
            o for o in self.objs
            if o.kind == kind and (namespace is None or o.namespace == namespace) and (name is None or o.name == name)
        ]


Fail = Callable[[Obj, str], None]


def check_cluster(c: Cluster, repo: Path, gateway_scopes: dict[str, bool], fail: Fail, warn: Callable[[str], None]) -> None:
    _namespaces(c, gateway_scopes, fail)
    if c.layered:
        _crd_layers(c, fail)
    _gateways(c, fail)
    _routes(c, fail)
    _services(c, fail)
    _flux(c, repo, fail, warn)


def _namespaces(c: Cluster, scopes: dict[str, bool], fail: Fail) -> None:
    creators = {o.name: o.layer for o in c.find("Namespace")}
    for o in c.objs:
        ns_scoped = kinds.namespaced(o, scopes)
        if ns_scoped is None:
            fail(o, "scope of this kind is unknown (add it to flux/ci/fluxcheck/kinds.py)")
            continue
        if not ns_scoped:
            if o.namespace:
                fail(o, "cluster-scoped kind with metadata.namespace set")
            continue
        if not o.namespace:
            fail(o, "namespaced object without metadata.namespace (Flux would not know where to apply it)")
            continue
        if o.namespace in KNOWN_NAMESPACES:
            continue
        if o.namespace not in creators:
            fail(o, f"namespace {o.namespace!r} is not created by any layer of cluster {c.name}")
        elif c.layered and creators[o.namespace] != o.layer and creators[o.namespace] not in c.closure(o.layer):
            fail(o, f"namespace {o.namespace!r} is created by layer {creators[o.namespace]!r}, "
                    f"which layer {o.layer!r} does not depend on")


def _crd_layers(c: Cluster, fail: Fail) -> None:
    """Custom resources must come from a layer applied after the one installing their
    CRDs: a CRD installed by a HelmRelease or a nested Kustomization is not established
    when the same layer's dry-run runs (the reason for the demo's layer order)."""
    providers: dict[str, set[str]] = {"gateway": set(), "cert-manager": set()}
    for o in c.objs:
        if o.kind == "GitRepository" and "kubernetes-sigs/gateway-api" in str(o.spec.get("url", "")):
            providers["gateway"].add(o.layer)
        if o.kind == "HelmRelease" and _chart_name(o) == "cert-manager":
            providers["cert-manager"].add(o.layer)
    for o in c.objs:
        fam = kinds.family(o)
        if fam not in providers:
            continue
        if not providers[fam]:
            fail(o, f"no layer of cluster {c.name} installs the {fam} CRDs")
        elif not providers[fam] & c.closure(o.layer):
            fail(o, f"layer {o.layer!r} must depend on the layer installing the {fam} CRDs "
                    f"({', '.join(sorted(providers[fam]))})")


def _chart_name(o: Obj) -> str:
    return str(((o.spec.get("chart") or {}).get("spec") or {}).get("chart", ""))


def _gateways(c: Cluster, fail: Fail) -> None:
    classes = KNOWN_GATEWAY_CLASSES | {o.name for o in c.find("GatewayClass")}
    issuers = {o.name for o in c.find("ClusterIssuer")}
    for gw in c.find("Gateway"):
        if gw.spec.get("gatewayClassName") not in classes:
            fail(gw, f"gatewayClassName {gw.spec.get('gatewayClassName')!r} is not a known GatewayClass")
        annotations = (gw.obj.get("metadata") or {}).get("annotations") or {}
        cluster_issuer = annotations.get("cert-manager.io/cluster-issuer")
        if cluster_issuer is not None and cluster_issuer not in issuers:
            fail(gw, f"cert-manager.io/cluster-issuer {cluster_issuer!r}: no such ClusterIssuer in cluster {c.name}")
        issued = any(a in annotations for a in CERT_MANAGER_ANNOTATIONS)
        for listener in gw.spec.get("listeners") or []:
            for ref in ((listener.get("tls") or {}).get("certificateRefs") or []):
                if ref.get("kind", "Secret") != "Secret" or ref.get("group", "") != "":
                    continue
                ns = ref.get("namespace", gw.namespace)
                if not issued and not c.find("Secret", ns, ref.get("name")):
                    fail(gw, f"listener {listener.get('name')}: Secret {ns}/{ref.get('name')} is neither in Git "
                             "nor issued by cert-manager (no cert-manager.io annotation)")
                if issued and not listener.get("hostname"):
                    fail(gw, f"listener {listener.get('name')}: cert-manager issues certificates only for "
                             "listeners with a hostname")


def _namespace_labels(c: Cluster, ns: str) -> dict[str, str]:
    labels = {"kubernetes.io/metadata.name": ns}
    for o in c.find("Namespace", None, ns):
        labels.update((o.obj.get("metadata") or {}).get("labels") or {})
    return labels


def _selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def _hostnames_intersect(listener: str | None, route: list[str]) -> bool:
    """Gateway API: a route attaches to a listener if at least one hostname matches; a
    wildcard `*.example.com` matches any name with that suffix and at least one more
    label. No hostname on either side matches everything."""
    if not listener or not route:
        return True
    return any(_hostname_match(listener, h) for h in route)


def _hostname_match(listener: str, route: str) -> bool:
    if listener.startswith("*."):
        suffix = listener[1:]
        return route.endswith(suffix) and (route.startswith("*.") or len(route) > len(suffix))
    if route.startswith("*."):
        return listener.endswith(route[1:]) and len(listener) > len(route) - 1
    return listener == route


def _routes(c: Cluster, fail: Fail) -> None:
    for route in c.find("HTTPRoute"):
        hostnames = route.spec.get("hostnames") or []
        for ref in route.spec.get("parentRefs") or []:
            if ref.get("group", GATEWAY_GROUP) != GATEWAY_GROUP or ref.get("kind", "Gateway") != "Gateway":
                continue
            ns = ref.get("namespace", route.namespace)
            gws = c.find("Gateway", ns, ref.get("name"))
            if not gws:
                fail(route, f"parentRef Gateway {ns}/{ref.get('name')} does not exist")
                continue
            listeners = gws[0].spec.get("listeners") or []
            if "sectionName" in ref:
                listeners = [l for l in listeners if l.get("name") == ref["sectionName"]]
                if not listeners:
                    fail(route, f"parentRef {ns}/{ref.get('name')}: no listener named {ref['sectionName']!r}")
                    continue
            if "port" in ref:
                listeners = [l for l in listeners if l.get("port") == ref["port"]]
            admitting = [l for l in listeners if _admits(c, l, gws[0].namespace, route) and l.get("protocol") in ("HTTP", "HTTPS")]
            if not admitting:
                fail(route, f"parentRef {ns}/{ref.get('name')}: no listener admits an HTTPRoute from namespace "
                            f"{route.namespace!r} (allowedRoutes, protocol)")
                continue
            if not any(_hostnames_intersect(l.get("hostname"), hostnames) for l in admitting):
                fail(route, f"parentRef {ns}/{ref.get('name')}: no listener hostname intersects {hostnames}")
        for i, rule in enumerate(route.spec.get("rules") or []):
            for backend in rule.get("backendRefs") or []:
                _backend(c, route, i, backend, fail)


def _admits(c: Cluster, listener: dict[str, Any], gw_ns: str, route: Obj) -> bool:
    """Gateway API (AllowedRoutes.namespaces.from): Same, All, or Selector on the
    route's namespace labels; the default is Same."""
    allowed = ((listener.get("allowedRoutes") or {}).get("namespaces") or {})
    frm = allowed.get("from", "Same")
    if frm == "All":
        return True
    if frm == "Same":
        return route.namespace == gw_ns
    if frm == "Selector":
        return _selector_matches(allowed.get("selector") or {}, _namespace_labels(c, route.namespace))
    return False


def _backend(c: Cluster, route: Obj, rule: int, backend: dict[str, Any], fail: Fail) -> None:
    if backend.get("group", "") != "" or backend.get("kind", "Service") != "Service":
        return
    ns = backend.get("namespace", route.namespace)
    name = backend.get("name")
    if ns != route.namespace and not _reference_granted(c, route, ns, name):
        fail(route, f"rule {rule}: backend {ns}/{name} is in another namespace and no ReferenceGrant allows it")
    svcs = c.find("Service", ns, name)
    if svcs:
        ports = {p.get("port") for p in (svcs[0].spec.get("ports") or [])}
    elif (ns, name) in KNOWN_SERVICES:
        ports = KNOWN_SERVICES[(ns, name)]
    else:
        fail(route, f"rule {rule}: backend Service {ns}/{name} does not exist")
        return
    if backend.get("port") not in ports:
        fail(route, f"rule {rule}: Service {ns}/{name} has no port {backend.get('port')} (ports: {sorted(ports)})")


def _reference_granted(c: Cluster, route: Obj, ns: str, name: str | None) -> bool:
    for grant in c.find("ReferenceGrant", ns):
        froms = grant.spec.get("from") or []
        tos = grant.spec.get("to") or []
        if any(f.get("group") == GATEWAY_GROUP and f.get("kind") == "HTTPRoute" and f.get("namespace") == route.namespace for f in froms) \
                and any(t.get("group", "") == "" and t.get("kind") == "Service" and t.get("name", name) == name for t in tos):
            return True
    return False


def _services(c: Cluster, fail: Fail) -> None:
    workloads = [o for o in c.objs if o.kind in ("Deployment", "DaemonSet", "StatefulSet")]
    for svc in c.find("Service"):
        selector = svc.spec.get("selector")
        if not selector:
            continue
        if not any(
            w.namespace == svc.namespace
            and _selector_matches({"matchLabels": selector}, ((w.spec.get("template") or {}).get("metadata") or {}).get("labels") or {})
            for w in workloads
        ):
            fail(svc, f"selector {selector} matches no Deployment/DaemonSet/StatefulSet pod template")


def _flux(c: Cluster, repo: Path, fail: Fail, warn: Callable[[str], None]) -> None:
    ks_names = {(o.namespace, o.name) for o in c.find("Kustomization")}
    git_repos = KNOWN_GIT_REPOSITORIES | {(o.namespace, o.name) for o in c.find("GitRepository")}
    sources = {
        "GitRepository": git_repos,
        "HelmRepository": {(o.namespace, o.name) for o in c.find("HelmRepository")},
        "OCIRepository": {(o.namespace, o.name) for o in c.find("OCIRepository")},
    }
    for k in c.find("Kustomization"):
        for dep in k.spec.get("dependsOn") or []:
            if (dep.get("namespace", k.namespace), dep.get("name")) not in ks_names:
                fail(k, f"dependsOn {dep.get('name')!r}: no such Kustomization")
        ref = k.spec.get("sourceRef") or {}
        if (ref.get("namespace", k.namespace), ref.get("name")) not in sources.get(ref.get("kind", ""), set()):
            fail(k, f"sourceRef {ref.get('kind')} {ref.get('name')!r} does not exist")
    for hr in c.find("HelmRelease"):
        ref = ((hr.spec.get("chart") or {}).get("spec") or {}).get("sourceRef") or {}
        key = (ref.get("namespace", hr.namespace), ref.get("name"))
        if key not in sources.get(ref.get("kind", ""), set()):
            fail(hr, f"chart sourceRef {ref.get('kind')} {key[0]}/{key[1]} does not exist")
        elif ref.get("kind") == "GitRepository" and key in KNOWN_GIT_REPOSITORIES:
            chart = (repo / _chart_name(hr)).resolve()
            if not (chart / "Chart.yaml").is_file():
                warn(f"{hr.label()}: chart {_chart_name(hr)} is not in this commit yet (Flux will report it until it is)")
