"""The config stream's TLS as rendered: the proxies must trust the operator's
certificate for the host they dial. Checks that the CA ConfigMap the proxies mount holds
the CA of the operator's Secret, that the certificate chains to it (openssl verify), and
that it names the host of the proxies' --operator URL."""

from __future__ import annotations

import base64
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

OPENSSL_TIMEOUT_S = 30
SECRET = "portico-operator-tls"
CA_CONFIGMAP = "portico-operator-ca"


def _find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    return next((o for o in objs if o.get("kind") == kind and (o.get("metadata") or {}).get("name") == name), None)


def _openssl(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_S, check=False)


def _proxy_operator_host(objs: list[dict[str, Any]]) -> str | None:
    for o in objs:
        if o.get("kind") in ("DaemonSet", "Deployment") and (o.get("metadata") or {}).get("name") == "portico-proxy":
            for c in o["spec"]["template"]["spec"]["containers"]:
                for arg in c.get("args") or []:
                    if arg.startswith("--operator="):
                        return urlparse(arg.split("=", 1)[1]).hostname
    return None


def check(objs: list[dict[str, Any]]) -> list[str]:
    secret = _find(objs, "Secret", SECRET)
    if secret is None:
        return []
    problems = []
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    ca_cm = _find(objs, "ConfigMap", CA_CONFIGMAP)
    if ca_cm is None or (ca_cm.get("data") or {}).get("ca.crt", "").strip() != data.get("ca.crt", "").strip():
        problems.append(f"ConfigMap {CA_CONFIGMAP}: ca.crt is not the CA of Secret {SECRET}")
    with tempfile.TemporaryDirectory() as d:
        ca, crt = Path(d, "ca.crt"), Path(d, "tls.crt")
        ca.write_text(data.get("ca.crt", ""), encoding="utf-8")
        crt.write_text(data.get("tls.crt", ""), encoding="utf-8")
        verify = _openssl(["verify", "-CAfile", str(ca), "-purpose", "sslserver", str(crt)])
        if verify.returncode != 0:
            problems.append(f"Secret {SECRET}: tls.crt does not verify against ca.crt: {verify.stderr.strip() or verify.stdout.strip()}")
        host = _proxy_operator_host(objs)
        if host:
            named = _openssl(["x509", "-in", str(crt), "-noout", "-checkhost", host])
            if "does match" not in named.stdout:
                problems.append(f"Secret {SECRET}: tls.crt does not name {host}, the host proxies dial")
    return problems
