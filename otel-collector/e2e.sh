#!/usr/bin/env bash
# End to end with a real OpenTelemetry Collector: build a minimal collector
# with the Collector Builder (cached in _build/), validate the shipped
# configuration, then run it (config.yaml + config-cloudwatch.yaml, with
# e2e-config.yaml moving everything to loopback and the AWS exporters to
# fake_aws.py), point the agent's OTLP push at it and check that:
#   - the documented series arrive on the collector's Prometheus exporter
#     with the agent's names and values;
#   - the awsemf exporter sends EMF events in the EFS/HealthAgent namespace
#     with the mount_path and k8s.node.name dimensions;
#   - successful checks reach CloudWatch without an empty reason dimension;
#   - the check spans reach the collector (debug log) and the awsxray
#     exporter (segments named efs.mount.check, with the efs.mount.path
#     annotation under that dotted name).
# The agent pushes with the OpenTelemetry default protocol, http/protobuf.
# Loopback only; every process is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The collector's modules come from the module proxy and are verified
# against the checksum database as usual. A machine that cannot reach
# sum.golang.org for them sets that in its own environment, e.g.
#   GONOSUMDB='github.com/open-telemetry/*' make collector-e2e
builder_version=v0.139.0
col=_build/otelcol-efs
if [ ! -x "$col" ] || [ builder-config.yaml -nt "$col" ]; then
  b=$(command -v builder || echo "$(go env GOPATH)/bin/builder")
  if ! "$b" version 2>/dev/null | grep -q "${builder_version#v}"; then
    go install "go.opentelemetry.io/collector/cmd/builder@$builder_version"
    b="$(go env GOPATH)/bin/builder"
  fi
  start=$(date +%s)
  "$b" --config builder-config.yaml
  echo "collector build took $(( $(date +%s) - start ))s"
fi

export AWS_REGION=us-east-1
"$col" validate --config config.yaml
echo "config.yaml is valid"
"$col" validate --config config.yaml --config config-cloudwatch.yaml
echo "config.yaml + config-cloudwatch.yaml are valid"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export OTLP_GRPC_PORT=$(free_port) OTLP_HTTP_PORT=$(free_port) PROM_PORT=$(free_port) \
  HEALTH_CHECK_PORT=$(free_port) FAKE_AWS_PORT=$(free_port)
export AWS_ACCESS_KEY_ID=AKIAE2ETEST AWS_SECRET_ACCESS_KEY=e2e-not-a-secret
aws_log="$work/aws.jsonl"
touch "$aws_log"
python3 fake_aws.py "$FAKE_AWS_PORT" "$aws_log" &
pids+=($!)
"$col" --config config.yaml --config config-cloudwatch.yaml --config e2e-config.yaml > "$work/collector.log" 2>&1 &
pids+=($!)

(cd "$root" && go build -o "$work/efs-health-agent" ./cmd/efs-health-agent)
mkdir -p "$work/mount"
agent_port=$(free_port)
OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$OTLP_HTTP_PORT \
OTEL_METRIC_EXPORT_INTERVAL=1000 OTEL_BSP_SCHEDULE_DELAY=200 \
OTEL_RESOURCE_ATTRIBUTES=k8s.node.name=e2e-node NODE_NAME=e2e-node \
  "$work/efs-health-agent" --bind-address 127.0.0.1 --port "$agent_port" \
  --mount "$work/mount" --check-interval 1s --check-timeout 500ms > "$work/agent.log" 2>&1 &
pids+=($!)

