"""Pod hardening: every container non-root with a read-only root filesystem, no
privilege escalation, all capabilities dropped, seccomp RuntimeDefault, probes and
resource requests. The agent is the exception the chart documents: root, on the host
network, with only the capabilities in AGENT_CAPABILITIES and the host paths in
AGENT_HOST_PATHS, never `privileged`."""

from __future__ import annotations

from typing import Any

WORKLOADS = {"Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "Pod"}
AGENT = "portico-agent"
AGENT_CAPABILITIES = {"BPF", "PERFMON", "NET_ADMIN", "NET_RAW", "SYS_RESOURCE"}
AGENT_HOST_PATHS = {"/sys/fs/bpf", "/sys/fs/cgroup"}


def _pod_spec(o: dict[str, Any]) -> dict[str, Any]:
    spec = o.get("spec") or {}
    if o.get("kind") == "Pod":
        return spec
    if o.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def check(objs: list[dict[str, Any]]) -> list[str]:
    problems = []
    for o in objs:
        if o.get("kind") not in WORKLOADS:
            continue
        name = (o.get("metadata") or {}).get("name", "")
        where = f"{o['kind']} {name}"
        pod = _pod_spec(o)
        agent = name == AGENT
        psc = pod.get("securityContext") or {}
        for flag in ("hostPID", "hostIPC"):
            if pod.get(flag):
                problems.append(f"{where}: {flag}")
        for vol in pod.get("volumes") or []:
            hp = vol.get("hostPath")
            if hp and not (agent and hp.get("path") in AGENT_HOST_PATHS):
                problems.append(f"{where}: hostPath volume {hp.get('path')}")
        for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
            cw = f"{where} container {c.get('name')}"
            sc = c.get("securityContext") or {}
            caps = sc.get("capabilities") or {}
            if sc.get("privileged"):
                problems.append(f"{cw}: privileged")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cw}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cw}: readOnlyRootFilesystem is not true")
            if "ALL" not in (caps.get("drop") or []):
                problems.append(f"{cw}: capabilities do not drop ALL")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                problems.append(f"{cw}: seccompProfile is {seccomp!r}, not RuntimeDefault")
            added = set(caps.get("add") or [])
            if agent:
                if added - AGENT_CAPABILITIES:
                    problems.append(f"{cw}: capabilities {sorted(added - AGENT_CAPABILITIES)} beyond the agent's")
            else:
                if added:
                    problems.append(f"{cw}: adds capabilities {sorted(added)}")
                non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
                uid = sc.get("runAsUser", psc.get("runAsUser"))
                if non_root is not True or uid in (None, 0):
                    problems.append(f"{cw}: not runAsNonRoot with a non-zero runAsUser")
                if pod.get("hostNetwork") and name != "portico-proxy":
                    problems.append(f"{where}: hostNetwork")
            if not (c.get("resources") or {}).get("requests"):
                problems.append(f"{cw}: no resource requests")
            for probe in ("livenessProbe", "readinessProbe"):
                if not c.get(probe):
                    problems.append(f"{cw}: no {probe}")
    return problems
