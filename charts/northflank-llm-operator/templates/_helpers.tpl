{{/*
Chart name, truncated to 63 characters (the DNS label limit some Kubernetes name fields have).
*/}}
{{- define "northflank-llm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart>, or <release> when it already contains the chart name.
Truncated to 63 characters.
*/}}
{{- define "northflank-llm-operator.fullname" -}}
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

{{/*
A name derived from the full name with a suffix; the full name is shortened so the suffix always fits
into 63 characters. Call with (dict "context" $ "suffix" "view").
*/}}
{{- define "northflank-llm-operator.componentName" -}}
{{- $suffix := printf "-%s" .suffix }}
{{- $base := include "northflank-llm-operator.fullname" .context | trunc (int (sub 63 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s%s" $base $suffix }}
{{- end }}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "northflank-llm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels every resource carries.
*/}}
{{- define "northflank-llm-operator.labels" -}}
{{- $labels := dict
  "helm.sh/chart" (include "northflank-llm-operator.chart" .)
  "app.kubernetes.io/version" (include "northflank-llm-operator.imageTag" . | trunc 63 | trimSuffix "-")
  "app.kubernetes.io/part-of" "northflank-llm-operator"
  "app.kubernetes.io/managed-by" .Release.Service }}
{{- $labels = merge $labels (include "northflank-llm-operator.selectorLabels" . | fromYaml) }}
{{- /* The chart's own labels win: overriding a selector label would orphan the pod. */}}
{{- toYaml (merge $labels (.Values.commonLabels | default dict)) }}
{{- end }}

{{/*
Selector labels: stable for the life of the release (a Deployment's selector is immutable).
*/}}
{{- define "northflank-llm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "northflank-llm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "northflank-llm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "northflank-llm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image tag: the tag value, else the chart's appVersion.
*/}}
{{- define "northflank-llm-operator.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
Full image reference: repository:tag, plus @digest when a digest is pinned.
*/}}
{{- define "northflank-llm-operator.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "northflank-llm-operator.imageTag" .) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
Name of the Secret that holds the operator-wide API token ("" when there is none).
*/}}
{{- define "northflank-llm-operator.tokenSecretName" -}}
{{- if .Values.northflank.existingSecret }}
{{- .Values.northflank.existingSecret }}
{{- else if .Values.northflank.apiToken }}
{{- include "northflank-llm-operator.componentName" (dict "context" . "suffix" "api-token") }}
{{- end }}
{{- end }}

{{/*
The operator's own (Cluster)Role rules: least privilege for what the operator does, nothing more.
kopf runs with --standalone (no peering objects) and with CRD/namespace scanning disabled, so it needs
no access to CRDs, namespaces or KopfPeerings. It adds no finalizers or annotations, so it never
patches the main resource; status is written through the status subresource.
*/}}
{{- define "northflank-llm-operator.operatorRules" -}}
# Watch the custom resources.
- apiGroups: ["northflank-llm-operator.dev"]
  resources: ["llmmodeldeployments"]
  verbs: ["get", "list", "watch"]
# Write what was observed into status, and nothing else.
- apiGroups: ["northflank-llm-operator.dev"]
  resources: ["llmmodeldeployments/status"]
  verbs: ["patch"]
# Report transitions as Events (kopf aggregates repeated events with a patch).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.management.enabled }}
# management.enabled: record a create attempt (annotations) and the delete-at-Northflank finalizer in the
# resources' metadata; a merge patch of the object (the spec is never changed).
- apiGroups: ["northflank-llm-operator.dev"]
  resources: ["llmmodeldeployments"]
  verbs: ["patch"]
{{- end }}
{{- if .Values.rbac.secretAccess }}
# Read the API token a resource names in spec.credentialsSecretRef.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- end }}

{{/*
With metrics.secure the operator asks the API server who a scraper is and whether it may read /metrics.
Both reviews are cluster-scoped: in the operator's ClusterRole, or a ClusterRole of their own when
watchNamespaces gives the operator only Roles.
*/}}
{{- define "northflank-llm-operator.metricsAuthRules" -}}
{{- if and .Values.metrics.enabled .Values.metrics.secure }}
# metrics.secure: TokenReview and SubjectAccessReview for each new scraper token (controller-runtime's way).
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- end }}
{{- end }}

{{/*
Fail early on combinations of values the schema cannot express.
*/}}
{{- define "northflank-llm-operator.validateValues" -}}
{{- if and .Values.northflank.apiToken .Values.northflank.existingSecret }}
{{- fail "northflank.apiToken and northflank.existingSecret are mutually exclusive: set one of them" }}
{{- end }}
{{- if and (not .Values.rbac.secretAccess) (not (include "northflank-llm-operator.tokenSecretName" .)) }}
{{- fail "rbac.secretAccess=false needs an operator-wide token: set northflank.existingSecret (or northflank.apiToken), because resources cannot use spec.credentialsSecretRef without Secret access" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not (and .Values.metrics.enabled .Values.service.enabled)) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled and service.enabled: it scrapes the Service's metrics port" }}
{{- end }}
{{- if not (lt (float64 .Values.leaderElection.retryPeriodSeconds) (float64 .Values.leaderElection.renewDeadlineSeconds)) }}
{{- fail "leaderElection needs retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds" }}
{{- end }}
{{- if not (lt (float64 .Values.leaderElection.renewDeadlineSeconds) (float64 .Values.leaderElection.leaseDurationSeconds)) }}
{{- fail "leaderElection needs retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds" }}
{{- end }}
{{- end }}

{{/*
"true" when the replicas elect a leader: asked for, or needed because more than one replica runs.
*/}}
{{- define "northflank-llm-operator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
Name of the leader election Lease.
*/}}
{{- define "northflank-llm-operator.leaseName" -}}
{{- default (include "northflank-llm-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}
