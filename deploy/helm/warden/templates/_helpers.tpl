{{- define "warden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "warden.fullname" -}}
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

{{- define "warden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "warden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "warden.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "warden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "warden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "warden.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when more than one pod may run at once (replicaCount > 1 or the HPA): they must share the trail. */}}
{{- define "warden.multiReplica" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled -}}true{{- end -}}
{{- end -}}

{{- define "warden.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.gpu.enabled -}}{{- $tag = printf "%s%s" $tag .Values.gpu.imageTagSuffix -}}{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}

{{/* The TCP port of an http(s) URL: explicit, else 80 / 443 by scheme. */}}
{{- define "warden.urlPort" -}}
{{- $u := urlParse . -}}
{{- $hostport := splitList ":" $u.host -}}
{{- if gt (len $hostport) 1 -}}{{- last $hostport -}}{{- else if eq $u.scheme "https" -}}443{{- else -}}80{{- end -}}
{{- end -}}

{{/* Environment variable that carries a named token mounted as env (auth.tokens[].mountAs: env). */}}
{{- define "warden.tokenEnv" -}}
{{- printf "WARDEN_TOKEN_%s" (regexReplaceAll "[^A-Z0-9]" (upper .) "_") -}}
{{- end -}}

{{/* The Secret and key the ServiceMonitor scrapes with: the metricsToken shorthand, else the first named metrics token. */}}
{{- define "warden.metricsSecret" -}}
{{- if .Values.auth.metricsToken.existingSecret -}}
{{- dict "name" .Values.auth.metricsToken.existingSecret "key" .Values.auth.metricsToken.key | toJson -}}
{{- else -}}
{{- $found := dict -}}
{{- range .Values.auth.tokens -}}
{{- if and (has "metrics" .roles) (not $found.name) -}}{{- $_ := set $found "name" .existingSecret -}}{{- $_ := set $found "key" .key -}}{{- end -}}
{{- end -}}
{{- $found | toJson -}}
{{- end -}}
{{- end -}}

{{/* Refuses combinations that cannot work, with a sentence naming the values to set. */}}
{{- define "warden.validate" -}}
{{- if include "warden.multiReplica" . -}}
{{- if not .Values.postgresql.enabled -}}
{{- fail "More than one replica (replicaCount > 1 or autoscaling.enabled) needs the audit trail in PostgreSQL: set postgresql.enabled, postgresql.host and postgresql.passwordSecret (SQLite cannot be shared between pods)." -}}
{{- end -}}
{{- if not .Values.security.uidHashKey.existingSecret -}}
{{- fail "More than one replica needs one UID-hash key for all: set security.uidHashKey.existingSecret (a Secret with a key of at least 32 characters)." -}}
{{- end -}}
{{- if not .Values.persistence.quarantine.enabled -}}
{{- fail "More than one replica needs a shared quarantine volume: set persistence.quarantine.enabled (ReadWriteMany)." -}}
{{- end -}}
{{- if and (eq .Values.persistence.quarantine.accessMode "ReadWriteOnce") (not .Values.persistence.quarantine.existingClaim) -}}
{{- fail "More than one replica shares the quarantine: persistence.quarantine.accessMode must be ReadWriteMany (or leave it empty)." -}}
{{- end -}}
{{- end -}}
{{- if and .Values.postgresql.enabled (not .Values.postgresql.host) -}}
{{- fail "postgresql.enabled needs postgresql.host." -}}
{{- end -}}
{{- if and .Values.config.alerts .Values.config.alerts.webhook .Values.config.alerts.webhook.url (not .Values.webhookSecret.existingSecret) -}}
{{- fail "config.alerts.webhook.url needs webhookSecret.existingSecret: receivers check each event's HMAC signature." -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (include "warden.hasMetricsRole" .) (not (fromJson (include "warden.metricsSecret" .)).name) -}}
{{- fail "metrics.serviceMonitor.enabled: the metrics token is not in a Secret the ServiceMonitor can read." -}}
{{- end -}}
{{- end -}}

{{- define "warden.hasMetricsRole" -}}
{{- if .Values.auth.metricsToken.existingSecret -}}true{{- end -}}
{{- range .Values.auth.tokens -}}{{- if has "metrics" .roles -}}true{{- end -}}{{- end -}}
{{- end -}}

{{/* Whether any file must be mounted from a Secret (tokens, keys, TLS): the projected "secrets" volume. */}}
{{- define "warden.hasSecretFiles" -}}
{{- if or .Values.security.uidHashKey.existingSecret .Values.webhookSecret.existingSecret .Values.tls.secretName -}}true{{- end -}}
{{- range .Values.auth.tokens -}}{{- if ne (default "file" .mountAs) "env" -}}true{{- end -}}{{- end -}}
{{- end -}}

{{- define "warden.stateClaim" -}}
{{- if and .Values.persistence.state.enabled (not (include "warden.multiReplica" .)) -}}
{{- .Values.persistence.state.existingClaim | default (printf "%s-state" (include "warden.fullname" .)) -}}
{{- end -}}
{{- end -}}

{{- define "warden.quarantineClaim" -}}
{{- if .Values.persistence.quarantine.enabled -}}
{{- .Values.persistence.quarantine.existingClaim | default (printf "%s-quarantine" (include "warden.fullname" .)) -}}
{{- end -}}
{{- end -}}

{{- define "warden.quarantineAccessMode" -}}
{{- .Values.persistence.quarantine.accessMode | default (ternary "ReadWriteMany" "ReadWriteOnce" (eq (include "warden.multiReplica" .) "true")) -}}
{{- end -}}

{{/*
The configuration file: values.config plus the keys the chart manages — the pod's paths (state, spool, quarantine,
Secret files), the audit store's URL, the named tokens, the GPU provider.
*/}}
{{- define "warden.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $server := default dict $cfg.server -}}
{{- $_ := set $server "stateDir" "/var/lib/warden/state" -}}
{{- if .Values.tls.secretName -}}
{{- $_ := set $server "tls" (dict "cert" "/etc/warden/secrets/tls/tls.crt" "key" "/etc/warden/secrets/tls/tls.key") -}}
{{- end -}}
{{- $_ := set $cfg "server" $server -}}
{{- $stow := default dict $cfg.stow -}}
{{- $_ := set $stow "spoolDir" "/var/lib/warden/spool" -}}
{{- $_ := set $cfg "stow" $stow -}}
{{- $quarantine := default dict $cfg.quarantine -}}
{{- $_ := set $quarantine "dir" "/var/lib/warden/quarantine" -}}
{{- $_ := set $cfg "quarantine" $quarantine -}}
{{- if .Values.postgresql.enabled -}}
{{- $pg := .Values.postgresql -}}
{{- $audit := default dict $cfg.audit -}}
{{- $url := printf "postgres://%s@%s:%d/%s" $pg.user $pg.host (int $pg.port) $pg.database -}}
{{- if $pg.sslmode -}}{{- $url = printf "%s?sslmode=%s" $url $pg.sslmode -}}{{- end -}}
{{- $_ := set $audit "url" $url -}}
{{- $_ := set $cfg "audit" $audit -}}
{{- end -}}
{{- if .Values.gpu.enabled -}}
{{- $model := default dict $cfg.model -}}
{{- $_ := set $model "provider" .Values.gpu.provider -}}
{{- $_ := set $cfg "model" $model -}}
{{- end -}}
{{- if .Values.security.uidHashKey.existingSecret -}}
{{- $_ := set $cfg "security" (dict "uidHashKeyFile" "/etc/warden/secrets/uid-hash-key") -}}
{{- end -}}
{{- if .Values.webhookSecret.existingSecret -}}
{{- $alerts := default dict $cfg.alerts -}}
{{- $webhook := default dict $alerts.webhook -}}
{{- $_ := set $webhook "secretFile" "/etc/warden/secrets/webhook-secret" -}}
{{- $_ := set $alerts "webhook" $webhook -}}
{{- $_ := set $cfg "alerts" $alerts -}}
{{- end -}}
{{- if .Values.auth.tokens -}}
{{- $tokens := list -}}
{{- range .Values.auth.tokens -}}
{{- $t := dict "name" .name "roles" .roles -}}
{{- if eq (default "file" .mountAs) "env" -}}
{{- $_ := set $t "tokenEnv" (include "warden.tokenEnv" .name) -}}
{{- else -}}
{{- $_ := set $t "tokenFile" (printf "/etc/warden/secrets/tokens/%s" .name) -}}
{{- end -}}
{{- $tokens = append $tokens $t -}}
{{- end -}}
{{- $_ := set $cfg "auth" (dict "tokens" $tokens) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
