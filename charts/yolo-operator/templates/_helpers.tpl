{{/* Labels every object of the release carries beside its own (kustomize's base adds part-of the same way). */}}
{{- define "yolo-operator.labels" -}}
app.kubernetes.io/part-of: yolo-operator
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The controller's own labels: its selector, as in manifests/base. */}}
{{- define "yolo-operator.selector" -}}
app.kubernetes.io/name: yolo-operator
app.kubernetes.io/component: controller
{{- end }}

{{- define "yolo-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "yolo-operator.workloadImage" -}}
{{- printf "%s:%s" .Values.workloadImage.repository (.Values.workloadImage.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* A file of the chart (files/) re-rendered with the release's labels merged in and, when given, a namespace. */}}
{{- define "yolo-operator.fromFile" -}}
{{- $doc := .doc }}
{{- $meta := $doc.metadata }}
{{- $_ := set $meta "labels" (merge (include "yolo-operator.labels" .root | fromYaml) ($meta.labels | default dict)) }}
{{- if .namespace }}{{ $_ := set $meta "namespace" .namespace }}{{ end }}
{{- if .annotations }}{{ $_ := set $meta "annotations" (merge .annotations ($meta.annotations | default dict)) }}{{ end }}
{{- toYaml $doc }}
{{- end }}
