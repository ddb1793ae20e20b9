#!/usr/bin/env bash
# Runs the handshake benchmarks and writes RESULTS.md (see README.md).
#
#   bench/run.sh              full run (about 7 minutes): in-process rounds, the
#                             end-to-end program, the idle-connection memory,
#                             the profiles, RESULTS.md
#   bench/run.sh -profiles    CPU and memory profiles of the wsgate handler and
#                             middleware forms, as text in profiles/
#   bench/run.sh -short       a quick run that checks everything works (used by
#                             .ci/bench); writes its report to a temporary file
#                             unless -o is given
#   -o FILE                   where to write the report (default RESULTS.md)
#
# Environment: ROUNDS (in-process rounds, default 15), BENCHTIME (per case
# and round, default 400ms), E2E_N (handshakes per measurement, default 2000),
# E2E_ROUNDS (default 9), E2E_CLIENTS (default 1,16,64), IDLE_N (idle
# connections per case, default 10000), IDLE_ROUNDS (default 3), OTEL_ROUNDS
# (rounds of otelwsgate's BenchmarkHandshake, default 5) and OTEL_BENCHTIME
# (default 100000x).
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin"

mode=full
out=
while [ $# -gt 0 ]; do
	case "$1" in
	-short) mode=short ;;
	-profiles) mode=profiles ;;
	-o) out="$2"; shift ;;
	*) echo "usage: $0 [-short | -profiles] [-o FILE]" >&2; exit 2 ;;
	esac
	shift
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== building"
go test -c -o "$tmp/bench.test" .
go build -o "$tmp/e2ebench" ./cmd/e2ebench
go build -o "$tmp/benchreport" ./cmd/benchreport
go build -o "$tmp/idlemem" ./cmd/idlemem

# profiles writes the CPU and memory profiles of the wsgate subprotocol case,
# handler and middleware form, as pprof text summaries in profiles/.
profiles() {
	mkdir -p profiles
	for c in WsgateHandler WsgateMiddleware; do
		name=$(echo "$c" | sed 's/^Wsgate//' | tr 'A-Z' 'a-z')-subprotocol
		echo "== profiling $c/subprotocol"
		# CPU and memory in separate runs: sampling every allocation
		# would fill the CPU profile with the memory profiler's own work.
		(cd "$tmp" && ./bench.test -test.run '^$' -test.bench "^BenchmarkHandshake/$c/subprotocol\$" \
			-test.benchmem -test.benchtime "${BENCHTIME:-3s}" -test.cpuprofile "$name.cpu.prof") |
			grep -E '^Benchmark' | tee "$tmp/$name.bench"
		(cd "$tmp" && ./bench.test -test.run '^$' -test.bench "^BenchmarkHandshake/$c/subprotocol\$" \
			-test.benchmem -test.benchtime 1s -test.memprofile "$name.mem.prof" -test.memprofilerate 1) |
			grep -E '^Benchmark' | tee "$tmp/$name.mem.bench"
		{
			echo "# BenchmarkHandshake/$c/subprotocol, CPU: go tool pprof -top -nodecount=40"
			cat "$tmp/$name.bench"
			echo
			go tool pprof -top -nodecount=40 "$tmp/bench.test" "$tmp/$name.cpu.prof" 2>/dev/null | grep -v '^Time:\|^Duration:\|^File:\|^Build ID:'
			echo
			echo "# The same, by cumulative time: go tool pprof -top -cum -nodecount=40"
			go tool pprof -top -cum -nodecount=40 "$tmp/bench.test" "$tmp/$name.cpu.prof" 2>/dev/null | grep -v '^Time:\|^Duration:\|^File:\|^Build ID:'
		} >"profiles/$name.cpu.txt"
		for idx in alloc_objects alloc_space; do
			{
				echo "# BenchmarkHandshake/$c/subprotocol, memory ($idx, every allocation sampled): go tool pprof -sample_index=$idx -top -nodecount=40"
				cat "$tmp/$name.mem.bench"
				echo
				go tool pprof -sample_index=$idx -top -nodecount=40 "$tmp/bench.test" "$tmp/$name.mem.prof" 2>/dev/null | grep -v '^Time:\|^Duration:\|^File:\|^Build ID:'
			} >"profiles/$name.mem.$idx.txt"
		done
	done
}