want_prom=(
  "^efs_mount_health_status\{.*instance=\"e2e-node\".*mount_path=\"$work/mount\".*\} 1$"
  "^efs_mount_response_time_ms\{.*mount_path=\"$work/mount\""
  "^efs_mount_error_total\{.*mount_path=\"$work/mount\".*\} 0$"
  "^efs_csi_driver_healthy\{.*instance=\"e2e-node\".*\} 1$"
  "^efs_mount_operation_duration_seconds_bucket\{.*operation=\"write\""
  "^target_info\{.*k8s_node_name=\"e2e-node\""
)
ok_prom() {
  local body
  body=$(curl -fsS "http://127.0.0.1:$PROM_PORT/metrics" 2>/dev/null) || return 1
  for w in "${want_prom[@]}"; do grep -Eq -- "$w" <<<"$body" || return 1; done
}
# One EMF event per metric declaration group: the per-mount one carries the
# health status with both dimensions.
ok_emf() {
  python3 - "$aws_log" "$work/mount" <<'PY'
import json, sys
log, mount = sys.argv[1], sys.argv[2]
for line in open(log):
    req = json.loads(line)
    if not req["target"].endswith("PutLogEvents"):
        continue
    for ev in json.loads(req["body"]).get("logEvents", []):
        m = json.loads(ev["message"])
        cw = m.get("_aws", {}).get("CloudWatchMetrics", [])
        if (m.get("mount_path") == mount and m.get("efs_mount_health_status") == 1
                and m.get("k8s.node.name") == "e2e-node"
                and any(d["Namespace"] == "EFS/HealthAgent"
                        and ["k8s.node.name", "mount_path"] in d["Dimensions"]
                        and any(x["Name"] == "efs_mount_health_status" for x in d["Metrics"])
                        for d in cw)):
            sys.exit(0)
sys.exit(1)
PY
}
# Successful checks are counted in CloudWatch by outcome, and no EMF event
# carries an empty dimension value (CloudWatch rejects those).
ok_no_empty_dims() {
  python3 - "$aws_log" <<'PY'
import json, sys
success = False
for line in open(sys.argv[1]):
    req = json.loads(line)
    if not req["target"].endswith("PutLogEvents"):
        continue
    for ev in json.loads(req["body"]).get("logEvents", []):
        m = json.loads(ev["message"])
        for d in m.get("_aws", {}).get("CloudWatchMetrics", []):
            for dims in d["Dimensions"]:
                for k in dims:
                    if not str(m.get(k, "")).strip():
                        print(f"empty dimension {k} in {m}", file=sys.stderr)
                        sys.exit(2)
        if m.get("outcome") == "success" and "efs_mount_checks_total" in m:
            success = True
sys.exit(0 if success else 1)
PY
}
# X-Ray segments of the checks, with the mount path as the indexed
# annotation efs.mount.path (the name otel-collector/README.md filters on).
ok_spans() {
  grep -q 'Name *: efs.mount.check' "$work/collector.log" &&
    python3 - "$aws_log" "$work/mount" <<'PY'
import json, sys
log, mount = sys.argv[1], sys.argv[2]
for line in open(log):
    req = json.loads(line)
    if "TraceSegments" not in req["target"]:
        continue
    for doc in json.loads(req["body"]).get("TraceSegmentDocuments", []):
        seg = json.loads(doc)
        if seg.get("name") == "efs.mount.check" and seg.get("annotations", {}).get("efs.mount.path") == mount:
            sys.exit(0)
sys.exit(1)
PY
}

for i in $(seq 1 60); do
  if ok_prom && ok_emf && ok_no_empty_dims 2>/dev/null && ok_spans; then
    echo "collector e2e: documented series on the Prometheus exporter, EMF events for CloudWatch (no empty dimension), efs.mount.check spans in the debug log and to X-Ray (annotation efs.mount.path)"
    curl -fsS "http://127.0.0.1:$PROM_PORT/metrics" | grep -E '^efs_(mount_health_status|mount_error_total|csi_driver_healthy)' | head -5
    echo "fake AWS endpoint received: $(python3 -c 'import json,sys,collections; print(dict(collections.Counter(json.loads(l)["target"] for l in open(sys.argv[1]))))' "$aws_log")"
    exit 0
  fi
  sleep 1
done
echo "collector e2e: FAILED (prometheus: $(ok_prom && echo ok || echo missing), emf: $(ok_emf && echo ok || echo missing), emf dimensions: $(ok_no_empty_dims && echo ok || echo bad), spans: $(ok_spans && echo ok || echo missing))"
curl -fsS "http://127.0.0.1:$PROM_PORT/metrics" | grep '^efs_' | head -20 || true
echo "--- requests to the fake AWS endpoint"; cut -c1-400 "$aws_log" | tail -5
echo "--- collector log"; tail -30 "$work/collector.log"
echo "--- agent log"; tail -30 "$work/agent.log"
exit 1
