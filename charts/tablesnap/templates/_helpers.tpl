{{/* Name of the operator's objects. */}}
{{- define "tablesnap.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels. */}}
{{- define "tablesnap.selectorLabels" -}}
app.kubernetes.io/name: tablesnap-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "tablesnap.labels" -}}
{{ include "tablesnap.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tablesnap
{{- end -}}

{{/* The ServiceAccount's name. */}}
{{- define "tablesnap.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tablesnap.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
