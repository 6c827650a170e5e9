{{/* The chart's name, overridable. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name when it already says "vigil". */}}
{{- define "vigil.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of the operator's Deployment, ServiceAccount, ClusterRole and friends. */}}
{{- define "vigil.operatorName" -}}
{{- printf "%s-operator" (include "vigil.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object of the chart. */}}
{{- define "vigil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "vigil.selectorLabels" . }}
{{- end -}}

{{/* Labels that select the operator's pods (immutable once installed). */}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vigil.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference {registry}/{repository}:{tag or appVersion}, or @digest when one is given.
Takes a dict: registry, image (repository, tag, digest), appVersion. */}}
{{- define "vigil.imageRef" -}}
{{- $name := .image.repository -}}
{{- with .registry }}{{ $name = printf "%s/%s" (trimSuffix "/" .) $name }}{{ end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $name .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $name (default .appVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The operator's image. */}}
{{- define "vigil.image" -}}
{{- include "vigil.imageRef" (dict "registry" .Values.image.registry "image" .Values.image "appVersion" .Chart.AppVersion) -}}
{{- end -}}

{{/* The model server image of ModelDeployments without spec.image: defaultImage when set, else
modelServerImage in the operator image's registry (unless it names its own). */}}
{{- define "vigil.modelServerImage" -}}
{{- if .Values.defaultImage -}}
{{- .Values.defaultImage -}}
{{- else -}}
{{- $registry := default .Values.image.registry .Values.modelServerImage.registry -}}
{{- include "vigil.imageRef" (dict "registry" $registry "image" .Values.modelServerImage "appVersion" .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The leader election Lease: in the release namespace, named after the operator. */}}
{{- define "vigil.leaseName" -}}
{{- include "vigil.operatorName" . -}}
{{- end -}}

{{/* Labels of every prometheus-operator object: monitoring.labels, then the object's own. */}}
{{- define "vigil.monitoringLabels" -}}
{{- $labels := merge (dict) (.own | default dict) (.root.Values.monitoring.labels | default dict) -}}
{{- with $labels }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* The `job` label(s) of the operator's metrics, as a regular expression: alerts.operatorJob,
else what the chart's ServiceMonitor (the Service's name) and PodMonitor (namespace/name) give. */}}
{{- define "vigil.operatorJobs" -}}
{{- if .Values.alerts.operatorJob -}}
{{- .Values.alerts.operatorJob -}}
{{- else if .Values.metrics.port -}}
{{- $operator := include "vigil.operatorName" . -}}
{{- $jobs := list -}}
{{- if .Values.metrics.serviceMonitor.enabled }}{{ $jobs = append $jobs (printf "%s-metrics" $operator) }}{{ end -}}
{{- if .Values.metrics.podMonitor.enabled }}{{ $jobs = append $jobs (printf "%s/%s" .Release.Namespace $operator) }}{{ end -}}
{{- join "|" $jobs -}}
{{- end -}}
{{- end -}}
