# The Gateway API CRDs, applied once before Portico so that its operator starts cleanly
# (reference scenario S1: it refuses to start without them). Flux's `crds` layer
# (flux/crds/base/gateway-api.yaml) applies the same release afterwards and owns them
# from then on; keep var.gateway_api_version and that tag equal.

data "http" "gateway_api_crds" {
  url = "https://github.com/kubernetes-sigs/gateway-api/releases/download/${var.gateway_api_version}/standard-install.yaml"

  lifecycle {
    postcondition {
      condition     = self.status_code == 200
      error_message = "Could not download the Gateway API ${var.gateway_api_version} standard-install.yaml."
    }
  }
}

data "kubectl_file_documents" "gateway_api_crds" {
  content = data.http.gateway_api_crds.response_body
}

resource "kubectl_manifest" "gateway_api_crds" {
  for_each = data.kubectl_file_documents.gateway_api_crds.manifests

  yaml_body = each.value
  # The CRDs are larger than the 256 KiB last-applied annotation client-side apply
  # would add; server-side apply stores no such annotation.
  server_side_apply = true
  wait              = true

  depends_on = [module.eks]
}
