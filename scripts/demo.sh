#!/usr/bin/env bash
# `make demo`: the whole VersusQ pipeline on the embedded CPU default.
#   1. generate the synthetic benchmark (real mp4s with real codec artefacts, known quality)
#   2. SFT the tiny Qwen3-VL-architecture model (+ tiny SlowFast)   -> run.py fit  (sft)
#   3. MC-GRPO from the SFT checkpoint                              -> run.py fit  (mcgrpo)
#   4. evaluate: in-domain + out-of-domain tables, LSQ / Elo / win-rate -> run.py test
#   5. rank a folder of unseen (out-of-domain) videos                -> run.py predict
# Every step is a plain command a user can run on its own.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${DEMO_DIR:-outputs/demo}
DATA=${DEMO_DATA:-data/synthetic}
SEED=${DEMO_SEED:-0}
TINY="--config conf/tiny.yaml"  # conf/base.yaml + conf/model.yaml are loaded by default
log() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
start=$(date +%s)

log "1/5 synthetic benchmark -> $DATA"
$PY -m datamodules.synthetic --out "$DATA" --seed "$SEED"

log "2/5 SFT (tiny model, CPU)"
$PY run.py fit --config conf/sft.yaml $TINY \
  --trainer.logger.init_args.save_dir "$OUT" --trainer.logger.init_args.name sft \
  --trainer.logger.init_args.version 0
SFT_CKPT="$OUT/sft/version_0/checkpoints/last.ckpt"

log "3/5 MC-GRPO from $SFT_CKPT"
$PY run.py fit --config conf/mcgrpo.yaml $TINY --model.init_args.init_from "$SFT_CKPT" \
  --trainer.logger.init_args.save_dir "$OUT" --trainer.logger.init_args.name mcgrpo \
  --trainer.logger.init_args.version 0 --trainer.max_steps "${DEMO_GRPO_STEPS:-60}"
GRPO_CKPT="$OUT/mcgrpo/version_0/checkpoints/last.ckpt"

log "4/5 test: comparison graph (5N) -> LSQ / Elo / win-rate / Bradley-Terry"
$PY run.py test --config conf/eval.yaml $TINY --ckpt_path "$GRPO_CKPT" \
  --trainer.logger.init_args.save_dir "$OUT" --trainer.logger.init_args.name test \
  --trainer.logger.init_args.version 0

log "5/5 predict: leaderboard for the out-of-domain folder $DATA/ood_calibration"
$PY run.py predict --config conf/predict.yaml $TINY --ckpt_path "$GRPO_CKPT" \
  --data.init_args.videos "$DATA/ood_calibration" --trainer.default_root_dir "$OUT/predict"

end=$(date +%s)
log "done in $((end - start)) s"
echo "TensorBoard logs : tensorboard --logdir $OUT"
echo "tables           : $OUT/test/version_0/eval/"
echo "leaderboard      : $OUT/predict/leaderboard.csv (+ comparisons.jsonl)"
