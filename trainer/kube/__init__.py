"""Kubernetes: the spec as manifests (`manifests`, pure), the API client wrapper (`client`), and
the Helm chart's generated values (`chart`). Never imports torch, PyBoy or MLflow."""
