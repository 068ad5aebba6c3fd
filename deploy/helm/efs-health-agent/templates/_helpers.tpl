{{/* Name of every object: the release name when it already says efs-health-agent. */}}
{{- define "efs-health-agent.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Pod selector labels (daemonset mode). */}}
{{- define "efs-health-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "efs-health-agent.labels" -}}
{{ include "efs-health-agent.selectorLabels" . }}
app.kubernetes.io/part-of: efs-health-agent
app.kubernetes.io/version: {{ include "efs-health-agent.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The image tag: image.tag, else the chart's appVersion, the tag `make
image` gives the image it builds. */}}
{{- define "efs-health-agent.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{/* kubelet's pods directory, <kubeletPath>/pods. */}}
{{- define "efs-health-agent.podsDir" -}}
{{- printf "%s/pods" (trimSuffix "/" .Values.kubeletPath) -}}
{{- end -}}

{{/* The health-port probe used for liveness, and for readiness too: a node
with an unhealthy mount must not hold up a rollout. */}}
{{- define "efs-health-agent.liveProbe" -}}
httpGet:
  path: /healthz/live
  port: {{ .port }}
initialDelaySeconds: {{ .delay }}
timeoutSeconds: 3
periodSeconds: {{ .period }}
failureThreshold: {{ .failures }}
{{- end -}}

{{/* The agent container; .sidecar selects the CSI sidecar variant. */}}
{{- define "efs-health-agent.container" -}}
{{- $v := .root.Values -}}
name: efs-health-agent
image: {{ printf "%s:%s" $v.image.repository (include "efs-health-agent.tag" .root) | quote }}
imagePullPolicy: {{ $v.image.pullPolicy }}
env:
# Probe files carry the node name so a restarted pod removes what its
# predecessor left behind, and never another node's files.
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- if $v.bindNodeIP }}
# Host network: listen on the node's primary address only.
- name: NODE_IP
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
- name: HEALTH_BIND_ADDRESS
  value: $(NODE_IP)
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: k8s.node.name=$(NODE_NAME)
- name: HEALTH_PORT
  value: {{ $v.port | quote }}
- name: HEALTH_CHECK_INTERVAL
  value: {{ $v.checkInterval | quote }}
- name: HEALTH_CHECK_TIMEOUT
  value: {{ $v.checkTimeout | quote }}
- name: HEALTH_DISCOVER_FSTYPES
  value: {{ $v.discoverFSTypes | quote }}
- name: HEALTH_DISCOVER_PREFIX
  value: {{ $v.discoverPrefix | default (include "efs-health-agent.podsDir" .root) | quote }}
- name: HEALTH_MOUNTINFO
  value: /proc/self/mountinfo
- name: HEALTH_LOG_FORMAT
  value: {{ $v.logFormat | quote }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
ports:
- name: health
  containerPort: {{ $v.port }}
  protocol: TCP
livenessProbe:
  {{- include "efs-health-agent.liveProbe" (dict "port" $v.port "delay" 10 "period" 10 "failures" 5) | nindent 2 }}
readinessProbe:
  {{- include "efs-health-agent.liveProbe" (dict "port" $v.port "delay" 5 "period" 5 "failures" 3) | nindent 2 }}
resources:
  {{- toYaml $v.resources | nindent 2 }}
# uid 0 so probe files can be written into volumes owned by any user; every
# capability dropped but DAC_OVERRIDE, which that write needs.
securityContext:
  runAsUser: 0
  runAsGroup: 0
  runAsNonRoot: false
  privileged: false
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop:
    - ALL
    add:
    - DAC_OVERRIDE
volumeMounts:
{{- if .sidecar }}
# The driver's kubelet-dir volume, where the driver mounts it.
- name: kubelet-dir
  mountPath: {{ $v.kubeletPath }}
  mountPropagation: HostToContainer
- name: efs-state-dir
  mountPath: /var/run/efs
  readOnly: true
{{- else }}
- name: kubelet-pods
  mountPath: {{ include "efs-health-agent.podsDir" .root }}
  mountPropagation: HostToContainer
{{- if $v.daemonset.mountEFSState }}
- name: efs-state
  mountPath: /var/run/efs
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}