if [ "$mode" = profiles ]; then
	profiles
	ls -l profiles
	exit 0
fi

if [ "$mode" = short ]; then
	rounds=${ROUNDS:-2}
	benchtime=${BENCHTIME:-20ms}
	e2e_n=${E2E_N:-100}
	e2e_rounds=${E2E_ROUNDS:-1}
	e2e_clients=${E2E_CLIENTS:-1,16,64}
	warmup=20
	idle_n=${IDLE_N:-500}
	idle_rounds=${IDLE_ROUNDS:-1}
	otel_rounds=${OTEL_ROUNDS:-1}
	otel_time=${OTEL_BENCHTIME:-2000x}
	out=${out:-$tmp/RESULTS.md}
else
	rounds=${ROUNDS:-15}
	benchtime=${BENCHTIME:-400ms}
	e2e_n=${E2E_N:-2000}
	e2e_rounds=${E2E_ROUNDS:-9}
	e2e_clients=${E2E_CLIENTS:-1,16,64}
	warmup=300
	idle_n=${IDLE_N:-10000}
	idle_rounds=${IDLE_ROUNDS:-3}
	otel_rounds=${OTEL_ROUNDS:-5}
	otel_time=${OTEL_BENCHTIME:-100000x}
	out=${out:-RESULTS.md}
fi

echo "== tests"
(cd "$tmp" && ./bench.test -test.count 1) || { echo "tests failed" >&2; exit 1; }

echo "== in process: $rounds rounds, -benchtime $benchtime"
for i in $(seq 1 "$rounds"); do
	(cd "$tmp" && ./bench.test -test.run '^$' -test.bench '^BenchmarkHandshake$' -test.benchmem -test.benchtime "$benchtime") >"$tmp/round.txt"
	cat "$tmp/round.txt" >>"$tmp/inproc.txt"
	grep -c '^BenchmarkHandshake/' "$tmp/round.txt" | sed "s/^/round $i: /; s/$/ cases/"
done

echo "== end to end: $e2e_rounds rounds of $e2e_n handshakes at $e2e_clients clients"
"$tmp/e2ebench" -n "$e2e_n" -rounds "$e2e_rounds" -clients "$e2e_clients" -warmup "$warmup" -json "$tmp/e2e.json"

echo "== idle connections: $idle_rounds round(s) of $idle_n connections per case"
"$tmp/idlemem" -n "$idle_n" -rounds "$idle_rounds" -json "$tmp/idle.json"

echo "== otelwsgate: the handshake with OpenTelemetry, $otel_rounds round(s) of $otel_time"
(cd ../otelwsgate && go test -run '^$' -bench '^BenchmarkHandshake$' -benchmem -count "$otel_rounds" -benchtime "$otel_time" .) >"$tmp/otel.txt"
grep -c '^BenchmarkHandshake/' "$tmp/otel.txt" | sed 's/$/ results/'

suffix=
[ "$mode" = short ] && suffix=" -short"
commit=$(git -C .. rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C .. status --porcelain -- ':!bench/RESULTS.md' ':!bench/RESULTS.svg' ':!bench/profiles' 2>/dev/null)" ]; then
	commit="$commit (with uncommitted changes)"
fi
profile=
if [ "$mode" = full ]; then
	echo "== profiles"
	profiles
	profile=profiles/handler-subprotocol.cpu.txt
fi
"$tmp/benchreport" -inproc "$tmp/inproc.txt" -e2e "$tmp/e2e.json" -idle "$tmp/idle.json" -otel "$tmp/otel.txt" -o "$out" -commit "$commit" -profile "$profile" \
	-run "ROUNDS=$rounds BENCHTIME=$benchtime E2E_N=$e2e_n E2E_ROUNDS=$e2e_rounds E2E_CLIENTS=$e2e_clients IDLE_N=$idle_n IDLE_ROUNDS=$idle_rounds bench/run.sh$suffix"
if [ "$mode" = short ]; then
	sed -n '/^## Targets/,/^## In process/p' "$out" | head -n -1
fi
