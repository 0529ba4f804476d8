"""Least privilege: who may do what, as the rendered Roles and bindings say.

Every rule bound to a ServiceAccount becomes grants of the form

    <scope> <apiGroup> <resource>[ (names)] <verb,verb,...>

scope `cluster` (ClusterRole through a ClusterRoleBinding) or `ns/<namespace>` (a Role,
or a ClusterRole through a RoleBinding). The checks:
  - no wildcard anywhere (verbs, resources, apiGroups, resourceNames), no
    nonResourceURLs, no escalate/bind/impersonate;
  - only cert-sync may read (get/list/watch) Secrets outside gatewayAPI.secretsNamespace;
  - the grants of each component equal the checked-in list (helm/portico/ci/rbac-expected.yaml),
    so that a change of permissions is a deliberate diff.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

READ_VERBS = {"get", "list", "watch"}
FORBIDDEN_VERBS = {"escalate", "bind", "impersonate"}
# The one component that reads the Secrets Gateways reference, in their own namespaces.
SECRETS_READER = "portico-cert-sync"


def _meta(o: dict[str, Any]) -> tuple[str, str]:
    m = o.get("metadata") or {}
    return str(m.get("namespace") or ""), str(m.get("name") or "")


def grants(objs: list[dict[str, Any]]) -> tuple[dict[str, list[tuple]], list[str]]:
    """ServiceAccount name -> [(scope, group, resource, names, verbs)], and problems
    (wildcards, missing roles) found on the way."""
    problems: list[str] = []
    cluster_roles = {_meta(o)[1]: o for o in objs if o.get("kind") == "ClusterRole"}
    roles = {_meta(o): o for o in objs if o.get("kind") == "Role"}
    out: dict[str, list[tuple]] = defaultdict(list)

    for role in [*cluster_roles.values(), *roles.values()]:
        ns, name = _meta(role)
        where = f"{role['kind']} {ns + '/' if ns else ''}{name}"
        if role.get("aggregationRule"):
            problems.append(f"{where}: aggregationRule (its rules would come from other roles)")
        for rule in role.get("rules") or []:
            if rule.get("nonResourceURLs"):
                problems.append(f"{where}: nonResourceURLs {rule['nonResourceURLs']}")
            for key in ("verbs", "resources", "apiGroups", "resourceNames"):
                if any("*" in str(v) for v in rule.get(key) or []):
                    problems.append(f"{where}: wildcard in {key}: {rule.get(key)}")
            bad = FORBIDDEN_VERBS & set(rule.get("verbs") or [])
            if bad:
                problems.append(f"{where}: verbs {sorted(bad)} let it grant itself more")

    for b in objs:
        if b.get("kind") not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        bns, bname = _meta(b)
        ref = b.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole":
            role = cluster_roles.get(ref.get("name"))
        else:
            role = roles.get((bns, ref.get("name")))
        if role is None:
            problems.append(f"{b['kind']} {bname}: roleRef {ref.get('kind')} {ref.get('name')} is not in the chart")
            continue
        scope = "cluster" if b["kind"] == "ClusterRoleBinding" else f"ns/{bns}"
        for subject in b.get("subjects") or []:
            if subject.get("kind") != "ServiceAccount":
                problems.append(f"{b['kind']} {bname}: subject {subject.get('kind')} {subject.get('name')} is not a ServiceAccount")
                continue
            for rule in role.get("rules") or []:
                verbs = ",".join(sorted(rule.get("verbs") or []))
                names = tuple(sorted(rule.get("resourceNames") or []))
                for group in rule.get("apiGroups") or []:
                    for resource in rule.get("resources") or []:
                        out[subject["name"]].append((scope, group or "core", resource, names, verbs))
    return out, problems


def secret_readers(by_sa: dict[str, list[tuple]], secrets_namespace: str) -> list[str]:
    """Who but cert-sync may read Secrets outside the secrets namespace."""
    problems = []
    for sa, rules in sorted(by_sa.items()):
        if sa == SECRETS_READER:
            continue
        for scope, group, resource, _names, verbs in rules:
            if group != "core" or resource != "secrets" or not READ_VERBS & set(verbs.split(",")):
                continue
            if scope != f"ns/{secrets_namespace}":
                problems.append(f"{sa}: may {verbs} Secrets in {scope} (only {SECRETS_READER} may read "
                                f"Secrets outside {secrets_namespace})")
    return problems


def lines(by_sa: dict[str, list[tuple]], release_ns: str, secrets_ns: str) -> dict[str, list[str]]:
    """The grants as sorted text lines, namespaces named by role (so that one expected
    list covers any secrets namespace): ns/<release> -> ns/RELEASE, ns/<secrets> -> ns/SECRETS."""
    def scope_name(scope: str) -> str:
        if scope == f"ns/{secrets_ns}":
            return "ns/SECRETS"
        if scope == f"ns/{release_ns}":
            return "ns/RELEASE"
        return scope

    out = {}
    for sa, rules in by_sa.items():
        text = set()
        for scope, group, resource, names, verbs in rules:
            named = f"({','.join(names)})" if names else ""
            text.add(f"{scope_name(scope)} {group} {resource}{named} {verbs}")
        out[sa] = sorted(text)
    return dict(sorted(out.items()))


def compare(name: str, got: dict[str, list[str]], expected: dict[str, list[str]] | None) -> list[str]:
    if expected is None:
        return [f"{name}: no expected RBAC in helm/portico/ci/rbac-expected.yaml (run with --bless after review)"]
    problems = []
    for sa in sorted(set(got) | set(expected)):
        g, e = set(got.get(sa, [])), set(expected.get(sa, []))
        for extra in sorted(g - e):
            problems.append(f"{name}: {sa} has an unexpected grant: {extra}")
        for missing in sorted(e - g):
            problems.append(f"{name}: {sa} lacks an expected grant: {missing}")
    return problems
