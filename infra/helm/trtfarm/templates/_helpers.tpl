{{- define "trtfarm.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "trtfarm.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "trtfarm.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "trtfarm.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-secrets" (include "trtfarm.fullname" .)) -}}
{{- end -}}

{{- define "trtfarm.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The environment every farm container gets: shared settings (ConfigMap) + endpoints and credentials (Secret). */}}
{{- define "trtfarm.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "trtfarm.fullname" . }}-settings
env:
  - name: TRTFARM_DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ include "trtfarm.secretName" . }}
        key: database-url
  - name: TRTFARM_BROKER_URL
    valueFrom:
      secretKeyRef:
        name: {{ include "trtfarm.secretName" . }}
        key: broker-url
  - name: AWS_ACCESS_KEY_ID
    valueFrom:
      secretKeyRef:
        name: {{ include "trtfarm.secretName" . }}
        key: aws-access-key-id
        optional: true
  - name: AWS_SECRET_ACCESS_KEY
    valueFrom:
      secretKeyRef:
        name: {{ include "trtfarm.secretName" . }}
        key: aws-secret-access-key
        optional: true
{{- with .Values.s3EndpointUrl }}
  - name: TRTFARM_S3_ENDPOINT_URL
    value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "trtfarm.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
