# AWS permissions of the platform components, by EKS Pod Identity: each role trusts
# pods.eks.amazonaws.com and is associated with one namespace/ServiceAccount pair, so the
# Kubernetes side needs no role-ARN annotation (the Flux HelmReleases only fix the
# ServiceAccount names). The namespaces and names below must match
# flux/infrastructure/base/{external-dns,cert-manager,aws-load-balancer-controller}.

locals {
  hosted_zone_arn = data.aws_route53_zone.this.arn
}

# external-dns (sources: service + gateway-httproute) writes the records of the
# Gateways' hostnames into the demo zone, and only that zone.
module "external_dns_pod_identity" {
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "2.0.0"

  name = "${var.cluster_name}-external-dns"

  attach_external_dns_policy    = true
  external_dns_hosted_zone_arns = [local.hosted_zone_arn]

  associations = {
    this = {
      cluster_name    = module.eks.cluster_name
      namespace       = "external-dns"
      service_account = "external-dns"
    }
  }

  tags = local.tags
}

# cert-manager answers Let's Encrypt DNS-01 challenges (S12) with TXT records in the
# zone. DNS-01 rather than HTTP-01 because the Gateways redirect port 80 to HTTPS and
# because it also covers the wildcard listener of the shared `platform` Gateway (S14).
module "cert_manager_pod_identity" {
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "2.0.0"

  name = "${var.cluster_name}-cert-manager"

  attach_cert_manager_policy    = true
  cert_manager_hosted_zone_arns = [local.hosted_zone_arn]

  associations = {
    this = {
      cluster_name    = module.eks.cluster_name
      namespace       = "cert-manager"
      service_account = "cert-manager"
    }
  }

  tags = local.tags
}

# The AWS Load Balancer Controller turns the LoadBalancer Services that Portico creates
# per Gateway (loadBalancerClass service.k8s.aws/nlb, S18) into NLBs.
module "aws_lb_controller_pod_identity" {
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "2.0.0"

  name = "${var.cluster_name}-aws-lbc"

  attach_aws_lb_controller_policy = true

  associations = {
    this = {
      cluster_name    = module.eks.cluster_name
      namespace       = "kube-system"
      service_account = "aws-load-balancer-controller"
    }
  }

  tags = local.tags
}
