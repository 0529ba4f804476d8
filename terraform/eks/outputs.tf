output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "URL of the Kubernetes API server."
  value       = module.eks.cluster_endpoint
}

output "kubeconfig_command" {
  description = "Command that adds the cluster to your kubeconfig."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.eks.cluster_name}"
}

output "k8s_service_host" {
  description = "API server host name given to the Portico agent (kube-proxy replacement)."
  value       = local.k8s_service_host
}

output "vpc_id" {
  description = "ID of the VPC."
  value       = module.vpc.vpc_id
}

output "hosted_zone_id" {
  description = "ID of the Route53 zone external-dns and cert-manager write to."
  value       = data.aws_route53_zone.this.zone_id
}

output "pod_identity_role_arns" {
  description = "IAM roles associated with the platform ServiceAccounts by EKS Pod Identity."
  value = {
    external_dns                 = module.external_dns_pod_identity.iam_role_arn
    cert_manager                 = module.cert_manager_pod_identity.iam_role_arn
    aws_load_balancer_controller = module.aws_lb_controller_pod_identity.iam_role_arn
  }
}

output "flux_path" {
  description = "Directory of the repository the cluster reconciles."
  value       = var.flux_path
}

output "gateway_api_version" {
  description = "Gateway API CRD release installed before Portico."
  value       = var.gateway_api_version
}
