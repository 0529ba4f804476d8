# Portico, installed once by Terraform so that the cluster has a Service datapath before
# any node joins (there is no kube-proxy). Flux then adopts the same release
# (flux/infrastructure/base/portico: same release name and namespace) and owns upgrades;
# Terraform ignores later changes to it.
resource "helm_release" "portico" {
  name             = "portico"
  namespace        = local.portico_namespace
  create_namespace = true

  chart      = coalesce(var.portico_chart, "${path.module}/../../helm/portico")
  repository = var.portico_chart_repository
  version    = var.portico_chart_version

  # No node exists yet (the node group depends on this release), so nothing could
  # become ready: do not wait. The DaemonSets start as nodes join.
  wait = false

  values = [templatefile("${path.module}/templates/portico-values.yaml.tftpl", {
    k8s_service_host = local.k8s_service_host
    k8s_service_port = local.k8s_service_port
    portico_version  = var.portico_version
  })]

  lifecycle {
    # Flux's HelmRelease upgrades this release from now on (values from Git).
    ignore_changes = all
  }

  depends_on = [kubectl_manifest.gateway_api_crds]
}
