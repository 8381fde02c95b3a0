#!/bin/bash
# Run one test N times in a row and count the failures (a flaky test shows itself here, not in CI).
# usage: bash benchmarks/repeat_test.sh N TEST_ID [PYTHON]
#   e.g. bash benchmarks/repeat_test.sh 20 tests/test_distributed.py::test_torchrun_interrupted_run_resumes_to_the_same_result
n=${1:?N}; test=${2:?TEST_ID}; py=${3:-.venv/bin/python}; out=$(mktemp -d); fails=0; t0=$(date +%s)
for i in $(seq 1 "$n"); do
  "$py" -m pytest -q -p no:cacheprovider "$test" > "$out/run_$i.log" 2>&1 \
    || { fails=$((fails + 1)); echo "run $i failed: $out/run_$i.log"; }
done
echo "failures: $fails / $n ($(( $(date +%s) - t0 )) s; logs in $out)"
