{{/*
Helpers that mirror trainer/kube/manifests.py. tests/test_helm_chart.py renders this chart with real helm
and compares every object with `trainer render` field by field: change both together.
*/}}

{{/* The default trainer image: ghcr.io/pyboy-trainer/trainer:<appVersion> (trainer.kube.manifests.DEFAULT_IMAGE). */}}
{{- define "pyboy-trainer.image" -}}
{{- .Values.spec.kubernetes.image | default (printf "ghcr.io/pyboy-trainer/trainer:%s" .Chart.AppVersion) -}}
{{- end -}}

{{/* A map (or list) without null values, recursively, as JSON (kube._drop_none). */}}
{{- define "pyboy-trainer.dropNulls" -}}
{{- $out := dict -}}
{{- range $key, $value := . -}}
{{- if kindIs "map" $value -}}
{{- $_ := set $out $key (include "pyboy-trainer.dropNulls" $value | fromJson) -}}
{{- else if kindIs "slice" $value -}}
{{- $items := list -}}
{{- range $value -}}
{{- if kindIs "map" . -}}
{{- $items = append $items (include "pyboy-trainer.dropNulls" . | fromJson) -}}
{{- else -}}
{{- $items = append $items . -}}
{{- end -}}
{{- end -}}
{{- $_ := set $out $key $items -}}
{{- else if not (kindIs "invalid" $value) -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Env counts, as a JSON list: .Values.envs, else spec.sweep.num_envs, else spec.env.num_envs
(kube.env_counts). */}}
{{- define "pyboy-trainer.counts" -}}
{{- $spec := .Values.spec -}}
{{- if .Values.envs -}}
{{- toJson .Values.envs -}}
{{- else if $spec.sweep.num_envs -}}
{{- toJson $spec.sweep.num_envs -}}
{{- else if kindIs "string" $spec.env.num_envs -}}
{{- fail "spec.env.num_envs: 'auto' cannot size a pod (its CPU request depends on it); set a number, spec.sweep.num_envs, or envs" -}}
{{- else -}}
{{- list $spec.env.num_envs | toJson -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap's spec.yaml for one env count: the spec a pod runs (kube.pod_spec) written
as indented JSON with sorted keys and no nulls (kube.spec_document). Argument: (list $ count). */}}
{{- define "pyboy-trainer.specDocument" -}}
{{- $root := index . 0 -}}
{{- $count := int (index . 1) -}}
{{- $spec := deepCopy $root.Values.spec -}}
{{- range $path := include "pyboy-trainer.numberPaths" $root | fromJsonArray -}}
{{- $_ := include "pyboy-trainer.toNumber" (list $spec $path) -}}
{{- end -}}
{{- if gt (int $spec.ppo.batch_size) (mul $count (int $spec.ppo.rollout_steps)) -}}
{{- fail (printf "ppo.batch_size must not exceed num_envs × ppo.rollout_steps (%d × %d = %d; got %d)" $count (int $spec.ppo.rollout_steps) (mul $count (int $spec.ppo.rollout_steps)) (int $spec.ppo.batch_size)) -}}
{{- end -}}
{{- $_ := set $spec.env "num_envs" $count -}}
{{- $_ := set $spec "sweep" (dict "num_envs" (list)) -}}
{{- $_ := set $spec.kubernetes "image" (include "pyboy-trainer.image" $root) -}}
{{- $_ := set $spec.kubernetes "namespace" $root.Release.Namespace -}}
{{- if not (hasPrefix "/" (toString $spec.checkpoint.dir)) -}}
{{- $_ := set $spec.checkpoint "dir" "/var/lib/trainer/checkpoints" -}}
{{- end -}}
{{- $tolerations := list -}}
{{- range $spec.kubernetes.tolerations -}}
{{- $tolerations = append $tolerations (merge (deepCopy .) (dict "operator" "Equal")) -}}
{{- end -}}
{{- $_ := set $spec.kubernetes "tolerations" $tolerations -}}
{{- if $spec.game.ram -}}
{{- $_ := set $spec.game "ram" (include "pyboy-trainer.ram" $spec.game.ram | fromJson) -}}
{{- end -}}
{{- include "pyboy-trainer.dropNulls" $spec | fromJson | toPrettyJson -}}
{{- end -}}

