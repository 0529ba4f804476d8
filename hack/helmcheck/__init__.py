"""Offline checks of the Helm chart helm/portico (run by hack/check-helm.sh).

  values sets ──> helm template ──> objects ──┬─> schemas    (Kubernetes 1.35, Gateway API
  (ci/*.yaml,                                 │               and Portico CRDs: fluxcheck)
   Flux HelmRelease values,                   ├─> pods       (securityContext, probes,
   Terraform's bootstrap values)              │               resources, host access)
                                              ├─> tls        (proxies trust the operator: openssl,
                                              │               and the real portico-proxy)
                                              ├─> cli        (flags the binaries know)
                                              └─> rbac       (no wildcard, Secrets only
                                                              where allowed, rules equal
                                                              to ci/rbac-expected.yaml)
"""
