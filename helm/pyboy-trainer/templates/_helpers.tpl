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

{{/* The sweep's points, as a JSON list of [num_envs, replicas]: every env count (counts) with
every replica count (.Values.replicas, else spec.sweep.replicas, else spec.distributed.replicas),
replicas outermost, only those whose product is spec.sweep.total_envs when set
(sweep.grid). */}}
{{- define "pyboy-trainer.points" -}}
{{- $spec := .Values.spec -}}
{{- $counts := include "pyboy-trainer.counts" . | fromJsonArray -}}
{{- $replicas := list $spec.distributed.replicas -}}
{{- if .Values.replicas -}}
{{- $replicas = .Values.replicas -}}
{{- else if $spec.sweep.replicas -}}
{{- $replicas = $spec.sweep.replicas -}}
{{- end -}}
{{- $total := $spec.sweep.total_envs -}}
{{- $points := list -}}
{{- range $group := $replicas -}}
{{- range $count := $counts -}}
{{- if or (kindIs "invalid" $total) (eq (mul (int $count) (int $group)) (int $total)) -}}
{{- $points = append $points (list (int $count) (int $group)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $points -}}
{{- fail (printf "sweep.total_envs: no pair of num_envs %s and replicas %s has replicas × num_envs = %d; change one of them" (toJson $counts) (toJson $replicas) (int $total)) -}}
{{- end -}}
{{- toJson $points -}}
{{- end -}}

{{/* The ConfigMap's spec.yaml for one point: the spec a pod runs (kube.pod_spec) written
as indented JSON with sorted keys and no nulls (kube.spec_document). Argument: (list $ count
replicas). */}}
{{- define "pyboy-trainer.specDocument" -}}
{{- $root := index . 0 -}}
{{- $count := int (index . 1) -}}
{{- $replicas := int (index . 2) -}}
{{- $spec := deepCopy $root.Values.spec -}}
{{- range $path := include "pyboy-trainer.numberPaths" $root | fromJsonArray -}}
{{- $_ := include "pyboy-trainer.toNumber" (list $spec $path) -}}
{{- end -}}
{{- if mod (int $spec.ppo.batch_size) $replicas -}}
{{- fail (printf "ppo.batch_size must be a multiple of distributed.replicas (got %d and %d): it is the global minibatch, split evenly over the replicas" (int $spec.ppo.batch_size) $replicas) -}}
{{- end -}}
{{- $rollout := mul $replicas $count (int $spec.ppo.rollout_steps) -}}
{{- if gt (int $spec.ppo.batch_size) $rollout -}}
{{- fail (printf "ppo.batch_size must not exceed replicas × num_envs × ppo.rollout_steps (%d × %d × %d = %d; got %d)" $replicas $count (int $spec.ppo.rollout_steps) $rollout (int $spec.ppo.batch_size)) -}}
{{- end -}}
{{- $perWorker := $spec.env.envs_per_worker | default "auto" -}}
{{- if and (not (kindIs "string" $perWorker)) (mod $count (int $perWorker)) -}}
{{- fail (printf "env.envs_per_worker: %d does not divide num_envs %d (every worker process steps the same number of environments); pick a divisor of each, or 'auto'" (int $perWorker) $count) -}}
{{- end -}}
{{- $_ := set $spec.env "num_envs" $count -}}
{{- $_ := set $spec.distributed "replicas" $replicas -}}
{{- $_ := set $spec "sweep" (dict "num_envs" (list) "replicas" (list)) -}}
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

{{/* e<count>[x<replicas>]: the point in Job names and run ids (spec.identity.replicas_suffix).
Argument: (list count replicas). */}}
{{- define "pyboy-trainer.pointLabel" -}}
{{- printf "e%d" (int (index . 0)) -}}
{{- if gt (int (index . 1)) 1 }}{{ printf "x%d" (int (index . 1)) }}{{ end -}}
{{- end -}}

{{/* <name>-e<count>[x<replicas>]-<sha256(spec document)[:8]> (spec.job_name); its pods' names
(spec.identity.pod_suffix: <job>-<index>, or <job>-master-0 / -worker-<i> for a PyTorchJob) must
fit 63 characters, and the Services named after it must start with a letter. Argument: (list $
count replicas). */}}
{{- define "pyboy-trainer.jobName" -}}
{{- $root := index . 0 -}}
{{- $replicas := int (index . 2) -}}
{{- $point := include "pyboy-trainer.pointLabel" (rest .) -}}
{{- $name := printf "%s-%s-%s" $root.Values.spec.name $point (include "pyboy-trainer.specDocument" . | sha256sum | trunc 8) -}}
{{- $pytorchjob := eq ($root.Values.spec.kubernetes | default dict).distributed_backend "pytorchjob" -}}
{{- $suffix := ternary (printf "-%d" (sub $replicas 1)) "" (gt $replicas 1) -}}
{{- if $pytorchjob -}}
{{- $suffix = ternary (printf "-worker-%d" (sub $replicas 2)) "-master-0" (gt $replicas 1) -}}
{{- end -}}
{{- if gt (len (printf "%s%s" $name $suffix)) 63 -}}
{{- fail (printf "name: Job name %q is longer than 63 characters%s; shorten spec.name" $name (ternary (printf " with its pods' suffix (%s)" $suffix) "" (ne $suffix ""))) -}}
{{- end -}}
{{- if and $pytorchjob (not (regexMatch "^[a-z]" $name)) -}}
{{- fail (printf "name: %q must start with a letter for a PyTorchJob (kubernetes.distributed_backend): the training operator names a Service after it for each pod, and Service names are DNS-1035 labels" $root.Values.spec.name) -}}
{{- end -}}
{{- if and (gt $replicas 1) (not (regexMatch "^[a-z]" $name)) -}}
{{- fail (printf "name: %q must start with a letter for more than one replica (the Job's headless Service takes its name, and Service names are DNS-1035 labels)" $root.Values.spec.name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* <name>-e<count>[x<replicas>]-r<sha256 of the training settings[:8]> (spec.run_id): the
spec document without the step budget and the Kubernetes, tracking, resources and checkpoint
fields, plus the replicas when more than one (spec.identity.training_settings). Argument:
(list $ count replicas). */}}
{{- define "pyboy-trainer.runId" -}}
{{- $root := index . 0 -}}
{{- $replicas := int (index . 2) -}}
{{- $doc := include "pyboy-trainer.specDocument" . | fromJson -}}
{{- $env := omit $doc.env "backend" "envs_per_worker" "worker_timeout_s" "max_worker_restarts" "restart_window_s" -}}
{{- $ppo := omit $doc.ppo "total_steps" "device" "async_rollout" -}}
{{- $settings := dict "seed" $doc.seed "game" $doc.game "env" $env "ppo" $ppo -}}
{{- if gt $replicas 1 -}}
{{- $_ := set $settings "replicas" $replicas -}}
{{- end -}}
{{- printf "%s-%s-r%s" $root.Values.spec.name (include "pyboy-trainer.pointLabel" (rest .)) ($settings | toPrettyJson | sha256sum | trunc 8) -}}
{{- end -}}

{{/* <name>-<sha256 of the sorted Job names joined by ","[:8]> (kube.sweep_id). */}}
{{- define "pyboy-trainer.sweepId" -}}
{{- $root := . -}}
{{- $names := list -}}
{{- range $point := include "pyboy-trainer.points" $root | fromJsonArray -}}
{{- $names = append $names (include "pyboy-trainer.jobName" (prepend $point $root)) -}}
{{- end -}}
{{- printf "%s-%s" $root.Values.spec.name (sortAlpha $names | join "," | sha256sum | trunc 8) -}}
{{- end -}}

{{/* Standard labels of a trainer object (kube.labels). Argument: (list $ count replicas
sweepId). */}}
{{- define "pyboy-trainer.labels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: pyboy-trainer
app.kubernetes.io/instance: {{ $root.Values.spec.name }}
app.kubernetes.io/component: trainer
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
pyboy-trainer/sweep-id: {{ index . 3 }}
pyboy-trainer/num-envs: {{ index . 1 | int | toString | quote }}
pyboy-trainer/replicas: {{ index . 2 | int | toString | quote }}
pyboy-trainer/run-id: {{ include "pyboy-trainer.runId" (list $root (index . 1) (index . 2)) }}
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
