{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "connect-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: fullnameOverride, else the release name when it contains the
chart name, else <release>-<chart>.
*/}}
{{- define "connect-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "connect-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator's pods (stable across upgrades: never add to them). */}}
{{- define "connect-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "connect-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "connect-operator.labels" -}}
helm.sh/chart: {{ include "connect-operator.chart" . }}
{{ include "connect-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: connect-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "connect-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "connect-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "connect-operator.leaseName" -}}
{{- default (include "connect-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "connect-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The operator's rules on SecurityProfiles and Events, shared by the ClusterRole (all namespaces) and
the per-namespace Roles. Exactly what the controller calls; no wildcards.
*/}}
{{- define "connect-operator.watchRules" -}}
- apiGroups: ["connect.cloud-operators.dev"]
  resources: ["securityprofiles"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["connect.cloud-operators.dev"]
  resources: ["securityprofiles/status"]
  verbs: ["patch"]
- apiGroups: ["connect.cloud-operators.dev"]
  resources: ["securityprofiles/finalizers"]
  verbs: ["update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* The cluster-scoped InstanceBindings: the operator reads them and writes their status. */}}
{{- define "connect-operator.bindingRules" -}}
- apiGroups: ["connect.cloud-operators.dev"]
  resources: ["instancebindings"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["connect.cloud-operators.dev"]
  resources: ["instancebindings/status"]
  verbs: ["patch"]
{{- end }}

{{/* Fails the render on combinations the schema cannot express. */}}
{{- define "connect-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: replicas without leader election would reconcile the same SecurityProfiles concurrently" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled=true needs metrics.service.enabled=true (the ServiceMonitor scrapes the Service)" }}
{{- end }}
{{- end }}
