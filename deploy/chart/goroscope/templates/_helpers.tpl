{{/* Names and labels shared by every object. */}}
{{- define "goroscope.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "goroscope.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "goroscope.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "goroscope.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-agent" (include "goroscope.fullname" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "goroscope.secretName" -}}
{{- if .Values.tokens.existingSecret -}}
{{- .Values.tokens.existingSecret -}}
{{- else -}}
{{- printf "%s-tokens" (include "goroscope.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "goroscope.collectorUrl" -}}
{{- $scheme := "ws" -}}
{{- if .Values.tls.secretName -}}{{- $scheme = "wss" -}}{{- end -}}
{{- printf "%s://%s-collector:%v" $scheme (include "goroscope.fullname" .) .Values.collector.port -}}
{{- end -}}

{{/* Where OTLP goes: the endpoint given, else the chart's OpenTelemetry Collector when it deploys one. */}}
{{- define "goroscope.otelCollectorUrl" -}}
{{- printf "http://%s-otel-collector:4318" (include "goroscope.fullname" .) -}}
{{- end -}}

{{- define "goroscope.collectorOtlpEndpoint" -}}
{{- if .Values.collector.otlpEndpoint -}}
{{- .Values.collector.otlpEndpoint -}}
{{- else if .Values.otelCollector.enabled -}}
{{- include "goroscope.otelCollectorUrl" . -}}
{{- end -}}
{{- end -}}

{{- define "goroscope.agentOtlpEndpoint" -}}
{{- if .Values.agent.otlpEndpoint -}}
{{- .Values.agent.otlpEndpoint -}}
{{- else if and .Values.agent.otlp .Values.otelCollector.enabled -}}
{{- include "goroscope.otelCollectorUrl" . -}}
{{- end -}}
{{- end -}}
