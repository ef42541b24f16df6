#!/usr/bin/env bash
# Render the Kubernetes manifests (deploy/kubernetes: the base and the SASL/TLS variant) and
# validate them against the Kubernetes API's schemas, offline: kubernetes-validate (PyPI) bundles
# the schemas of every Kubernetes release. The PodMonitor (a Prometheus Operator CRD) has no
# schema there and is reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

kustomize() {
  if command -v kubectl >/dev/null; then
    kubectl kustomize "$1"
  elif command -v kustomize >/dev/null; then
    command kustomize build "$1"
  else
    echo "validate-kubernetes: needs kubectl (or kustomize) on PATH: https://kubernetes.io/docs/tasks/tools/" >&2
    exit 1
  fi
}

venv=target/kubernetes-validate
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv" || { echo "validate-kubernetes: needs python3 with venv (apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install --quiet kubernetes-validate==1.37.0
fi

out=target/kubernetes-rendered
mkdir -p "$out"
for variant in base sasl-tls; do
  kustomize "deploy/kubernetes/$variant" > "$out/$variant.yaml"
  # 1.31: the oldest Kubernetes release still supported by the major clouds at the time of writing.
  "$venv/bin/kubernetes-validate" --strict --quiet -k 1.31.0 "$out/$variant.yaml"
  echo "validate-kubernetes: $variant renders and validates ($(grep -c '^kind:' "$out/$variant.yaml") resources)"
done
