# Inputs of the EKS stack. Every variable has a description and, where a bad value would
# only fail deep inside an AWS API call, a validation that fails at plan time instead.

variable "region" {
  description = "AWS region to create the cluster in, e.g. eu-west-3."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-3 or us-east-1."
  }
}

variable "cluster_name" {
  description = "Name of the EKS cluster; also the Flux cluster directory suffix, the external-dns TXT owner and the prefix of the IAM roles."
  type        = string
  default     = "mycluster-0"

  validation {
    # 38 characters leaves room for the suffixes the modules append to IAM role and
    # node group names (both capped at 64 by AWS).
    condition     = can(regex("^[a-z][a-z0-9-]{0,37}$", var.cluster_name))
    error_message = "cluster_name must start with a letter, use only a-z, 0-9 and '-', and be at most 38 characters."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the control plane and the node group, e.g. 1.35."
  type        = string
  default     = "1.35"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.35 (major.minor only)."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC. Private subnets (nodes, pods: the VPC CNI gives pods VPC addresses) take /20s, public and intra subnets /24s."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 16
    error_message = "vpc_cidr must be an IPv4 CIDR of size /16 or larger, e.g. 10.0.0.0/16."
  }
}

variable "availability_zone_count" {
  description = "How many availability zones the VPC and the node group span."
  type        = number
  default     = 3

  validation {
    condition     = var.availability_zone_count >= 2 && var.availability_zone_count <= 3
    error_message = "availability_zone_count must be 2 or 3 (EKS needs two; the subnet layout has room for three)."
  }
}

variable "single_nat_gateway" {
  description = "Use one NAT gateway for all private subnets (cheaper, one AZ is a single point of failure) instead of one per AZ."
  type        = bool
  default     = true
}

variable "api_public_access_cidrs" {
  description = "CIDRs allowed to reach the public Kubernetes API endpoint. Must include the address Terraform runs from: the helm, kubectl and flux providers talk to the API. Example: [\"203.0.113.7/32\"]."
  type        = list(string)

  validation {
    condition     = length(var.api_public_access_cidrs) > 0 && alltrue([for c in var.api_public_access_cidrs : can(cidrhost(c, 0))])
    error_message = "api_public_access_cidrs must be a non-empty list of IPv4 CIDRs."
  }
}

variable "node_instance_types" {
  description = "EC2 instance types of the managed node group (x86_64; the AMI is Amazon Linux 2023, cgroup v2, which the Portico agent's eBPF socket load balancer needs)."
  type        = list(string)
  default     = ["m6i.large"]

  validation {
    condition     = length(var.node_instance_types) > 0
    error_message = "node_instance_types must name at least one instance type."
  }
}

variable "node_capacity_type" {
  description = "ON_DEMAND or SPOT capacity for the managed node group."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.node_capacity_type)
    error_message = "node_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "node_group_size" {
  description = "Minimum, desired and maximum number of nodes of the managed node group."
  type = object({
    min     = number
    desired = number
    max     = number
  })
  default = {
    min     = 2
    desired = 2
    max     = 4
  }

  validation {
    condition     = var.node_group_size.min >= 1 && var.node_group_size.min <= var.node_group_size.desired && var.node_group_size.desired <= var.node_group_size.max
    error_message = "node_group_size must satisfy 1 <= min <= desired <= max."
  }
}

variable "domain_name" {
  description = "Public Route53 hosted zone the demo uses (the scenario's $${domain_name}): echo.<domain>, split-echo.<domain>. The zone must already exist in this account."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([-a-z0-9]*[a-z0-9])?\\.)+[a-z]{2,}$", var.domain_name))
    error_message = "domain_name must be a lower-case DNS name such as cloud.example.com (no trailing dot)."
  }
}

variable "acme_email" {
  description = "E-mail address registered with Let's Encrypt (expiry notices) by the ClusterIssuers."
  type        = string

  validation {
    condition     = can(regex("^[^@[:space:]]+@[^@[:space:]]+\\.[^@[:space:]]+$", var.acme_email))
    error_message = "acme_email must be an e-mail address."
  }
}

variable "cluster_issuer" {
  description = "ClusterIssuer the demo Gateways name in their cert-manager.io/cluster-issuer annotation. Use letsencrypt-staging while experimenting: production has strict rate limits."
  type        = string
  default     = "letsencrypt-prod"

  validation {
    condition     = contains(["letsencrypt-prod", "letsencrypt-staging"], var.cluster_issuer)
    error_message = "cluster_issuer must be letsencrypt-prod or letsencrypt-staging (the two ClusterIssuers flux/infrastructure/base/issuers/letsencrypt defines)."
  }
}

variable "gateway_api_version" {
  description = "Gateway API release whose standard-install.yaml is applied before Portico starts (Flux's crds layer then owns the CRDs). Keep it equal to the tag in flux/crds/base/gateway-api.yaml."
  type        = string
  default     = "v1.6.1"

  validation {
    condition     = can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+$", var.gateway_api_version))
    error_message = "gateway_api_version must be a release tag such as v1.6.1."
  }
}

variable "portico_chart" {
  description = "Portico Helm chart: a local path (default: helm/portico of this repository) or a chart name in portico_chart_repository."
  type        = string
  default     = null
}

variable "portico_chart_repository" {
  description = "Helm repository (https:// or oci://) holding portico_chart; null when portico_chart is a local path."
  type        = string
  default     = null

  validation {
    condition     = var.portico_chart_repository == null || can(regex("^(https|oci)://", var.portico_chart_repository))
    error_message = "portico_chart_repository must start with https:// or oci://."
  }
}

variable "portico_chart_version" {
  description = "Version of the Portico chart when it comes from a repository; null for a local chart."
  type        = string
  default     = null
}

variable "portico_version" {
  description = "Image tag of the Portico images (ghcr.io/portico-dev/portico-*), also used by the echo app Flux deploys."
  type        = string
  default     = "0.1.0"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.portico_version))
    error_message = "portico_version must be a valid container image tag."
  }
}

variable "flux_git_url" {
  description = "HTTPS URL of the Git repository Flux reconciles (your fork of this repository), e.g. https://github.com/me/portico.git."
  type        = string

  validation {
    condition     = can(regex("^https://[^/]+/.+", var.flux_git_url))
    error_message = "flux_git_url must be an https:// Git URL."
  }
}

variable "flux_git_branch" {
  description = "Branch of flux_git_url that Flux reconciles and that bootstrap commits to."
  type        = string
  default     = "main"
}

variable "flux_git_username" {
  description = "User name for flux_git_url; any non-empty string works with a GitHub personal access token."
  type        = string
  default     = "git"
}

variable "flux_git_token" {
  description = "Token (e.g. a GitHub fine-grained PAT with contents read/write on the repository) that bootstrap pushes with and Flux pulls with."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.flux_git_token) > 0
    error_message = "flux_git_token must not be empty."
  }
}

variable "flux_path" {
  description = "Directory of the repository that the flux-system Kustomization reconciles; bootstrap writes flux-system/ under it."
  type        = string
  default     = "flux/clusters/mycluster-0"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.flux_path)) && !startswith(var.flux_path, "/")
    error_message = "flux_path must be a relative path such as flux/clusters/mycluster-0."
  }
}

variable "tags" {
  description = "Tags added to every AWS resource."
  type        = map(string)
  default     = {}
}
