#!/usr/bin/env bash
# Rebuild the street-scene model from nothing: CamVid, the training, the test scores and checkpoints/camvid/.
#   bash scripts/train_camvid.sh    about 80 minutes on a 2-core CPU in fp32 (less in bf16 or on a GPU)
# The recipe is recipes/camvid-lite-unet.json. CAMVID_SOURCE overrides where CamVid comes from (a clone or an
# archive of the SegNet tutorial repository; by default it is cloned from GitHub). Each step's output stays in
# data/camvid/ and runs/camvid-lite-unet/ (both git-ignored); the last step replaces checkpoints/camvid/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python=.venv/bin/python
run=runs/camvid-lite-unet
started=$SECONDS

$python -m unet.camvid --out data/camvid ${CAMVID_SOURCE:+--source "$CAMVID_SOURCE"}
lscpu | grep -m1 "Model name" || true
$python -m unet.train --recipe recipes/camvid-lite-unet.json --out "$run"
trained=$SECONDS

# The test split, scored once, as the literature scores it (mIoU over the 11 classes, void ignored) and at the
# settings the model ships with: one view, every region kept.
$python -m unet.evaluate --weights "$run/best" --camvid data/camvid --split test --dataset camvid-test \
  --out "$run/eval"

# checkpoints/camvid/ becomes exactly what a Hub push would upload. Its weights carry CamVid's licence.
cp "$run/curves.png" "$run/history.json" "$run/best/"
rm -rf checkpoints/camvid
$python -m unet.publish --repo-id unet-tutorial/unet-camvid --weights "$run/best" \
  --eval-json "$run/eval/eval.json" --notes docs/camvid-card-notes.md --license cc-by-nc-4.0 \
  --dry-run --out checkpoints/camvid
echo "Training took $(((trained - started) / 60)) minutes, everything $(((SECONDS - started) / 60)) minutes."