{{/* Turn the numeric strings at a path of the spec into numbers, in place (--set keeps floats
as strings: trainer.kube.chart). Path segments: keys, "*" (every key), "[]" (every item).
Argument: (list node path). */}}
{{- define "pyboy-trainer.toNumber" -}}
{{- $node := index . 0 -}}
{{- $path := index . 1 -}}
{{- if and (kindIs "map" $node) $path -}}
{{- $key := first $path -}}
{{- $rest := rest $path -}}
{{- $keys := list -}}
{{- if eq $key "*" -}}{{- $keys = keys $node -}}{{- else if hasKey $node $key -}}{{- $keys = list $key -}}{{- end -}}
{{- range $k := $keys -}}
{{- $value := get $node $k -}}
{{- if and $rest (eq (first $rest) "[]") -}}
{{- if kindIs "slice" $value -}}
{{- range $item := $value -}}{{- $_ := include "pyboy-trainer.toNumber" (list $item (rest $rest)) -}}{{- end -}}
{{- end -}}
{{- else if $rest -}}
{{- $_ := include "pyboy-trainer.toNumber" (list $value $rest) -}}
{{- else if kindIs "string" $value -}}
{{- $_ := set $node $k (float64 $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* <name>-e<count>-<sha256(spec document)[:8]> (kube.job_name). Argument: (list $ count). */}}
{{- define "pyboy-trainer.jobName" -}}
{{- $root := index . 0 -}}
{{- $count := int (index . 1) -}}
{{- $name := printf "%s-e%d-%s" $root.Values.spec.name $count (include "pyboy-trainer.specDocument" . | sha256sum | trunc 8) -}}
{{- if gt (len $name) 63 -}}
{{- fail (printf "name: Job name %q is longer than 63 characters; shorten spec.name" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* <name>-e<count>-r<sha256 of the training settings[:8]> (spec.run_id): the spec document
without the step budget and the Kubernetes, tracking, resources and checkpoint fields
(spec.identity.training_settings). Argument: (list $ count). */}}
{{- define "pyboy-trainer.runId" -}}
{{- $root := index . 0 -}}
{{- $count := int (index . 1) -}}
{{- $doc := include "pyboy-trainer.specDocument" . | fromJson -}}
{{- $env := omit $doc.env "backend" "envs_per_worker" "worker_timeout_s" "max_worker_restarts" "restart_window_s" -}}
{{- $ppo := omit $doc.ppo "total_steps" "device" "async_rollout" -}}
{{- $settings := dict "seed" $doc.seed "game" $doc.game "env" $env "ppo" $ppo -}}
{{- printf "%s-e%d-r%s" $root.Values.spec.name $count ($settings | toPrettyJson | sha256sum | trunc 8) -}}
{{- end -}}

{{/* <name>-<sha256 of the sorted Job names joined by ","[:8]> (kube.sweep_id). */}}
{{- define "pyboy-trainer.sweepId" -}}
{{- $root := . -}}
{{- $names := list -}}
{{- range $count := include "pyboy-trainer.counts" $root | fromJsonArray -}}
{{- $names = append $names (include "pyboy-trainer.jobName" (list $root $count)) -}}
{{- end -}}
{{- printf "%s-%s" $root.Values.spec.name (sortAlpha $names | join "," | sha256sum | trunc 8) -}}
{{- end -}}

{{/* Standard labels of a trainer object (kube.labels). Argument: (list $ count sweepId). */}}
{{- define "pyboy-trainer.labels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: pyboy-trainer
app.kubernetes.io/instance: {{ $root.Values.spec.name }}
app.kubernetes.io/component: trainer
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
pyboy-trainer/sweep-id: {{ index . 2 }}
pyboy-trainer/num-envs: {{ index . 1 | int | toString | quote }}
pyboy-trainer/run-id: {{ include "pyboy-trainer.runId" (list $root (index . 1)) }}
{{- end -}}

{{/* Labels of the chart's MLflow server. */}}
{{- define "pyboy-trainer.mlflowLabels" -}}
app.kubernetes.io/name: pyboy-trainer
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: mlflow
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "pyboy-trainer.postgresLabels" -}}
app.kubernetes.io/name: pyboy-trainer
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: mlflow-postgres
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "pyboy-trainer.mlflowName" -}}
{{- printf "%s-mlflow" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* MLFLOW_TRACKING_URI of the Jobs (kube.run_env): the spec's, else the chart's server,
else mlflow.defaultTrackingUri. */}}
{{- define "pyboy-trainer.trackingUri" -}}
{{- if .Values.spec.mlflow.tracking_uri -}}
{{- .Values.spec.mlflow.tracking_uri -}}
{{- else if .Values.mlflow.server.enabled -}}
{{- printf "http://%s.%s.svc:%d" (include "pyboy-trainer.mlflowName" .) .Release.Namespace (int .Values.mlflow.server.port) -}}
{{- else -}}
{{- .Values.mlflow.defaultTrackingUri -}}
{{- end -}}
{{- end -}}

