{{/*
Names and labels shared by every template.

Objects are named portico-<component> (not after the release): the operator selects the
proxy pods by app.kubernetes.io/name=portico-proxy (crates/operator/src/service/build.rs),
and `portico status` looks the components up by these names. One release per cluster.
*/}}

{{- define "portico.labels" -}}
app.kubernetes.io/part-of: portico
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ include "portico.tag" . | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Labels of one component: portico.componentLabels (list $ "operator") */}}
{{- define "portico.componentLabels" -}}
{{ include "portico.labels" (index . 0) }}
{{ include "portico.selectorLabels" . }}
{{- end }}

{{/* The selector of one component's pods (immutable in Deployments and DaemonSets). */}}
{{- define "portico.selectorLabels" -}}
app.kubernetes.io/name: portico-{{ index . 1 }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "portico.tag" -}}
{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The image of a component: portico.image (list $ "operator") */}}
{{- define "portico.image" -}}
{{ printf "%s/%s:%s" (index . 0).Values.image.repository (index . 1) (include "portico.tag" (index . 0)) }}
{{- end }}

{{/* Whether the agent DaemonSet runs: "true" or "". */}}
{{- define "portico.agentEnabled" -}}
{{- $a := .Values.agent.enabled -}}
{{- if kindIs "bool" $a -}}
{{- if $a }}true{{ end -}}
{{- else if or .Values.kubeProxyReplacement .Values.l2Announcements.enabled .Values.agent.gatewaySteering -}}
true
{{- end -}}
{{- end }}

{{/* Whether the operator runs LB-IPAM: "true" or "". */}}
{{- define "portico.lbIpam" -}}
{{- if or .Values.loadBalancerIPAM.enabled (gt (len .Values.loadBalancerIPAM.pools) 0) }}true{{ end -}}
{{- end }}

{{/* Whether cert-sync runs: "true" or "". */}}
{{- define "portico.certSync" -}}
{{- if and .Values.gatewayAPI.enabled .Values.gatewayAPI.secretsSync }}true{{ end -}}
{{- end }}

{{/* The operator's config server, as proxies dial it (the name its certificate carries). */}}
{{- define "portico.operatorHost" -}}
portico-operator.{{ .Release.Namespace }}.svc
{{- end }}

{{/*
Container securityContext of every component but the agent: non-root, read-only root
filesystem, no privilege escalation, no capability.
*/}}
{{- define "portico.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "portico.restrictedPod" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}
