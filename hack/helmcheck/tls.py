"""The config stream's TLS as rendered: the proxies must trust the operator's
certificate for the host they dial. Checks that the CA ConfigMap the proxies mount holds
the CA of the operator's Secret, that the certificate chains to it (openssl verify), and
that it names the host of the proxies' --operator URL."""

from __future__ import annotations

import base64
import re
import socket
import subprocess
import tempfile
import time
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


def handshake(objs: list[dict[str, Any]], proxy_bin: Path, timeout_s: float = 10.0) -> list[str] | None:
    """The real portico-proxy completing a TLS handshake, with the chart's --ca and the
    host of its --operator URL as server name, against `openssl s_server` holding the
    chart-made certificate: the check that rustls (not only openssl) accepts what helm's
    genSignedCert makes. None when the proxy binary is not built."""
    secret = _find(objs, "Secret", SECRET)
    host = _proxy_operator_host(objs)
    if secret is None or host is None:
        return []
    if not proxy_bin.is_file():
        return None
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    with tempfile.TemporaryDirectory() as d:
        for k in ("ca.crt", "tls.crt", "tls.key"):
            Path(d, k).write_bytes(data.get(k, b""))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server_out = Path(d, "server.log")
        proxy_out = Path(d, "proxy.log")
        with server_out.open("w") as so, proxy_out.open("w") as po:
            # stdin stays open: s_server quits on EOF of its stdin. It prints ACCEPT once
            # it listens.
            server = subprocess.Popen(
                ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", f"{d}/tls.crt",
                 "-key", f"{d}/tls.key", "-alpn", "h2", "-naccept", "1"],
                stdin=subprocess.PIPE, stdout=so, stderr=subprocess.STDOUT)
            proxy = None
            try:
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline and "ACCEPT" not in server_out.read_text(errors="replace"):
                    time.sleep(0.05)
                proxy = subprocess.Popen(
                    [str(proxy_bin), f"--operator=https://127.0.0.1:{port}", f"--server-name={host}",
                     f"--ca={d}/ca.crt", "--admin=127.0.0.1:0", "--reconnect-max=1s", "--log=warn"],
                    stdout=po, stderr=subprocess.STDOUT)
                while time.monotonic() < deadline:
                    if "CIPHER is" in server_out.read_text(errors="replace") or "invalid peer certificate" in proxy_out.read_text(errors="replace"):
                        break
                    time.sleep(0.1)
            finally:
                for p in (proxy, server):
                    if p is not None:
                        p.kill()
                        p.wait(timeout=5)
        server_log = server_out.read_text(errors="replace")
        # Without a terminal the proxy still colours its log: drop the escapes.
        proxy_log = re.sub(r"\x1b\[[0-9;]*m", "", proxy_out.read_text(errors="replace"))
    if "invalid peer certificate" in proxy_log or "CIPHER is" not in server_log:
        tail = " | ".join(line for line in proxy_log.splitlines()[-3:])
        return [f"portico-proxy does not complete a TLS handshake with Secret {SECRET} as {host}: {tail or 'no output'}"]
    return []
