"""Offline validation of the Flux repository under flux/ (run by hack/check-flux.sh).

What flows through it:

    flux/clusters/<c>/*.yaml ──load──> root objects ──┐
        Kustomization.spec.path ──kubectl kustomize──> objects ──substitute ${vars}──┤
        (nested Kustomizations are followed the same way)                           │
    every other dir with a kustomization.yaml ──kubectl kustomize──> objects ───────┤
                                                                                    v
                                            Obj(source, layer, object) ──> schema checks
                                                                     └──> reference checks
                                                                          (per cluster)

- An ``Obj`` is one Kubernetes object plus where it came from (file or directory) and,
  in a cluster walk, the top-level Flux Kustomization ("layer") that applies it.
- Schema checks (schemas.py): Kubernetes built-ins against the kubernetes-validate
  strict schemas, Gateway API kinds against the openAPIV3Schema of the v1.6.1 CRDs in
  ../shared/gateway-api (made strict: unknown fields rejected, as the API server's
  strict field validation does), Flux and cert-manager kinds with the @kubernetes-models
  validators (crs.py, via node). Any other kind is an error: nothing passes unchecked.
- Reference checks (refs.py): what a cluster would only reveal at apply time: routes
  attach to existing listeners that admit them, backends exist, layers depend on the
  layers that create their namespaces and CRDs, every ${var} is defined.
"""
