"""The Kubernetes API server's own rules for the values a spec puts into objects, so that
`trainer validate` refuses what a cluster would answer with 422 (or a pod that never starts),
before anything is sent.

Each check mirrors a function of k8s.io/apimachinery/pkg/util/validation (`IsDNS1123Label`,
`IsDNS1123Subdomain`, `IsQualifiedName`, `IsValidLabelValue`) or of
k8s.io/kubernetes/pkg/apis/core/validation (`ValidateAnnotations`, `ValidateTolerations`,
`ValidateVolumeMounts`), and returns the problem as text (None when the value is valid);
`trainer.spec.models` raises it. The regular expressions use no look-around, so the same patterns
go into the JSON Schema (`schema_*`) that Helm checks the chart's values against.

Imports nothing of ours.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

# ---- names (apimachinery validation.go) -------------------------------------------------------
LABEL_MAX = 63  # DNS-1123 label, label value, the name part of a qualified name
SUBDOMAIN_MAX = 253  # DNS-1123 subdomain, the prefix of a qualified name
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = rf"{_LABEL}(\.{_LABEL})*"
_NAME_PART = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
DNS1123_LABEL = re.compile(rf"^{_LABEL}$")
DNS1123_SUBDOMAIN = re.compile(rf"^{_SUBDOMAIN}$")
NAME_PART = re.compile(rf"^{_NAME_PART}$")
#: Annotations of one object, keys and values together (`TotalAnnotationSizeLimitB`).
ANNOTATIONS_MAX_BYTES = 256 * 1024
INT32_MAX = 2**31 - 1

_LABEL_HINT = "lowercase letters, digits and '-', starting and ending with a letter or digit"
_PART_HINT = "letters, digits, '-', '_' and '.', starting and ending with a letter or digit"


def dns1123_label_problem(value: str, max_length: int = LABEL_MAX) -> str | None:
    """Namespaces, and names that become label values (`IsDNS1123Label`)."""
    if len(value) > max_length or not DNS1123_LABEL.match(value):
        return f"must be a DNS-1123 label of at most {max_length} characters: {_LABEL_HINT}"
    return None


def dns1123_subdomain_problem(value: str) -> str | None:
    """Names of Secrets, ConfigMaps, PersistentVolumeClaims, ServiceAccounts
    (`IsDNS1123Subdomain`): DNS-1123 labels joined by '.'."""
    if len(value) > SUBDOMAIN_MAX or not DNS1123_SUBDOMAIN.match(value):
        return (
            f"must be a DNS-1123 subdomain of at most {SUBDOMAIN_MAX} characters: {_LABEL_HINT}, "
            "in parts joined by '.' (e.g. 'mlflow-credentials')"
        )
    return None


def qualified_name_problem(key: str) -> str | None:
    """Label, annotation, node-selector and toleration keys (`IsQualifiedName`): an optional
    DNS-subdomain prefix and '/', then a name of at most 63 characters."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or dns1123_subdomain_problem(prefix)):
        return (
            f"the prefix before '/' must be a DNS-1123 subdomain of at most {SUBDOMAIN_MAX} "
            f"characters ({_LABEL_HINT}, parts joined by '.'), e.g. 'example.com/team'"
        )
    if not name or len(name) > LABEL_MAX or not NAME_PART.match(name):
        return f"must be a name of at most {LABEL_MAX} characters ({_PART_HINT}), optionally with a 'prefix/'"
    return None


def label_value_problem(value: str) -> str | None:
    """Label and node-selector values (`IsValidLabelValue`): empty, or a name part."""
    if value and (len(value) > LABEL_MAX or not NAME_PART.match(value)):
        return f"must be empty or at most {LABEL_MAX} characters: {_PART_HINT}"
    return None


def labels_problem(labels: Mapping[str, str]) -> str | None:
    """Labels or a node selector (`ValidateLabels`): every key and value, the first problem."""
    for key, value in labels.items():
        problem = qualified_name_problem(key)
        if problem:
            return f"key {key!r}: {problem}"
        problem = label_value_problem(value)
        if problem:
            return f"value {value!r} of {key!r}: {problem}"
    return None


def annotations_problem(annotations: Mapping[str, str]) -> str | None:
    """`ValidateAnnotations`: keys are qualified names (checked lowercased, as the API server
    does), and keys and values together hold at most 256 KiB."""
    for key in annotations:
        problem = qualified_name_problem(key.lower())
        if problem:
            return f"key {key!r}: {problem}"
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        return (
            f"keys and values together must be at most {ANNOTATIONS_MAX_BYTES} bytes (got {size})"
        )
    return None


