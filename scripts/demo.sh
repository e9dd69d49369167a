#!/usr/bin/env bash
# `make demo`: the whole VersusQ pipeline on the embedded CPU default.
#   1. generate the synthetic benchmark (real mp4s with real codec artefacts, known quality;
#      the crisp design: one visible distortion per clip, docs/learning.md)
#   1b. the tiny SlowFast pre-trained on a distortion pretext over a DISJOINT synthetic set (another
#      seed), the embedded default's stand-in for SlowFast's Kinetics pre-training; frozen after.
#      The committed one (make motion-weights) when present, else pre-trained here (smaller)
#   2. SFT the tiny Qwen3-VL-architecture model (+ frozen tiny SlowFast): 400 steps without
#      rationales, then 400 with them (init_from the first)       -> run.py fit  (sft) x2
#   3. MC-GRPO from the SFT checkpoint, 300 steps                   -> run.py fit  (mcgrpo)
#   4. evaluate both checkpoints: in-domain + out-of-domain tables, LSQ / Elo / win-rate / BT
#      from the model's own generated comparisons                   -> run.py test (x2)
#   5. rank a folder of real videos (the six clips in ../shared/data/videos when present, else
#      the synthetic ood_calibration clips) plus a corrupt file     -> run.py predict
#   6. summary: SFT vs MC-GRPO side by side, stage wall times -> benchmarks/results/demo.json
# Every step is a plain command a user can run on its own.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${DEMO_DIR:-outputs/demo}
DATA=data/synthetic  # the folder conf/tiny.yaml reads (DEMO_SEED remakes it with that seed)
PRETRAIN_DATA=${DEMO_PRETRAIN_DATA:-data/synthetic_pretrain}
SEED=${DEMO_SEED:-0}
MOTION="$OUT/motion/tiny_slowfast.pt"
REAL=${DEMO_REAL_VIDEOS:-../shared/data/videos}
RESULTS=${DEMO_RESULTS:-benchmarks/results/demo.json}
# conf/base.yaml + conf/model.yaml are loaded by default; every stage uses the pre-trained encoder
tiny() { echo "--config conf/tiny.yaml --model.init_args.motion_weights $MOTION"; }
log() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
TIMES=()
t0=$(date +%s); last=$t0
lap() { local now; now=$(date +%s); TIMES+=("$1=$((now - last))"); last=$now; }
logger() { echo "--trainer.logger.init_args.save_dir $OUT --trainer.logger.init_args.name $1 --trainer.logger.init_args.version 0"; }

log "1/6 synthetic benchmark -> $DATA"
$PY -m datamodules.synthetic --out "$DATA" --seed "$SEED" --size small --design crisp
lap synthetic

SHIPPED=${DEMO_MOTION_WEIGHTS:-lightning_modules/weights/tiny_slowfast.pt}
shipped_seed=$([ -f "$SHIPPED.json" ] && $PY -c "import json,sys; print(json.load(open(sys.argv[1])).get('data_seed'))" "$SHIPPED.json" || echo none)
if [ -f "$SHIPPED" ] && [ "$shipped_seed" != "$SEED" ] && [ -z "${DEMO_PRETRAIN:-}" ]; then
  MOTION="$SHIPPED"
  log "1b/6 tiny SlowFast: the committed pre-trained encoder $SHIPPED (synthetic seed $shipped_seed, disjoint; make motion-weights re-makes it)"
  $PY -m lightning_modules.motion_pretrain --probe-only --out "$MOTION" --probe-benchmark "$DATA"
else
  log "1b/6 tiny SlowFast pre-training (distortion severities) on $PRETRAIN_DATA (seed $((SEED + 1)), disjoint)"
  $PY -m datamodules.synthetic --out "$PRETRAIN_DATA" --seed "$((SEED + 1))" --size small --design crisp \
    --train-clips "${DEMO_PRETRAIN_CLIPS:-2000}"
  $PY -m lightning_modules.motion_pretrain --data "$PRETRAIN_DATA" --out "$MOTION" --steps "${DEMO_MOTION_STEPS:-1500}" \
    --probe-benchmark "$DATA"  # reports what the frozen tokens carry about the benchmark (nothing trained on it)
fi
lap motion_pretrain

log "2/6 SFT (tiny model, CPU): a curriculum, first without rationales (empty <think>), then with them"
# shellcheck disable=SC2046
$PY run.py fit --config conf/sft.yaml $(tiny) --config conf/ablations/sft_no_reasoning.yaml $(logger sft_warmup)
WARM_CKPT="$OUT/sft_warmup/version_0/checkpoints/last.ckpt"
# shellcheck disable=SC2046
$PY run.py fit --config conf/sft.yaml $(tiny) --model.init_args.init_from "$WARM_CKPT" $(logger sft)
SFT_CKPT="$OUT/sft/version_0/checkpoints/last.ckpt"
lap sft

log "3/6 MC-GRPO from $SFT_CKPT"
# shellcheck disable=SC2046
$PY run.py fit --config conf/mcgrpo.yaml $(tiny) --model.init_args.init_from "$SFT_CKPT" $(logger mcgrpo) \
  --trainer.max_steps "${DEMO_GRPO_STEPS:-300}"
GRPO_CKPT="$OUT/mcgrpo/version_0/checkpoints/last.ckpt"
lap mcgrpo

log "4/6 test: comparison graph (5N) -> LSQ / Elo / win-rate / Bradley-Terry, MC-GRPO then SFT"
# shellcheck disable=SC2046
$PY run.py test --config conf/eval.yaml $(tiny) --ckpt_path "$GRPO_CKPT" $(logger test)
lap test_mcgrpo
# shellcheck disable=SC2046
$PY run.py test --config conf/eval.yaml $(tiny) --ckpt_path "$SFT_CKPT" $(logger sft_test)
lap test_sft

FOLDER="$OUT/predict_videos"
rm -rf "$FOLDER" && mkdir -p "$FOLDER"
if [ -d "$REAL" ] && ls "$REAL"/*.mp4 >/dev/null 2>&1; then
  SRC="$REAL"; cp "$REAL"/*.mp4 "$FOLDER"/
else
  SRC="$DATA/ood_calibration (no $REAL here)"; cp "$DATA"/ood_calibration/*.mp4 "$FOLDER"/
fi
printf 'not a video: the corrupt file predict must list, not crash on\n' > "$FOLDER/corrupt.mp4"
log "5/6 predict: leaderboard for $SRC + corrupt.mp4"
$PY run.py predict --config conf/predict.yaml $(tiny) --ckpt_path "$GRPO_CKPT" \
  --data.init_args.videos "$FOLDER" --trainer.default_root_dir "$OUT/predict"
lap predict

log "6/6 summary (SFT vs MC-GRPO) -> $RESULTS"
$PY scripts/demo_summary.py --sft "$OUT/sft_test/version_0/eval/results.csv" \
  --mcgrpo "$OUT/test/version_0/eval/results.csv" --times "${TIMES[@]}" --out "$RESULTS"

log "done in $(( $(date +%s) - t0 )) s"
echo "TensorBoard logs : tensorboard --logdir $OUT"
echo "tables           : $OUT/test/version_0/eval/ (MC-GRPO), $OUT/sft_test/version_0/eval/ (SFT)"
echo "leaderboard      : $OUT/predict/leaderboard.csv (+ comparisons.jsonl, bad_videos.csv)"
