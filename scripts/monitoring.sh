#!/usr/bin/env bash
# Writes k8s/components/monitoring/'s copies of the monitoring files, as the Prometheus Operator
# and Grafana's dashboard sidecar take them:
#   monitoring/headway-alerts.yaml    → prometheusrule.yaml (a PrometheusRule with the same groups)
#   monitoring/headway-dashboard.json → headway-dashboard.json (kustomize reads files inside a
#                                       component's folder only; it makes the ConfigMap)
# Run it after editing either file; tests/k8s.rs fails while the copies differ.
set -euo pipefail
cd "$(dirname "$0")/.."
out=k8s/components/monitoring
{
  cat <<'HEAD'
# Written by scripts/monitoring.sh from monitoring/headway-alerts.yaml: edit that file, then run
# the script. Needs the Prometheus Operator's PrometheusRule CRD (monitoring.coreos.com/v1);
# without the operator, give Prometheus monitoring/headway-alerts.yaml as a rule file instead.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: headway
  namespace: headway-demo
  labels:
    app.kubernetes.io/name: headway
    app.kubernetes.io/part-of: headway
spec:
HEAD
  sed -n '/^groups:/,$p' monitoring/headway-alerts.yaml | sed 's/^/  /'
} > "$out/prometheusrule.yaml"
cp monitoring/headway-dashboard.json "$out/headway-dashboard.json"
