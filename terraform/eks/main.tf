# EKS for Portico: what is created, in order (each step depends on the one before):
#
#   vpc.tf          VPC, private/public/intra subnets, NAT
#   eks.tf          control plane with NO kube-proxy (only vpc-cni and the Pod Identity
#                   agent as add-ons, created before any node exists)
#   gateway-api.tf  Gateway API CRDs (Portico refuses to start without them: S1)
#   portico.tf      Portico by Helm, kubeProxyReplacement=true, API server host/port
#                   given explicitly (no kube-proxy, so no `kubernetes` Service yet)
#   eks.tf          the managed node group (joins once Portico's agent is scheduled),
#                   then CoreDNS (needs nodes and working Services)
#   iam.tf          Pod Identity roles: external-dns, cert-manager (DNS-01), AWS LB controller
#   flux.tf         cluster-vars ConfigMap + Flux bootstrap on flux/clusters/<cluster>
#
# From then on Flux owns everything in the cluster, Portico's HelmRelease and the
# Gateway API CRDs included (see flux/README.md).

data "aws_availability_zones" "available" {
  # Local Zones and Wavelength Zones cannot host EKS nodes.
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_route53_zone" "this" {
  name         = var.domain_name
  private_zone = false
}

locals {
  azs = slice(data.aws_availability_zones.available.names, 0, var.availability_zone_count)

  # The agent must reach the API server without the `kubernetes` Service (that Service
  # is what the agent itself implements once kube-proxy is gone), so it is given the
  # endpoint's host name and port directly, like Cilium's k8sServiceHost/Port.
  k8s_service_host = trimprefix(module.eks.cluster_endpoint, "https://")
  k8s_service_port = 443

  portico_namespace = "portico-system"

  tags = merge(var.tags, {
    "portico.dev/cluster" = var.cluster_name
    "managed-by"          = "terraform"
  })
}
