#!/usr/bin/env bash
# Two-worker data-parallel training with MultiWorkerMirroredStrategy, both workers on this
# machine (a rehearsal of a cluster set-up). On real machines, replace "localhost" in the two
# tf_config_worker*.json files by each machine's address, copy the data to the same path on both,
# and start one worker per machine with its own TF_CONFIG.
#
#   examples/multiworker/run_two_workers.sh DATA_DIR [OUT_DIR]
#
# Worker 0 is the chief: it writes the run folder OUT_DIR/two-workers. Worker 1 writes its copy
# into a temporary folder, which this script deletes. --batch-size is per replica: each step
# processes 2 x 8 = 16 images, the seed's batch.
set -euo pipefail
data=${1:?usage: run_two_workers.sh DATA_DIR [OUT_DIR]}
out=${2:-runs}
here=$(cd "$(dirname "$0")" && pwd)
options=(--data "$data" --backbone smallcnn --weights none --image-size 64 --epochs 2
         --batch-size 8 --out "$out" --name two-workers)

log=$(mktemp -t breastcls-worker1.XXXXXX.log)
TF_CONFIG=$(cat "$here/tf_config_worker1.json") breastcls train "${options[@]}" > "$log" 2>&1 &
worker1=$!
TF_CONFIG=$(cat "$here/tf_config_worker0.json") breastcls train "${options[@]}"
wait "$worker1"
# The non-chief worker printed its temporary run folder; delete it.
tmp_run=$(sed -n 's/^run folder: //p' "$log")
if [[ -n "$tmp_run" && "$tmp_run" == /tmp/* ]]; then
    rm -rf "$(dirname "$tmp_run")"
fi
echo "worker 1 log: $log"
