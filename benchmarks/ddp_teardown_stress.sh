#!/bin/bash
# Launch N tiny 2-rank torchrun trainings and count the ones that fail (benchmarks/results/ddp_teardown.md).
# usage: bash benchmarks/ddp_teardown_stress.sh N [PYTHON]
n=${1:-12}; py=${2:-.venv/bin/python}; out=$(mktemp -d); fails=0
for i in $(seq 1 "$n"); do
  OMP_NUM_THREADS=1 "$py" -m torch.distributed.run --standalone --nproc_per_node 2 -m accord.cli train \
    --method late_fusion --dataset conflictbench --set data.params.n_train=100 --set train.epochs=2 \
    --set train.num_threads=1 --set "output.dir=$out/runs_$i" > "$out/run_$i.log" 2>&1 \
    || { fails=$((fails + 1)); echo "run $i failed: $out/run_$i.log"; }
done
echo "failures: $fails / $n"
