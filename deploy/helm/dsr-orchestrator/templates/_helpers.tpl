{{/* Names and labels. */}}
{{- define "dsr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dsr.fullname" -}}
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

{{- define "dsr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dsr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dsr.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 }}
{{ include "dsr.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "dsr.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "dsr.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dsr.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "dsr.registerConfigMap" -}}
{{- default (printf "%s-register" (include "dsr.fullname" .)) .Values.register.existingConfigMap -}}
{{- end -}}

{{- define "dsr.connectorsConfigMap" -}}
{{- default (printf "%s-connectors" (include "dsr.fullname" .)) .Values.declarativeConnectors.existingConfigMap -}}
{{- end -}}

{{- define "dsr.hasDeclarativeConnectors" -}}
{{- if or .Values.declarativeConnectors.existingConfigMap .Values.declarativeConnectors.files -}}true{{- end -}}
{{- end -}}

{{/* Where files are mounted in every container. */}}
{{- define "dsr.paths" -}}
register: /etc/dsr/register
connectors: /etc/dsr/connectors
keys: /etc/dsr/keys
publisherKeys: /etc/dsr/publisher-keys
publisherKey: /etc/dsr/publisher-key
busKey: /etc/dsr/bus-key
kafkaCa: /etc/dsr/kafka/ca
kafkaClient: /etc/dsr/kafka/client
data: /var/lib/dsr
tmp: /tmp
{{- end -}}

{{/* "true" when the Kafka connection lacks TLS or client authentication (SASL or a client
certificate): what allowInsecureKafka must acknowledge. */}}
{{- define "dsr.insecureKafka" -}}
{{- $k := .Values.kafka -}}
{{- if not (and $k.tls.enabled (or $k.sasl.enabled $k.tls.clientCertSecret.name)) -}}true{{- end -}}
{{- end -}}

{{/* SSL, SASL_SSL, SASL_PLAINTEXT or PLAINTEXT from kafka.tls and kafka.sasl. */}}
{{- define "dsr.securityProtocol" -}}
{{- $k := .Values.kafka -}}
{{- if and $k.tls.enabled $k.sasl.enabled -}}SASL_SSL
{{- else if $k.tls.enabled -}}SSL
{{- else if $k.sasl.enabled -}}SASL_PLAINTEXT
{{- else -}}PLAINTEXT
{{- end -}}
{{- end -}}

{{/*
Kafka connection for one component: the DSR_KAFKA_* variables of schemas/kafka.py.
Call with (dict "root" $ "component" "orchestrator").
*/}}
{{- define "dsr.kafkaEnv" -}}
{{- $root := .root -}}
{{- $k := $root.Values.kafka -}}
{{- $paths := include "dsr.paths" $root | fromYaml -}}
- name: DSR_KAFKA_BOOTSTRAP
  value: {{ $k.bootstrapServers | quote }}
- name: DSR_KAFKA_CLIENT_ID
  value: {{ printf "%s-%s" $k.clientId .component | quote }}
- name: DSR_KAFKA_PARTITIONS
  value: {{ $root.Values.topics.partitions | quote }}
- name: DSR_KAFKA_REPLICATION_FACTOR
  value: {{ $root.Values.topics.replicationFactor | quote }}
- name: DSR_KAFKA_SECURITY_PROTOCOL
  value: {{ include "dsr.securityProtocol" $root }}
{{- if $k.sasl.enabled }}
{{- $user := get (default dict $k.sasl.users) .component | default (pick $k.sasl "username" "passwordSecret") }}
- name: DSR_KAFKA_SASL_MECHANISM
  value: {{ $k.sasl.mechanism | quote }}
- name: DSR_KAFKA_SASL_USERNAME
  value: {{ $user.username | quote }}
- name: DSR_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $user.passwordSecret.name }}
      key: {{ $user.passwordSecret.key }}
{{- end }}
{{- if $root.Values.allowInsecureKafka }}
- name: DSR_ALLOW_INSECURE_KAFKA
  value: "true"
{{- end }}
{{- if and $k.tls.enabled $k.tls.caSecret.name }}
- name: DSR_KAFKA_SSL_CAFILE
  value: {{ printf "%s/%s" $paths.kafkaCa $k.tls.caSecret.key | quote }}
{{- end }}
{{- if and $k.tls.enabled $k.tls.clientCertSecret.name }}
- name: DSR_KAFKA_SSL_CERTFILE
  value: {{ printf "%s/%s" $paths.kafkaClient $k.tls.clientCertSecret.certKey | quote }}
- name: DSR_KAFKA_SSL_KEYFILE
  value: {{ printf "%s/%s" $paths.kafkaClient $k.tls.clientCertSecret.keyKey | quote }}
{{- end }}
{{- with $k.consumer }}
{{- if .sessionTimeoutMs }}
- name: DSR_KAFKA_SESSION_TIMEOUT_MS
  value: {{ .sessionTimeoutMs | quote }}
{{- end }}
{{- if .heartbeatIntervalMs }}
- name: DSR_KAFKA_HEARTBEAT_INTERVAL_MS
  value: {{ .heartbeatIntervalMs | quote }}
{{- end }}
{{- if .rebalanceTimeoutMs }}
- name: DSR_KAFKA_REBALANCE_TIMEOUT_MS
  value: {{ .rebalanceTimeoutMs | quote }}
{{- end }}
{{- if .fetchMaxWaitMs }}
- name: DSR_KAFKA_FETCH_MAX_WAIT_MS
  value: {{ .fetchMaxWaitMs | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Application settings shared by every process (orchestrator/runtime/config.py). */}}
{{- define "dsr.appEnv" -}}
{{- $paths := include "dsr.paths" . | fromYaml -}}
{{- $c := .Values.config -}}
- name: DSR_APP_ID
  value: {{ .Values.appId | quote }}
- name: DSR_REGISTER
  value: {{ printf "%s/%s" $paths.register .Values.register.key | quote }}
- name: DSR_DATA_DIR
  value: {{ $paths.data | quote }}
- name: DSR_DEADLINE_POLICY
  value: {{ $c.deadlinePolicy | quote }}
- name: DSR_DEADLINE_TIMEZONE
  value: {{ $c.deadlineTimezone | quote }}
- name: DSR_DUE_SOON_DAYS
  value: {{ $c.dueSoonDays | quote }}
- name: DSR_MAX_ATTEMPTS
  value: {{ $c.maxAttempts | quote }}
- name: DSR_RETRY_DELAY_SECONDS
  value: {{ $c.retryDelaySeconds | quote }}
- name: DSR_TICK_INTERVAL_SECONDS
  value: {{ $c.tickIntervalSeconds | quote }}
{{- if .Values.secrets.busKey.existingSecret }}
- name: DSR_BUS_KEY_FILE
  value: {{ printf "%s/%s" $paths.busKey .Values.secrets.busKey.key | quote }}
{{- end }}
- name: DSR_VERIFICATION_POLICY
  value: {{ $c.verificationPolicy | quote }}
- name: DSR_APPROVAL_REQUIRED
  value: {{ $c.approvalRequired | quote }}
- name: DSR_REMINDER_AFTER_DAYS
  value: {{ $c.reminderAfterDays | quote }}
- name: DSR_WAITING_WARNING_DAYS
  value: {{ $c.waitingWarningDays | quote }}
- name: DSR_DELIVERY_LINK_HOURS
  value: {{ $c.deliveryLinkHours | quote }}
{{- with $c.publicUrl }}
- name: DSR_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- include "dsr.smtpEnv" . }}
{{- with .Values.dashboard.userHeader }}
- name: DSR_DASHBOARD_USER_HEADER
  value: {{ . | quote }}
{{- end }}
{{- with .Values.dashboard.officer }}
- name: DSR_DASHBOARD_OFFICER
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* E-mail delivery of answers (orchestrator/artifacts/delivery.py); nothing without a host. */}}
{{- define "dsr.smtpEnv" -}}
{{- $s := .Values.config.smtp -}}
{{- if $s.host }}
- name: DSR_SMTP_HOST
  value: {{ $s.host | quote }}
