# syntax=docker/dockerfile:1
# The trainer image: `trainer run SPEC` in a Kubernetes Job, `trainer launch` from CI, and the
# MLflow server of k8s/mlflow.yaml (MLflow and psycopg2 are installed). CPU PyTorch by default:
#   docker build -t ghcr.io/pyboy-trainer/trainer:0.1.0 .
#   docker build --build-arg TORCH_VARIANT=cu128 -t ghcr.io/pyboy-trainer/trainer:0.1.0-cu128 .
# The built-in game's ROM ships inside the package; your own ROMs go in a volume or a derived
# image (docs/kubernetes.md).

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
# cpu, or a CUDA wheel index of PyTorch (cu126, cu128, ...: one that has TORCH_VERSION).
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG PSYCOPG2_VERSION=2.9.11
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first, in their own layers, so editing the source rebuilds only the last one.
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"
WORKDIR /src
COPY pyproject.toml ./
# An empty package with the real metadata installs every dependency (torch is already there).
RUN mkdir trainer && touch trainer/__init__.py README.md \
    && pip install --no-cache-dir . "psycopg2-binary==${PSYCOPG2_VERSION}" \
    && pip uninstall --yes pyboy-trainer \
    && rm -rf trainer README.md
COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import trainer.games, trainer.kube.manifests, trainer.launcher"

FROM python:${PYTHON_VERSION}-slim AS runtime
LABEL org.opencontainers.image.title="pyboy-trainer" \
      org.opencontainers.image.description="PPO on Game Boy games through PyBoy, as Kubernetes batch Jobs" \
      org.opencontainers.image.licenses="MIT"
# A named user for the numeric uid (getpass and friends look it up), without a login shell.
RUN groupadd --gid 10001 trainer \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin trainer
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /tmp
USER 10001:10001
# Exec form: SIGTERM reaches the trainer itself (it checkpoints, then exits 143); the Job's pod
# shares its PID namespace, so the pause container is PID 1 and the trainer is not.
ENTRYPOINT ["trainer"]
CMD ["--help"]
