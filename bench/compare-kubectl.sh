#!/usr/bin/env bash
# Side-by-side figures for `kubectl aether logs` and `kubectl logs` against kubesim, in one run.
#
#   bench/compare-kubectl.sh [PODS] [LINES_PER_CONTAINER] [RUNS]
#
# History: an app of PODS pods (one container each) that wrote LINES_PER_CONTAINER lines and
# stopped; both tools read all of it (text with a pod prefix), RUNS times each: wall time,
# max RSS, lines out. Follow: the same app writing 1,000 lines/s per pod for 10 s while both
# tools follow it: CPU time used and lines out. Prints a table; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

pods=${1:-10}
lines=${2:-20000}
runs=${3:-3}
rate=2000

cargo build --release --locked -p kubesim -p kubectl-aether >/dev/null 2>&1 \
  || cargo build --release --locked -p kubesim -p kubectl-aether
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# A scenario whose containers write `lines` lines at `rate` lines/s, then terminate.
scenario() { # name pods rate seconds_of_writing terminate(yes|no)
  python3 - "$@" <<'PY'
import json, sys
name, pods, rate, secs, terminate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "yes"
pod_list, timeline = [], []
for i in range(pods):
    pod = f"{name}-{i:03d}"
    pod_list.append({"name": pod, "labels": {"app": name}, "containers": [
        {"name": "app", "generator": {"rate": rate, "lineSize": 100, "jsonEvery": 5, "style": "app"}}]})
    if terminate:
        timeline.append({"at": secs, "action": {"do": "terminateContainer", "namespace": "bench",
                         "pod": pod, "container": "app", "exitCode": 0, "reason": "Completed"}})
print(json.dumps({"defaultNamespace": "bench", "logMaxBytes": 256 * 1024 * 1024,
                  "users": [{"name": "admin", "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}],
                  "pods": pod_list, "timeline": timeline}))
PY
}

start_sim() { # scenario-file
  "$bin/kubesim" --scenario "$1" --kubeconfig "$work/kubeconfig" >"$work/sim.out" 2>"$work/sim.err" &
  for _ in $(seq 100); do [ -s "$work/sim.out" ] && return 0; sleep 0.1; done
  echo "kubesim did not start: $(cat "$work/sim.err")" >&2; exit 1
}

measure() { # label command...  -> prints "label wall_s maxrss_mb lines"
  local label=$1; shift
  /usr/bin/time -f '%e %M %U %S' -o "$work/time" "$@" >"$work/out" 2>/dev/null || true
  read -r wall rss user sys < <(tail -n 1 "$work/time")
  printf '%-16s %8.2f %8.1f %8.2f %10d\n' "$label" "$wall" "$(echo "$rss/1024" | bc -l)" \
    "$(echo "$user+$sys" | bc -l)" "$(wc -l <"$work/out")"
}

export KUBECONFIG=$work/kubeconfig
kubectl_logs=(kubectl logs -l app=hist --prefix --all-containers --tail=-1 --max-log-requests=$((pods + 5)))
aether_logs=("$bin/kubectl-aether" logs hist --tail -1 --color never --max-log-requests $((pods + 5)))

echo "== history: $pods pods x $lines lines, read whole ($runs runs each)"
secs=$(echo "$lines / $rate" | bc -l)
scenario hist "$pods" "$rate" "$secs" yes >"$work/hist.json"
start_sim "$work/hist.json"
sleep "$(echo "$secs + 2" | bc -l)"
printf '%-16s %8s %8s %8s %10s\n' tool wall_s rss_mb cpu_s lines
for _ in $(seq "$runs"); do
  measure "kubectl logs" "${kubectl_logs[@]}"
  measure "kubectl aether" "${aether_logs[@]}"
done
"$bin/kubectl-aether" logs hist --tail -1 -o json --max-log-requests $((pods + 5)) >"$work/json"
python3 - "$work/json" <<'PY'
import json, sys
times = [json.loads(l)["time"] for l in open(sys.argv[1]) if '"type":"log"' in l]
print(f"kubectl aether history in time order: {times == sorted(times)} ({len(times)} lines); "
      "kubectl logs reads pod after pod")
PY
kill %1; wait 2>/dev/null || true

echo "== follow: $pods pods x 1000 lines/s for 10 s"
scenario live "$pods" 1000 0 no >"$work/live.json"
start_sim "$work/live.json"
printf '%-16s %8s %8s %8s %10s\n' tool wall_s rss_mb cpu_s lines
measure "kubectl logs -f" timeout -s INT 10 kubectl logs -f -l app=live --prefix --tail=0 --max-log-requests=$((pods + 5))
measure "kubectl aether" timeout -s INT 10 "$bin/kubectl-aether" logs live -f --tail 0 --color never --max-log-requests $((pods + 5))
