{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "channel-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name: <release>-<chart>, or the release name when it contains the chart name. */}}
{{- define "channel-operator.fullname" -}}
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

{{- define "channel-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "channel-operator.labels" -}}
helm.sh/chart: {{ include "channel-operator.chart" . }}
{{ include "channel-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: channel-operator
{{- end }}

{{/* Labels that select the operator's pods. */}}
{{- define "channel-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "channel-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "channel-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "channel-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The API's ServiceAccount: its own with api.separate, else the pod's shared one. */}}
{{- define "channel-operator.apiServiceAccountName" -}}
{{- if .Values.api.separate }}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-api" (include "channel-operator.fullname" .)) .Values.api.serviceAccountName }}
{{- else }}
{{- default "default" .Values.api.serviceAccountName }}
{{- end }}
{{- else }}
{{- include "channel-operator.serviceAccountName" . }}
{{- end }}
{{- end }}

{{/* Labels that select the API's own pods (api.separate): a name of their own, so the two
Deployments' selectors never overlap. */}}
{{- define "channel-operator.apiSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-api" (include "channel-operator.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "channel-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Namespace whose Channels are reconciled; "" = all. */}}
{{- define "channel-operator.watchNamespace" -}}
{{- .Values.watchNamespace }}
{{- end }}

{{/* Namespace where the API creates Channels. Never the release namespace, which holds the
provider Secrets (see "channel-operator.validate"): by default <release namespace>-channels. */}}
{{- define "channel-operator.channelsNamespace" -}}
{{- .Values.channelsNamespace | default .Values.watchNamespace | default (printf "%s-channels" .Release.Namespace) }}
{{- end }}

{{/* Namespaces whose Channels the API reads and writes (API_NAMESPACES), comma-separated: the
channels namespace first, then api.namespaces. */}}
{{- define "channel-operator.apiNamespaces" -}}
{{- $ns := list (include "channel-operator.channelsNamespace" .) }}
{{- range .Values.api.namespaces }}{{ $ns = append $ns . }}{{ end }}
{{- $ns | uniq | join "," }}
{{- end }}

{{/* Namespaces besides the release namespace whose Channels may use the flags' provider accounts
(DEFAULT_PROVIDER_NAMESPACES): channelsNamespace, where the API creates its Channels, and
providerConfigs.defaultNamespaces. */}}
{{- define "channel-operator.defaultProviderNamespaces" -}}
{{- $ns := list (include "channel-operator.channelsNamespace" .) }}
{{- range .Values.providerConfigs.defaultNamespaces }}{{ $ns = append $ns . }}{{ end }}
{{- $ns | uniq | join "," }}
{{- end }}

{{/* Namespaces where the controller reads and writes Secrets (SECRET_NAMESPACES),
comma-separated, or "*" with secrets.clusterWide. Default: watchNamespace when set, else the
API's namespaces (where the API writes page-token Secrets) and, with the API separate, the release
namespace (the Secrets ClusterProviderConfigs name; read only, see rbac.yaml). */}}
{{- define "channel-operator.secretNamespaces" -}}
{{- if .Values.secrets.clusterWide }}
{{- "*" }}
{{- else if .Values.secrets.namespaces }}
{{- .Values.secrets.namespaces | uniq | join "," }}
{{- else if .Values.watchNamespace }}
{{- .Values.watchNamespace }}
{{- else if .Values.api.separate }}
{{- printf "%s,%s" (include "channel-operator.apiNamespaces" .) .Release.Namespace }}
{{- else }}
{{- include "channel-operator.apiNamespaces" . }}
{{- end }}
{{- end }}

{{/* The namespace of the operator's private state (STATE_NAMESPACE): claims, records of provider
effects, derived tokens. Only the controller has rights there. */}}
{{- define "channel-operator.stateNamespace" -}}
{{- .Values.stateNamespace | default (printf "%s-state" .Release.Namespace) }}
{{- end }}

{{- define "channel-operator.leaseName" -}}
{{- .Values.leaderElection.leaseName | default (include "channel-operator.fullname" .) }}
{{- end }}

{{- define "channel-operator.testSecretName" -}}
{{- printf "%s-test" (include "channel-operator.fullname" .) }}
{{- end }}

{{/*
An env var from a Secret key: the existing Secret named in values when set, else the test Secret
when it is created and holds the key, else nothing.
Arguments: (list $ "ENV_NAME" .Values.x.ySecret "testSecretKey")
*/}}
{{- define "channel-operator.secretEnv" -}}
{{- $root := index . 0 }}
{{- $env := index . 1 }}
{{- $ref := index . 2 }}
{{- $testKey := index . 3 }}
{{- if $ref.name }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name | quote }}
      key: {{ $ref.key | quote }}
{{- else if and $root.Values.testSecret.create (hasKey $root.Values.testSecret.stringData $testKey) }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "channel-operator.testSecretName" $root | quote }}
      key: {{ $testKey | quote }}
{{- end }}
{{- end }}

{{/* The API's Viber bot (channels.viber.connect reads its account): the API only. */}}
{{- define "channel-operator.apiViberEnv" -}}
- name: VIBER_API_URL
  value: {{ .Values.viber.apiUrl | quote }}
{{- include "channel-operator.secretEnv" (list . "VIBER_AUTH_TOKEN" .Values.viber.authTokenSecret "viberAuthToken") }}
{{- end }}

{{/* API_TOKENS and JWT_SECRET, each when configured. */}}
{{- define "channel-operator.apiAuthEnv" -}}
{{- include "channel-operator.secretEnv" (list . "API_TOKENS" .Values.api.tokensSecret "apiTokens") }}
{{- include "channel-operator.secretEnv" (list . "JWT_SECRET" .Values.api.jwtSecretSecret "jwtSecret") }}
{{- end }}

{{/* Whether the API checks bearer tokens (some token source is configured). */}}
{{- define "channel-operator.apiAuthConfigured" -}}
{{- $t := .Values.testSecret }}
{{- if or .Values.api.tokensSecret.name .Values.api.jwtSecretSecret.name (and $t.create (or (hasKey $t.stringData "apiTokens") (hasKey $t.stringData "jwtSecret"))) -}}
true
{{- end }}
{{- end }}

{{/* Environment both containers read: logging, the Graph API (explore), the provider timeout. */}}
{{- define "channel-operator.commonEnv" -}}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: FACEBOOK_GRAPH_URL
  value: {{ .Values.facebook.graphUrl | quote }}
- name: PROVIDER_TIMEOUT_SECONDS
  value: {{ .Values.providerTimeoutSeconds | quote }}
- name: CHATPLUGIN_NAMING
  value: {{ .Values.chatPluginNaming | quote }}
{{- end }}

{{/* Provider settings and credentials only the controller uses (the API's explore needs none). */}}
{{- define "channel-operator.controllerProviderEnv" -}}
- name: TWILIO_API_URL
  value: {{ .Values.twilio.apiUrl | quote }}
{{- with .Values.twilio.webhookUrl }}
- name: TWILIO_WEBHOOK_URL
  value: {{ . | quote }}
{{- end }}
- name: VIBER_API_URL
  value: {{ .Values.viber.apiUrl | quote }}
{{- with .Values.viber.webhookUrl }}
- name: VIBER_WEBHOOK_URL
  value: {{ . | quote }}
{{- end }}
{{- include "channel-operator.secretEnv" (list . "FACEBOOK_APP_ID" .Values.facebook.appIdSecret "facebookAppId") }}
{{- include "channel-operator.secretEnv" (list . "FACEBOOK_APP_SECRET" .Values.facebook.appSecretSecret "facebookAppSecret") }}
{{- include "channel-operator.secretEnv" (list . "TWILIO_ACCOUNT_SID" .Values.twilio.accountSidSecret "twilioAccountSid") }}
{{- include "channel-operator.secretEnv" (list . "TWILIO_AUTH_TOKEN" .Values.twilio.authTokenSecret "twilioAuthToken") }}
{{- end }}

{{/* The restricted container securityContext (Pod Security Standards "restricted"). */}}
{{- define "channel-operator.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Checks that span several values (the rest is in values.schema.json). */}}
{{- define "channel-operator.validate" -}}
{{- range .Values.api.namespaces }}
{{- if and $.Values.watchNamespace (ne . $.Values.watchNamespace) }}
{{- fail (printf "api.namespaces lists %q but watchNamespace is %q: the API would write Channels that no controller reconciles" . $.Values.watchNamespace) }}
{{- end }}
{{- end }}
{{- if and .Values.secrets.clusterWide .Values.secrets.namespaces }}
{{- fail "secrets.clusterWide grants every namespace: leave secrets.namespaces empty" }}
{{- end }}
{{- if and .Values.api.separate .Values.serviceAccount.create .Values.api.serviceAccountName (eq .Values.api.serviceAccountName (include "channel-operator.serviceAccountName" .)) }}
{{- fail "api.serviceAccountName must differ from the controller's ServiceAccount: api.separate gives the API an identity of its own" }}
{{- end }}
{{- if and .Values.watchNamespace .Values.channelsNamespace (ne .Values.watchNamespace .Values.channelsNamespace) }}
{{- fail (printf "channelsNamespace %q differs from watchNamespace %q: the API would create Channels that no controller reconciles; leave channelsNamespace empty or set it to watchNamespace" .Values.channelsNamespace .Values.watchNamespace) }}
{{- end }}
{{- /* The provider Secrets (Facebook app, Twilio, API tokens, JWT secret) live in the release
namespace, where the pods read them through secretKeyRef. No identity the API runs as may reach
them: the API's namespaces hold Secret rights of the API, and with the API as a sidecar the
controller's Secret namespaces are the API's identity's too. */}}
{{- range splitList "," (include "channel-operator.apiNamespaces" .) }}
{{- if eq . $.Release.Namespace }}
{{- fail (printf "the API's namespaces (channelsNamespace, watchNamespace, api.namespaces) include the release namespace %q, which holds the provider Secrets: the API's identity could read, patch and delete them; use another namespace for Channels" .) }}
{{- end }}
{{- end }}
{{- if not .Values.api.separate }}
{{- if .Values.secrets.clusterWide }}
{{- fail "secrets.clusterWide with the API as a sidecar gives the API's identity every Secret, the provider Secrets of the release namespace included: set api.separate: true" }}
{{- end }}
{{- range splitList "," (include "channel-operator.secretNamespaces" .) }}
{{- if eq . $.Release.Namespace }}
{{- fail (printf "secrets.namespaces includes the release namespace %q, which holds the provider Secrets, and the API as a sidecar shares the controller's identity: set api.separate: true or leave it out" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- /* The state namespace holds what no tenant and no API identity may read: it shares no
namespace with them, nor with the leader Lease (its Role may delete Leases by any name). */}}
{{- $state := include "channel-operator.stateNamespace" . }}
{{- $shared := list .Release.Namespace .Values.watchNamespace }}
{{- $shared = concat $shared (splitList "," (include "channel-operator.apiNamespaces" .)) (splitList "," (include "channel-operator.secretNamespaces" .)) }}
{{- if has $state $shared }}
{{- fail (printf "stateNamespace %q is also the release, watch, an API or a Secret namespace: the operator's private state (claims, records, derived tokens) needs a namespace of its own, where only the controller has rights" $state) }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicas > 1 requires leaderElection.enabled: true (two controllers would reconcile the same Channels)" }}
{{- end }}
{{- if and .Values.api.ingress.enabled (not (include "channel-operator.apiAuthConfigured" .)) (not .Values.api.allowUnauthenticated) }}
{{- fail "api.ingress.enabled exposes the API without authentication: set api.tokensSecret or api.jwtSecretSecret (or api.allowUnauthenticated: true)" }}
{{- end }}
{{- end }}

{{/* A RoleBinding (kind Role, in namespace) or ClusterRoleBinding (kind ClusterRole, namespace
"" or a RoleBinding of a ClusterRole when namespace is set) of one ServiceAccount subject,
preceded by a document separator. Arguments: dict kind name namespace subject labels. */}}
{{- define "channel-operator.binding" }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ ternary "RoleBinding" "ClusterRoleBinding" (ne .namespace "") }}
metadata:
  name: {{ .name }}
  {{- with .namespace }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- .labels | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ .kind }}
  name: {{ .name }}
subjects:
  {{- toYaml (list .subject) | nindent 2 }}
{{- end }}

{{/* Every channels.* endpoint of the API (the table in src/api/endpoints.rs, in its order; tests/chart.rs compares). */}}
{{- define "channel-operator.apiEndpoints" -}}
/channels.chat_plugin.disconnect /channels.chatplugin.connect /channels.chatplugin.disconnect /channels.facebook.connect /channels.facebook.disconnect /channels.facebook.explore /channels.google.connect /channels.google.disconnect /channels.info /channels.instagram.connect /channels.instagram.disconnect /channels.list /channels.twilio.sms.connect /channels.twilio.sms.disconnect /channels.twilio.whatsapp.connect /channels.twilio.whatsapp.disconnect /channels.update /channels.viber.connect /channels.viber.disconnect /channels.whatsapp.connect /channels.whatsapp.disconnect
{{- end }}