- name: DSR_SMTP_PORT
  value: {{ $s.port | quote }}
- name: DSR_SMTP_FROM
  value: {{ required "config.smtp.from (the From address) is required when config.smtp.host is set" $s.from | quote }}
- name: DSR_SMTP_STARTTLS
  value: {{ $s.starttls | quote }}
{{- with $s.username }}
- name: DSR_SMTP_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- if $s.passwordSecret.name }}
- name: DSR_SMTP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $s.passwordSecret.name }}
      key: {{ $s.passwordSecret.key }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Credentials for ${VAR} references in the register, as environment variables: a list of
Secret names. */}}
{{- define "dsr.credentialsEnvFrom" -}}
{{- range . }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end -}}

{{/*
A component's own publisher key (it signs what it publishes). Call with (dict "root" $ "id"
PUBLISHER_ID "key" {existingSecret, key}); nothing without a Secret.
*/}}
{{- define "dsr.publisherKeyEnv" -}}
{{- if .key.existingSecret -}}
{{- $paths := include "dsr.paths" .root | fromYaml -}}
- name: DSR_PUBLISHER_ID
  value: {{ .id | quote }}
- name: DSR_PUBLISHER_KEY_FILE
  value: {{ printf "%s/%s" $paths.publisherKey .key.key | quote }}
{{- end -}}
{{- end -}}