{{/* Bytes of a Kubernetes quantity (spec.parse_quantity), as a float. */}}
{{- define "pyboy-trainer.bytes" -}}
{{- $q := toString . -}}
{{- $number := regexFind "^([0-9]+(\\.[0-9]+)?|\\.[0-9]+)" $q -}}
{{- $suffix := trimPrefix $number $q -}}
{{- $factors := dict "" 1 "m" 0.001 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000 "E" 1000000000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 -}}
{{- mulf (float64 $number) (get $factors $suffix) -}}
{{- end -}}

{{/* Requests = limits of one pod (kube.pod_resources). Argument: the spec document as a map. */}}
{{- define "pyboy-trainer.resources" -}}
{{- $res := .resources -}}
{{- $count := int .env.num_envs -}}
{{- $millis := addf (mulf (addf (mulf $count $res.cpu_per_env) $res.learner_cpu) 1000) 0.5 | floor | int64 -}}
{{- $cpu := ternary (printf "%d" (div $millis 1000)) (printf "%dm" $millis) (eq (mod $millis 1000) (int64 0)) -}}
{{- $bytes := addf (mulf $count (include "pyboy-trainer.bytes" $res.memory_per_env | float64)) (include "pyboy-trainer.bytes" $res.learner_memory | float64) -}}
{{- $value := addf $bytes 0.5 | floor | int64 -}}
{{- $memory := printf "%d" $value -}}
{{- $found := false -}}
{{- range $unit := list (list "Ti" 1099511627776) (list "T" 1000000000000) (list "Gi" 1073741824) (list "G" 1000000000) (list "Mi" 1048576) (list "M" 1000000) (list "Ki" 1024) (list "k" 1000) -}}
{{- $factor := index $unit 1 | int64 -}}
{{- if and (not $found) (ge $value $factor) (eq (mod $value $factor) (int64 0)) -}}
{{- $memory = printf "%d%s" (div $value $factor) (index $unit 0) -}}
{{- $found = true -}}
{{- end -}}
{{- end -}}
requests:
  cpu: {{ $cpu | quote }}
  memory: {{ $memory | quote }}
limits:
  cpu: {{ $cpu | quote }}
  memory: {{ $memory | quote }}
  {{- if gt (int $res.gpu) 0 }}
  nvidia.com/gpu: {{ $res.gpu | int | toString | quote }}
  {{- end }}
{{- end -}}
