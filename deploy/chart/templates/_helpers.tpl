{{/* Names and labels. */}}
{{- define "clipline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "clipline.fullname" -}}
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

{{- define "clipline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clipline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "clipline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "clipline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: clipline
{{- end -}}

{{/* Labels of one component: (dict "ctx" $ "component" "api") */}}
{{- define "clipline.componentLabels" -}}
{{ include "clipline.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "clipline.componentSelector" -}}
{{ include "clipline.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "clipline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "clipline.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "clipline.secretName" -}}
{{- default (include "clipline.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* image: (dict "ctx" $ "image" .Values.images.api) */}}
{{- define "clipline.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "clipline.tritonUrl" -}}
{{- printf "%s-triton:%v" (include "clipline.fullname" .) .Values.triton.ports.grpc -}}
{{- end -}}

{{/* The hard task time limit, in seconds. */}}
{{- define "clipline.taskTimeLimit" -}}
{{- default "180" (index .Values.config "CLIPLINE_TASK_TIME_LIMIT_SECONDS") | int -}}
{{- end -}}

{{/* Checksums that roll the pods when their settings change. */}}
{{- define "clipline.configChecksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}

{{/* Environment of every Clipline container: the ConfigMap, then the Secret. */}}
{{- define "clipline.envFrom" -}}
- configMapRef:
    name: {{ include "clipline.fullname" . }}
- secretRef:
    name: {{ include "clipline.secretName" . }}
{{- end -}}

{{- define "clipline.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.eventsRules }}
- name: events-rules
  mountPath: /etc/clipline
  readOnly: true
{{- end }}
{{- end -}}

{{- define "clipline.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- if .Values.eventsRules }}
- name: events-rules
  configMap:
    name: {{ include "clipline.fullname" . }}-events-rules
{{- end }}
{{- end -}}

{{/* Pod-level fields shared by Clipline pods (not Triton). */}}
{{- define "clipline.podCommon" -}}
serviceAccountName: {{ include "clipline.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Scheduling: (dict "v" .Values.api) */}}
{{- define "clipline.scheduling" -}}
{{- with .v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Refuse values that would put a secret into the ConfigMap, or a non-string setting. */}}
{{- define "clipline.validate" -}}
{{- range $k, $v := .Values.config }}
{{- if not (hasPrefix "CLIPLINE_" $k) }}
{{- fail (printf "config.%s: only CLIPLINE_* settings belong in config" $k) }}
{{- end }}
{{- if has $k (list "CLIPLINE_DATABASE_URL" "CLIPLINE_REDIS_URL" "CLIPLINE_EVENTS_WEBHOOK_SECRET") }}
{{- fail (printf "config.%s is a secret: set it under secrets (or in existingSecret)" $k) }}
{{- end }}
{{- end }}
{{- if not (has .Values.triton.modelRepository.source (list "image" "pvc")) }}
{{- fail "triton.modelRepository.source must be image or pvc" }}
{{- end }}
{{- end -}}