{{- define "dsr.publisherKeyMount" -}}
{{- if .key.existingSecret -}}
{{- $paths := include "dsr.paths" .root | fromYaml -}}
- name: publisher-key
  mountPath: {{ $paths.publisherKey }}
  readOnly: true
{{- end -}}
{{- end -}}

{{- define "dsr.publisherKeyVolume" -}}
{{- if .key.existingSecret -}}
- name: publisher-key
  secret:
    secretName: {{ .key.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .key.key }}
        path: {{ .key.key }}
{{- end -}}
{{- end -}}

{{/* The publisher keys file (who may publish what): for the components that verify. */}}
{{- define "dsr.publisherKeysEnv" -}}
{{- if .Values.secrets.publisherKeys.existingSecret -}}
{{- $paths := include "dsr.paths" . | fromYaml -}}
- name: DSR_PUBLISHER_KEYS
  value: {{ printf "%s/%s" $paths.publisherKeys .Values.secrets.publisherKeys.key | quote }}
{{- end -}}
{{- end -}}

{{- define "dsr.publisherKeysMount" -}}
{{- if .Values.secrets.publisherKeys.existingSecret -}}
{{- $paths := include "dsr.paths" . | fromYaml -}}
- name: publisher-keys
  mountPath: {{ $paths.publisherKeys }}
  readOnly: true
{{- end -}}
{{- end -}}

{{- define "dsr.publisherKeysVolume" -}}
{{- if .Values.secrets.publisherKeys.existingSecret -}}
- name: publisher-keys
  secret:
    secretName: {{ .Values.secrets.publisherKeys.existingSecret }}
    defaultMode: 0440
{{- end -}}
{{- end -}}

{{/*
Mounts of every application container. Call with (dict "root" $ "readOnlyData" BOOL): the
dashboard reads the data volume but writes only its download codes.
*/}}
{{- define "dsr.commonMounts" -}}
{{- $root := .root -}}
{{- with $root -}}
{{- $paths := include "dsr.paths" . | fromYaml -}}
- name: tmp
  mountPath: {{ $paths.tmp }}
- name: data
  mountPath: {{ $paths.data }}
{{- if $.readOnlyData }}
  readOnly: true
