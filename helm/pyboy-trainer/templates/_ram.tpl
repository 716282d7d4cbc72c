{{/*
game.ram written the way `trainer render` writes it (trainer.spec.game_ram): every item with its
defaults filled in (pyboy-trainer.ramDefaults, generated from the models), addresses as
"0xABCD", numbers given as hex strings as integers, bare start buttons as {press, frames}. The
ConfigMap's spec.yaml, and so the Job name, is then the same as `trainer render`'s.
*/}}

{{/* An integer from a number or a string: "0xC0A0", "$C0A0" (hex) or "49312" (decimal). */}}
{{- define "pyboy-trainer.int" -}}
{{- if kindIs "string" . -}}
{{- $text := trim . -}}
{{- if hasPrefix "$" $text -}}{{- $text = printf "0x%s" (trimPrefix "$" $text) -}}{{- end -}}
{{- if or (hasPrefix "0x" $text) (hasPrefix "0X" $text) -}}{{- int64 $text -}}{{- else -}}{{- atoi $text -}}{{- end -}}
{{- else -}}
{{- int64 . -}}
{{- end -}}
{{- end -}}

{{/* A copy of a map with the keys it lacks taken from defaults (Sprig's merge would also
replace zeros, such as scale: 0). Argument: (list map defaults). */}}
{{- define "pyboy-trainer.withDefaults" -}}
{{- $out := deepCopy (index . 0) -}}
{{- range $key, $value := index . 1 -}}
{{- if not (hasKey $out $key) -}}{{- $_ := set $out $key $value -}}{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "pyboy-trainer.address" -}}
{{- printf "0x%04X" (include "pyboy-trainer.int" . | int64) -}}
{{- end -}}

{{/* One item (a reward term, an end, a condition): defaults, then its numbers normalized.
Argument: (list item defaults). Returns JSON. */}}
{{- define "pyboy-trainer.ramItem" -}}
{{- $item := include "pyboy-trainer.withDefaults" . | fromJson -}}
{{- if and (hasKey $item "address") (not (kindIs "invalid" $item.address)) -}}
{{- $_ := set $item "address" (include "pyboy-trainer.address" $item.address) -}}
{{- end -}}
{{- if $item.addresses -}}
{{- $addresses := list -}}
{{- range $item.addresses -}}{{- $addresses = append $addresses (include "pyboy-trainer.address" .) -}}{{- end -}}
{{- $_ := set $item "addresses" $addresses -}}
{{- end -}}
{{- range $key := list "value" "mask" -}}
{{- if and (hasKey $item $key) (not (kindIs "invalid" (index $item $key))) -}}
{{- $_ := set $item $key (include "pyboy-trainer.int" (get $item $key) | int64) -}}
{{- end -}}
{{- end -}}
{{- $defaults := include "pyboy-trainer.ramDefaults" . | fromJson -}}
{{- if hasKey $item "when" -}}
{{- $when := list -}}
{{- range $item.when -}}{{- $when = append $when (include "pyboy-trainer.ramItem" (list . $defaults.condition) | fromJson) -}}{{- end -}}
{{- $_ := set $item "when" $when -}}
{{- end -}}
{{- toJson $item -}}
{{- end -}}

{{/* spec.game.ram normalized. Argument: the ram map. Returns JSON. */}}
{{- define "pyboy-trainer.ram" -}}
{{- $defaults := include "pyboy-trainer.ramDefaults" . | fromJson -}}
{{- $ram := deepCopy . -}}
{{- $rewards := list -}}
{{- range $ram.rewards -}}{{- $rewards = append $rewards (include "pyboy-trainer.ramItem" (list . $defaults.reward) | fromJson) -}}{{- end -}}
{{- $_ := set $ram "rewards" $rewards -}}
{{- $done := list -}}
{{- range $ram.done -}}{{- $done = append $done (include "pyboy-trainer.ramItem" (list . $defaults.done) | fromJson) -}}{{- end -}}
{{- $_ := set $ram "done" $done -}}
{{- if $ram.start -}}
{{- $start := include "pyboy-trainer.withDefaults" (list $ram.start $defaults.start) | fromJson -}}
{{- $buttons := list -}}
{{- range $start.buttons -}}
{{- $step := ternary (dict "press" .) . (kindIs "string" .) -}}
{{- $buttons = append $buttons (include "pyboy-trainer.withDefaults" (list $step $defaults.step) | fromJson) -}}
{{- end -}}
{{- $until := list -}}
{{- range $start.until -}}{{- $until = append $until (include "pyboy-trainer.ramItem" (list . $defaults.condition) | fromJson) -}}{{- end -}}
{{- $_ := set $start "buttons" $buttons -}}
{{- $_ := set $start "until" $until -}}
{{- $_ := set $ram "start" $start -}}
{{- end -}}
{{- toJson $ram -}}
{{- end -}}
