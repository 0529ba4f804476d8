"""Which validator owns a kind, and whether objects of a kind live in a namespace."""

from __future__ import annotations

from .model import Obj

GATEWAY_GROUPS = ("gateway.networking.k8s.io", "gateway.networking.x-k8s.io")
FLUX_GROUP_SUFFIX = "toolkit.fluxcd.io"
CERT_MANAGER_GROUP_SUFFIX = "cert-manager.io"

# Scope of the built-in kinds these manifests may use. A built-in kind missing here is
# reported (add it) rather than guessed.
NAMESPACED_BUILTINS = {
    "ConfigMap", "Secret", "Service", "ServiceAccount", "Deployment", "DaemonSet",
    "StatefulSet", "Job", "CronJob", "Pod", "Role", "RoleBinding", "NetworkPolicy",
    "PodDisruptionBudget", "HorizontalPodAutoscaler", "Ingress", "EndpointSlice",
    "PersistentVolumeClaim", "LimitRange", "ResourceQuota", "Lease",
}
CLUSTER_BUILTINS = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "PriorityClass",
    "StorageClass", "IngressClass", "PersistentVolume",
}
CLUSTER_CERT_MANAGER = {"ClusterIssuer"}


def family(o: Obj) -> str:
    """'builtin', 'gateway', 'flux', 'cert-manager' or 'unknown'."""
    g = o.group
    if g in GATEWAY_GROUPS:
        return "gateway"
    if g == FLUX_GROUP_SUFFIX or g.endswith("." + FLUX_GROUP_SUFFIX):
        return "flux"
    if g == CERT_MANAGER_GROUP_SUFFIX or g.endswith("." + CERT_MANAGER_GROUP_SUFFIX):
        return "cert-manager"
    if g == "" or "." not in g or g.endswith(".k8s.io"):
        return "builtin"
    return "unknown"


def namespaced(o: Obj, gateway_scopes: dict[str, bool]) -> bool | None:
    """True/False, or None when the scope of the kind is not known."""
    fam = family(o)
    if fam == "gateway":
        return gateway_scopes.get(o.kind)
    if fam == "flux":
        return True
    if fam == "cert-manager":
        return o.kind not in CLUSTER_CERT_MANAGER
    if fam == "builtin":
        if o.kind in NAMESPACED_BUILTINS:
            return True
        if o.kind in CLUSTER_BUILTINS:
            return False
    return None
