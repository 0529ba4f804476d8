# Flux: the flux-system namespace, the variables Flux substitutes into the manifests
# (`${domain_name}` and friends, like the reference demo's postBuild.substituteFrom),
# and the bootstrap itself, which commits flux-system/ under var.flux_path and makes the
# cluster reconcile that directory.

resource "kubectl_manifest" "flux_system_namespace" {
  yaml_body = yamlencode({
    apiVersion = "v1"
    kind       = "Namespace"
    metadata = {
      name = "flux-system"
    }
  })

  depends_on = [module.eks]
}

# Read by every Kustomization of flux/clusters/mycluster-0 (postBuild.substituteFrom).
# The keys are the variables the manifests use; flux/ci/cluster-vars/mycluster-0.yaml
# is a sample with the same keys that the offline check (hack/check-flux.sh) uses.
resource "kubectl_manifest" "cluster_vars" {
  yaml_body = yamlencode({
    apiVersion = "v1"
    kind       = "ConfigMap"
    metadata = {
      name      = "cluster-vars"
      namespace = "flux-system"
    }
    data = {
      cluster_name     = var.cluster_name
      domain_name      = var.domain_name
      aws_region       = var.region
      vpc_id           = module.vpc.vpc_id
      hosted_zone_id   = data.aws_route53_zone.this.zone_id
      acme_email       = var.acme_email
      cluster_issuer   = var.cluster_issuer
      k8s_service_host = local.k8s_service_host
      k8s_service_port = tostring(local.k8s_service_port)
      portico_version  = var.portico_version
    }
  })

  depends_on = [kubectl_manifest.flux_system_namespace]
}

resource "flux_bootstrap_git" "this" {
  path = var.flux_path

  # Manifests built into the provider: no download from GitHub releases at apply time.
  embedded_manifests = true
  # The namespace is Terraform's (above), so the ConfigMap can exist before Flux.
  keep_namespace = true

  depends_on = [
    aws_eks_addon.coredns,
    kubectl_manifest.cluster_vars,
    module.external_dns_pod_identity,
    module.cert_manager_pod_identity,
    module.aws_lb_controller_pod_identity,
  ]
}
