#!/usr/bin/env bash
# `make demo` from a fresh clone of this repository (HEAD), pip cache warm: wall seconds of the set-up and of the
# whole command; writes benchmarks/results/fresh_clone_demo.json. Usage: bash benchmarks/fresh_clone_demo.sh
set -euo pipefail
here=$(pwd)
dir=$(mktemp -d)
git clone -q "$here" "$dir/accord"
cd "$dir/accord"
t0=$(date +%s.%N)
make setup >/dev/null
t1=$(date +%s.%N)
make demo >/dev/null
t2=$(date +%s.%N)
python3 - "$here/benchmarks/results/fresh_clone_demo.json" "$t0" "$t1" "$t2" <<'PY'
import json, sys
out, t0, t1, t2 = sys.argv[1], *map(float, sys.argv[2:])
json.dump({"command": "git clone ... && make demo", "setup_wall_s": round(t1 - t0, 1),
           "demo_wall_s": round(t2 - t1, 1), "wall_s": round(t2 - t0, 1),
           "script": "bash benchmarks/fresh_clone_demo.sh"}, open(out, "w"), indent=2)
print(open(out).read())
PY
rm -rf "$dir"
