# Tags are passed to every module and resource explicitly (local.tags) rather than as
# provider default_tags, which some module resources (launch templates' instance tags)
# would not receive anyway.
provider "aws" {
  region = var.region
}

# The Kubernetes-facing providers authenticate with short-lived tokens from
# `aws eks get-token` (AWS CLI v2 on the machine running Terraform), so no static
# credential ends up in the state.
locals {
  kube_exec = {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--region", var.region, "--cluster-name", module.eks.cluster_name]
  }
}

provider "helm" {
  kubernetes = {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)
    exec                   = local.kube_exec
  }
}

provider "kubectl" {
  host                   = module.eks.cluster_endpoint
  cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)
  load_config_file       = false
  # The API server may briefly refuse requests right after creation.
  apply_retry_count = 10

  exec {
    api_version = local.kube_exec.api_version
    command     = local.kube_exec.command
    args        = local.kube_exec.args
  }
}

provider "flux" {
  kubernetes = {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)
    exec                   = local.kube_exec
  }
  git = {
    url    = var.flux_git_url
    branch = var.flux_git_branch
    http = {
      username = var.flux_git_username
      password = var.flux_git_token
    }
  }
}