# The one-time codes of e-mailed download links: the dashboard counts attempts in them.
- name: data
  mountPath: {{ printf "%s/delivery-codes" $paths.data }}
  subPath: delivery-codes
{{- end }}
- name: register
  mountPath: {{ $paths.register }}
  readOnly: true
{{- if .Values.secrets.busKey.existingSecret }}
- name: bus-key
  mountPath: {{ $paths.busKey }}
  readOnly: true
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret.name }}
- name: kafka-ca
  mountPath: {{ $paths.kafkaCa }}
  readOnly: true
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.clientCertSecret.name }}
- name: kafka-client
  mountPath: {{ $paths.kafkaClient }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes behind dsr.commonMounts. */}}
{{- define "dsr.commonVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
- name: data
{{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-data" (include "dsr.fullname" .)) .Values.persistence.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: register
  configMap:
    name: {{ include "dsr.registerConfigMap" . }}
{{- if .Values.secrets.busKey.existingSecret }}
- name: bus-key
  secret:
    secretName: {{ .Values.secrets.busKey.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret.name }}
    defaultMode: 0440
    items:
      - key: {{ .Values.kafka.tls.caSecret.key }}
        path: {{ .Values.kafka.tls.caSecret.key }}
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.clientCertSecret.name }}
- name: kafka-client
  secret:
    secretName: {{ .Values.kafka.tls.clientCertSecret.name }}
    defaultMode: 0440
    items:
      - key: {{ .Values.kafka.tls.clientCertSecret.certKey }}
        path: {{ .Values.kafka.tls.clientCertSecret.certKey }}
      - key: {{ .Values.kafka.tls.clientCertSecret.keyKey }}
        path: {{ .Values.kafka.tls.clientCertSecret.keyKey }}
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every pod. */}}
{{- define "dsr.podSpecCommon" -}}
serviceAccountName: {{ include "dsr.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Probes of a worker: liveness on /healthz, readiness on /readyz, a patient startup. */}}
{{- define "dsr.workerProbes" -}}
{{- $p := .Values.health.probes -}}
startupProbe:
  httpGet:
    path: /healthz
    port: health
  periodSeconds: {{ $p.startup.periodSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
  timeoutSeconds: {{ $p.timeoutSeconds }}
livenessProbe:
  httpGet:
    path: /healthz
    port: health
  periodSeconds: {{ $p.liveness.periodSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
  timeoutSeconds: {{ $p.timeoutSeconds }}
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  periodSeconds: {{ $p.readiness.periodSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
  timeoutSeconds: {{ $p.timeoutSeconds }}
{{- end -}}

{{/*
A HorizontalPodAutoscaler for a worker Deployment. Call with (dict "root" $ "name" NAME
"component" COMPONENT "group" CONSUMER_GROUP "autoscaling" SETTINGS).
*/}}
{{- define "dsr.hpa" -}}
{{- $a := .autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ .name }}
  labels:
    {{- include "dsr.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .name }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
{{- if eq $a.metric "lag" }}
    # Consumer lag of the worker's consumer group, e.g. from kafka-exporter through
    # prometheus-adapter (external metrics API).
    - type: External
      external:
        metric:
          name: {{ $a.lag.metricName }}
          selector:
            matchLabels:
              {{ $a.lag.groupLabel }}: {{ .group | quote }}
        target:
          type: AverageValue
          averageValue: {{ $a.lag.targetAverageValue | quote }}
{{- else }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
{{- end }}
{{- end -}}

{{/*
A connector group's autoscaling: connectors.autoscaling overlaid with the group's own. Set
explicitly because mergeOverwrite never lets a group's `enabled: false` win.
Call with (dict "root" $ "group" GROUP); returns YAML.
*/}}
{{- define "dsr.groupAutoscaling" -}}
{{- $own := default dict .group.autoscaling -}}
{{- $merged := mergeOverwrite (deepCopy .root.Values.connectors.autoscaling) (deepCopy $own) -}}
{{- if hasKey $own "enabled" -}}
{{- $_ := set $merged "enabled" $own.enabled -}}
{{- end -}}
{{- toYaml $merged -}}
{{- end -}}
