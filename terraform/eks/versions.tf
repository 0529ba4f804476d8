terraform {
  # The AWS provider 6.x and the modules below need Terraform 1.5.7 or newer.
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
    # alekc/kubectl: server-side apply of raw manifests (the Gateway API CRDs, the
    # flux-system namespace and the cluster-vars ConfigMap) without needing the cluster
    # to exist at plan time, which hashicorp/kubernetes' kubernetes_manifest requires.
    kubectl = {
      source  = "alekc/kubectl"
      version = "~> 2.1"
    }
    flux = {
      source  = "fluxcd/flux"
      version = "~> 1.5"
    }
    http = {
      source  = "hashicorp/http"
      version = "~> 3.4"
    }
  }
}
