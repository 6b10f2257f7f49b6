{{/* Pieces of the pod specs: the API container (a sidecar of the controller, or its own
Deployment with api.separate) and what every pod of the chart shares. */}}

{{- define "channel-operator.apiContainer" -}}
- name: api
  image: {{ include "channel-operator.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - api
  env:
    {{- include "channel-operator.commonEnv" . | nindent 4 }}
    - name: API_ADDR
      value: "0.0.0.0:8080"
    # The namespaces whose Channels the API reads and writes (its Roles are there).
    - name: API_NAMESPACES
      value: {{ include "channel-operator.apiNamespaces" . | quote }}
    - name: CHANNELS_NAMESPACE
      value: {{ include "channel-operator.channelsNamespace" . | quote }}
    - name: SYNC_TIMEOUT_SECONDS
      value: {{ .Values.syncTimeoutSeconds | quote }}
    {{- with .Values.api.limits }}
    - name: API_HEADER_READ_TIMEOUT_SECONDS
      value: {{ .headerReadTimeoutSeconds | quote }}
    - name: API_BODY_READ_TIMEOUT_SECONDS
      value: {{ .bodyReadTimeoutSeconds | quote }}
    - name: API_IDLE_TIMEOUT_SECONDS
      value: {{ .idleTimeoutSeconds | quote }}
    - name: API_MAX_CONNECTIONS
      value: {{ .maxConnections | quote }}
    - name: API_MAX_CONNECTIONS_PER_PEER
      value: {{ .maxConnectionsPerPeer | quote }}
    - name: API_SLOW_REQUEST_SECONDS
      value: {{ .slowRequestSeconds | quote }}
    {{- end }}
    {{- with .Values.api.corsOrigins }}
    - name: CORS_ORIGINS
      value: {{ join "," . | quote }}
    {{- end }}
    {{- include "channel-operator.apiViberEnv" . | nindent 4 }}
    {{- with include "channel-operator.apiAuthEnv" . | trim }}
    {{- . | nindent 4 }}
    {{- end }}
  ports:
    - name: http
      containerPort: 8080
      protocol: TCP
  livenessProbe:
    httpGet:
      path: /healthz
      port: http
    {{- toYaml .Values.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: http
    {{- toYaml .Values.probes.readiness | nindent 4 }}
  resources:
    {{- toYaml .Values.resources.api | nindent 4 }}
  securityContext:
    {{- include "channel-operator.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/* Pod spec fields before `containers`. */}}
{{- define "channel-operator.podSecurity" -}}
automountServiceAccountToken: true
# No *_SERVICE_HOST/PORT variables from other Services: the containers read only what is set here.
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
# Longer than the controller's shutdown timeout (20 s by default), so that a stopping replica
# finishes its reconciles and releases the Lease before it is killed.
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- end }}

{{/* Pod spec fields after `containers`: the in-memory /tmp and the scheduling values. */}}
{{- define "channel-operator.podVolumesAndScheduling" -}}
volumes:
  # The root filesystem is read-only; /tmp is the one writable place, kept in memory (it counts
  # against the containers' memory limits).
  - name: tmp
    emptyDir:
      medium: Memory
      sizeLimit: 16Mi
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
