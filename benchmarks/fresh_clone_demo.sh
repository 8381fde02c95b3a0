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
import datetime, json, os, pathlib, sys
out, t0, t1, t2 = sys.argv[1], *map(float, sys.argv[2:])
path = pathlib.Path(out)
old = json.loads(path.read_text()) if path.is_file() else {}
keep = {k: v for k, v in old.items() if k not in ("command", "setup_wall_s", "demo_wall_s", "wall_s", "script",
                                                   "made_utc", "load_after", "previous")}
if "wall_s" in old:  # the run this one replaces, kept for comparison
    keep["previous"] = {k: old[k] for k in ("made_utc", "setup_wall_s", "demo_wall_s", "wall_s") if k in old}
rec = {"command": "git clone ... && make demo", "setup_wall_s": round(t1 - t0, 1),
       "demo_wall_s": round(t2 - t1, 1), "wall_s": round(t2 - t0, 1), "script": "bash benchmarks/fresh_clone_demo.sh",
       "made_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
       "load_after": round(os.getloadavg()[0], 2), **keep}
path.write_text(json.dumps(rec, indent=2) + "\n")
print(path.read_text())
PY
rm -rf "$dir"