#: `IsEnvVarName` before Kubernetes 1.34 relaxed it (so valid on every version we support).
ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def env_var_name_problem(name: str) -> str | None:
    if not ENV_VAR_NAME.match(name):
        return (
            "must be an environment variable name: letters, digits, '_', '-' and '.', not "
            "starting with a digit (e.g. 'MY_VAR')"
        )
    return None


# ---- resource quantities (apimachinery resource.Quantity) ------------------------------------
#: A non-negative Kubernetes quantity without exponent, e.g. 256Mi, 1Gi, 500M, 0.5, 250m (a
#: subset of resource.ParseQuantity's grammar, which also takes signs and exponents).
QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")
_QUANTITY_FACTORS = {
    None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def parse_quantity(value: str) -> float:
    """Kubernetes quantity string → number (bytes for memory, cores for CPU)."""
    match = QUANTITY.match(str(value))
    if not match:
        raise ValueError(f"not a Kubernetes quantity (examples: 256Mi, 1Gi, 500m): {value!r}")
    return float(match.group(1)) * _QUANTITY_FACTORS[match.group(3)]


# ---- tolerations (core/validation ValidateTolerations) -----------------------------------------
def toleration_problem(
    key: str | None, operator: str, value: str | None, effect: str | None, seconds: int | None
) -> str | None:
    """The rules between a toleration's fields; the operator and effect names themselves are
    Literal types of the model."""
    if key and (problem := qualified_name_problem(key)):
        return f"key {key!r}: {problem}"
    if not key and operator != "Exists":
        return "operator must be 'Exists' when key is empty (which means: tolerate every taint)"
    if seconds is not None and effect != "NoExecute":
        return "tolerationSeconds is only allowed with effect 'NoExecute'"
    if operator == "Exists" and value:
        return "value must be empty when operator is 'Exists'"
    if operator == "Equal" and (problem := label_value_problem(value or "")):
        return f"value {value!r}: {problem}"
    return None


# ---- mount paths (core/validation ValidateVolumeMounts, and the pod's own mounts) --------------
#: The trainer pod's own volume mounts (`trainer.kube.manifests` mounts them; checkpoint.dir is
#: the only other one): a checkpoint volume there would be a duplicate mountPath, the API
#: server's 422, or hide one of them.
SPEC_DIR = "/etc/trainer"
TMP_DIR = "/tmp"
SHM_DIR = "/dev/shm"
#: Where `trainer launch`/`render` mount a ROM and save state shipped from this machine.
GAME_DIR = "/var/lib/trainer/game"
POD_MOUNTS = {
    SPEC_DIR: "the spec's ConfigMap (read-only)",
    TMP_DIR: "the pod's writable /tmp",
    SHM_DIR: "the in-memory /dev/shm",
    GAME_DIR: "the shipped ROM and save state (read-only)",
}
#: Read-only or owned by the container runtime: nothing can be mounted at or under them.
_NOTHING_UNDER = (SPEC_DIR, GAME_DIR, "/proc", "/sys", "/dev")
#: The namespace `k8s/` installs into, and the default wherever no context names one.
DEFAULT_NAMESPACE = "pyboy-trainer"
#: Where a pod mounts the checkpoint volume when `checkpoint.dir` is relative.
CHECKPOINT_DIR = "/var/lib/trainer/checkpoints"
#: The pod's own volume names, and the variables the trainer sets in its container.
POD_VOLUMES = ("spec", "checkpoints", "dshm", "tmp", "game")
POD_ENV = ("OMP_NUM_THREADS", "MLFLOW_TRACKING_URI", "HOME", "MPLCONFIGDIR")


def _holders() -> list[str]:
    """Each pod mount and every folder above it, without the leading '/' ('' is the root)."""
    found = {""}
    for mount in POD_MOUNTS:
        parts = mount.strip("/").split("/")
        found.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(found)


def mount_path_problem(path: str) -> str | None:
    """An absolute `checkpoint.dir` the checkpoint volume can be mounted at: no '..' element
    (`validatePathNoBacksteps`), not one of the pod's own mounts or a folder holding one (a
    duplicate or hidden mountPath), not under a read-only or runtime-owned folder. Under /tmp is
    fine: container runtimes mount parents before children (containerd and CRI-O sort mounts by
    depth). Relative paths are a local run's: pods replace them."""
    if not path.startswith("/"):
        return None
    if ".." in path.split("/"):
        return "must not contain a '..' element (the API server refuses it in a mountPath)"
    normal = posixpath.normpath(path).strip("/")
    if normal in _holders():
        mount = next(m for m in POD_MOUNTS if f"{m}/".startswith(f"/{normal}/".replace("//", "/")))
        return (
            f"{'is' if mount.strip('/') == normal else 'holds'} {mount}, {POD_MOUNTS[mount]}, "
            "which the pod mounts itself (a duplicate or hidden mountPath); use a folder of its "
            "own, e.g. /var/lib/trainer/checkpoints"
        )
    for folder in _NOTHING_UNDER:
        if f"/{normal}/".startswith(f"{folder}/"):
            return (
                f"is under {folder}, where nothing can be mounted in a pod (read-only or owned "
                "by the container runtime); use e.g. /var/lib/trainer/checkpoints"
            )
    return None


# ---- image references (distribution/reference's grammar, as containerd parses a pod's image) --
_DOMAIN_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][-A-Za-z0-9]*[A-Za-z0-9])"
# A first component is a registry only with a '.', a port or as localhost (splitDockerDomain);
# otherwise it belongs to the Docker Hub repository path, which is lowercase.
_REGISTRY = (
    rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})+(?::[0-9]+)?|{_DOMAIN_PART}:[0-9]+|localhost"
    r"|\[[0-9A-Fa-f:]+\](?::[0-9]+)?)"
)
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"^(?:{_REGISTRY}/)?{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,})?$"
)


