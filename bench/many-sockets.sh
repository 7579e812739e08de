#!/usr/bin/env bash
# Start-up, `ls` and a metrics scrape with many existing sockets:
# ./bench/many-sockets.sh   (as root; 3 processes hold 9,000 loopback
# connections each, 54,000 sockets, in a network namespace of their own)
set -euo pipefail
cd "$(dirname "$0")/.."
TCPSTATE=${TCPSTATE:-bin/tcpstate}
ns=tcpstate-bench-sockets-$$
dir=$(mktemp -d)
ip netns add "$ns"; ip -n "$ns" link set lo up
cleanup() { for fd in "${fds[@]}"; do eval "exec $fd>&-"; done; sleep 1; ip netns del "$ns"; rm -rf "$dir"; }
fds=()
trap cleanup EXIT
cat > "$dir/hold.py" <<'PY'
import resource, socket, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port)); srv.listen(4096)
keep = []
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port)); a, _ = srv.accept(); keep += [c, a]
print("ready", flush=True)
sys.stdin.read()
PY
for port in 7001 7002 7003; do
	mkfifo "$dir/in.$port"
	ip netns exec "$ns" python3 "$dir/hold.py" 9000 $port < "$dir/in.$port" > "$dir/out.$port" &
	exec {fd}>"$dir/in.$port"; fds+=("$fd")
done
for port in 7001 7002 7003; do until grep -q ready "$dir/out.$port" 2>/dev/null; do sleep 0.2; done; done
echo "sockets: $(ip netns exec "$ns" ss -Htan | wc -l)"
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
for _ in 1 2 3; do
	start=$(date +%s%N)
	"$TCPSTATE" -o json > /dev/null 2> "$dir/err" & pid=$!
	until grep -q '^Tracing' "$dir/err" 2>/dev/null; do sleep 0.002; done
	echo "trace start-up: $(ms "$start") ms"; kill -INT $pid; wait $pid || true
	start=$(date +%s%N); "$TCPSTATE" ls --by process > /dev/null; echo "ls --by process: $(ms "$start") ms"
done
for labels in --pod-labels=false --pod-labels; do
	"$TCPSTATE" metrics --listen 127.0.0.1:19968 $labels > /dev/null 2> "$dir/err" & pid=$!
	until grep -q '^Serving' "$dir/err" 2>/dev/null; do sleep 0.05; done
	sleep 0.5
	echo "metrics $labels: scrape seconds: $(for _ in 1 2 3 4 5; do curl -s -o /dev/null -w '%{time_total} ' http://127.0.0.1:19968/metrics; done)"
	kill -INT $pid; wait $pid || true
done
