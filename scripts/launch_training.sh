#!/usr/bin/env bash
# Start a training script in one process per GPU: torchrun for two or more, plain Python else.
#
#   scripts/launch_training.sh <processes> <python> <script> [arguments...]
#
# <processes> is the rule's GPU count (`resources.gpu`); 0 or 1 runs `<python> <script>` as it
# is. Two or more run `<python> -m torch.distributed.run --standalone --nproc_per_node N`, the
# torchrun of that same interpreter, on this node; the script reads its rank from the
# environment (sslgrid.train.distributed) and only rank 0 writes outputs.
#
# Stop signals: SLURM's --signal reaches every process of the job step, the workers included;
# they agree on a step, rank 0 checkpoints, and all exit. torchrun itself then exits non-zero
# (not 75), which Snakemake's `retries` treats like any failure: the retry resumes.
#
# Several nodes (not wired into the rules): run one torchrun per node with srun and a shared
# rendezvous instead of --standalone, e.g. inside an sbatch job of N nodes x G GPUs:
#   srun --ntasks-per-node=1 <python> -m torch.distributed.run --nnodes "$SLURM_NNODES" \
#     --nproc_per_node G --rdzv_backend c10d --rdzv_id "$SLURM_JOB_ID" \
#     --rdzv_endpoint "$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1):29500" \
#     <script> [arguments...]
set -euo pipefail

if [[ $# -lt 3 ]]; then
    echo "usage: $0 <processes> <python> <script> [arguments...]" >&2
    exit 2
fi
processes=$1
python=$2
shift 2
if ! [[ $processes =~ ^[0-9]+$ ]]; then
    echo "$0: <processes> must be a whole number, not '$processes'" >&2
    exit 2
fi

if ((processes <= 1)); then
    exec "$python" "$@"
fi
# `--`: otherwise torchrun's parser reads the script's options too, and takes or refuses the
# ones that abbreviate its own (the stage scripts' --log would be its --log-dir or --logs-specs).
exec "$python" -m torch.distributed.run --standalone --nproc_per_node "$processes" -- "$@"