def image_reference_problem(image: str) -> str | None:
    """Why the kubelet would refuse `image` (ErrInvalidImageName: the pod never starts)."""
    if IMAGE_REFERENCE.match(image) and len(image.split("@")[0].rsplit(":", 1)[0]) <= 255:
        return None
    return (
        "must be an image reference like registry.example.com/team/pyboy-trainer:1.0 or "
        "name@sha256:<digest>: a lowercase repository path, an optional registry (with a '.' "
        "or a port, or localhost), tag and digest; the kubelet refuses anything else"
    )


# ---- the same rules for JSON Schema (the chart's values.schema.json) ---------------------------
def _bounded(part_max: int) -> str:
    # The name part with its length in the pattern: 1 + up to (max - 2) + 1 characters.
    return rf"([A-Za-z0-9][-A-Za-z0-9_.]{{0,{part_max - 2}}})?[A-Za-z0-9]"


def schema_dns1123_label(max_length: int = LABEL_MAX) -> dict[str, Any]:
    return {"pattern": rf"^[a-z0-9]([-a-z0-9]{{0,{max_length - 2}}}[a-z0-9])?$"}


def schema_dns1123_subdomain() -> dict[str, Any]:
    return {"pattern": rf"^{_SUBDOMAIN}$", "maxLength": SUBDOMAIN_MAX}


def schema_qualified_name() -> dict[str, Any]:
    # The prefix's own 253-character limit is left to trainer validate (no look-around in RE2).
    return {
        "pattern": rf"^({_SUBDOMAIN}/)?{_bounded(LABEL_MAX)}$",
        "maxLength": SUBDOMAIN_MAX + 1 + LABEL_MAX,
    }


def schema_labels() -> dict[str, Any]:
    """A labels (or node selector) map: keys and values."""
    return {
        "propertyNames": schema_qualified_name(),
        "additionalProperties": {"type": "string", "pattern": rf"^({_bounded(LABEL_MAX)})?$"},
    }


def schema_annotations() -> dict[str, Any]:
    # Keys only; the API server checks them lowercased, hence (?i).
    key = schema_qualified_name()
    return {"propertyNames": {**key, "pattern": "(?i)" + key["pattern"]}}


def schema_mount_path() -> dict[str, Any]:
    """Not an absolute path that `mount_path_problem` refuses (repeated '/' aside)."""
    holders = "|".join(re.escape(h) for h in _holders() if h)
    under = "|".join(re.escape(f.strip("/")) for f in _NOTHING_UNDER)
    return {
        "not": {
            "anyOf": [
                {"pattern": r"^/(.*/)?\.\.(/|$)"},
                {"pattern": rf"^/+({holders})?/*$"},
                {"pattern": rf"^/+({under})(/.*)?$"},
            ]
        }
    }


def schema_toleration_rules() -> list[dict[str, Any]]:
    """`toleration_problem`'s rules between fields, as if/then (key syntax: the field's own)."""
    empty = {"enum": [None, ""]}
    return [
        {
            "if": {"properties": {"key": empty}},
            "then": {"required": ["operator"], "properties": {"operator": {"const": "Exists"}}},
        },
        {
            "if": {"required": ["operator"], "properties": {"operator": {"const": "Exists"}}},
            "then": {"properties": {"value": empty}},
        },
        {
            "if": {
                "required": ["tolerationSeconds"],
                "properties": {"tolerationSeconds": {"type": "integer"}},
            },
            "then": {"required": ["effect"], "properties": {"effect": {"const": "NoExecute"}}},
        },
    ]
