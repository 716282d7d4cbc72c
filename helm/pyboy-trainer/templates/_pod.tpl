{{/* A pod template of a point's Job or PyTorchJob: kube.pod_template (labels, annotations)
and kube.pod_manifest. Argument: dict root, name, sweep, point, replicas, labels. */}}
{{- define "pyboy-trainer.podTemplate" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $sweep := .sweep -}}
{{- $point := .point -}}
{{- $replicas := int .replicas -}}
{{- $allLabels := .labels -}}
{{- $kube := $point.kubernetes -}}
{{- $port := int $point.distributed.port -}}
{{- $pytorchjob := eq ($kube.distributed_backend | default "job") "pytorchjob" -}}
metadata:
  labels:
    {{- toYaml $allLabels | nindent 4 }}
  {{- with merge (deepCopy ($kube.pod_annotations | default dict)) ($kube.annotations | default dict) }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  restartPolicy: {{ ternary "OnFailure" "Never" $pytorchjob }}
  terminationGracePeriodSeconds: {{ int $kube.termination_grace_period_seconds }}
  automountServiceAccountToken: false
  # The trainer is not PID 1, so a SIGTERM before its handler exists is not dropped.
  shareProcessNamespace: true
  {{- if and (gt $replicas 1) (not $pytorchjob) }}
  subdomain: {{ $name }}
  {{- end }}
  {{- with $kube.service_account }}
  serviceAccountName: {{ . }}
  {{- end }}
  {{- with $kube.priority_class }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $kube.image_pull_secrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    fsGroup: 10001
    seccompProfile:
      type: RuntimeDefault
  {{- with $kube.node_selector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $kube.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $kube.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ ternary "pytorch" "trainer" $pytorchjob }}
      image: {{ $kube.image | quote }}
      imagePullPolicy: {{ $kube.image_pull_policy }}
      args: [run, /etc/trainer/spec.yaml]
      env:
        - name: TRAINER_JOB_NAME
          value: {{ $name | quote }}
        - name: TRAINER_SWEEP_ID
          value: {{ $sweep | quote }}
        - name: OMP_NUM_THREADS
          value: {{ max 1 (int (floor $point.resources.learner_cpu)) | toString | quote }}
        {{- if $point.mlflow.enabled }}
        - name: MLFLOW_TRACKING_URI
          value: {{ include "pyboy-trainer.trackingUri" $root | quote }}
        {{- end }}
        {{- if gt $replicas 1 }}
        - name: TRAINER_RDZV_ENDPOINT
          value: {{ ternary (printf "%s-master-0:%d" $name $port) (printf "%s-0.%s:%d" $name $name $port) $pytorchjob | quote }}
        - name: TRAINER_RDZV_ID
          value: {{ $name | quote }}
        {{- end }}
        - name: HOME
          value: /tmp
        - name: MPLCONFIGDIR
          value: /tmp/matplotlib
        {{- with $kube.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $kube.mlflow_secret }}
      envFrom:
        - secretRef:
            name: {{ . }}
      {{- end }}
      {{- if $pytorchjob }}
      # The training operator reads the rendezvous port from this port of the container `pytorch`.
      ports:
        - name: pytorchjob-port
          containerPort: {{ $port }}
          protocol: TCP
      {{- end }}
      resources:
        {{- include "pyboy-trainer.resources" $point | nindent 8 }}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        runAsNonRoot: true
        capabilities:
          drop: [ALL]
      volumeMounts:
        - name: spec
          mountPath: /etc/trainer
          readOnly: true
        - name: checkpoints
          mountPath: {{ $point.checkpoint.dir }}
        - name: dshm
          mountPath: /dev/shm
        - name: tmp
          mountPath: /tmp
        {{- with $kube.volume_mounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: spec
      configMap:
        name: {{ $name }}
    - name: checkpoints
      {{- if $kube.checkpoint_pvc }}
      persistentVolumeClaim:
        claimName: {{ $kube.checkpoint_pvc }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $kube.shm_size }}
    - name: tmp
      emptyDir: {}
    {{- with $kube.volumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* Kueue's suspension, the deadline and the clean-up delay: the same keys in a Job's spec and a
PyTorchJob's runPolicy (kube.run_limits). Argument: the point's kubernetes section. */}}
{{- define "pyboy-trainer.runLimits" -}}
{{- if .queue }}
# Kueue unsuspends it when its queue admits it.
suspend: true
{{- end }}
{{- if hasKey . "active_deadline_seconds" }}
activeDeadlineSeconds: {{ int .active_deadline_seconds }}
{{- end }}
{{- if hasKey . "ttl_seconds_after_finished" }}
ttlSecondsAfterFinished: {{ int .ttl_seconds_after_finished }}
{{- end }}
{{- end -}}
