#!/usr/bin/env bash
# Rebuild the shipped model from nothing: the data, the training, the test scores and the checkpoints/composites/ folder.
#   bash scripts/train.sh            about 80 minutes on a 2-core CPU (minutes on a GPU)
# The shipped model was trained in bf16; on a CPU without native bf16 the recipe trains a shorter fp32 run (below).
# Each step's output stays in data/ and runs/shipped/ (both git-ignored); the last step replaces checkpoints/composites/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# The sources of the composites: public-domain clip art and wallpaper photographs (Debian; licences in
# unet/composites.py) and MIT-licensed photographs (PyPI).
debian_packages=(openclipart-png plasma-workspace-wallpapers mate-backgrounds lomiri-wallpapers-16.04
  lomiri-wallpapers-20.04)
if ! dpkg -s "${debian_packages[@]}" >/dev/null 2>&1; then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${debian_packages[@]}" >/dev/null
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check mvtb-data==1.6.1
python=.venv/bin/python
run=runs/shipped

# (Re)build the data unless it is there as this version builds it: with the wallpaper photographs split across
# train, val and test, and validation drawn by photograph (sets built otherwise say so in their manifest, or nothing).
manifest=data/composites/manifest.json
{ grep -q '"wallpapers": "split"' "$manifest" && grep -q '"val_draw": "photo"' "$manifest"; } 2>/dev/null ||
  $python -m unet.composites --out data/composites --seed 0 --wallpapers split

# The recipe is recipes/composites.json (docs/experiments.md tells what each of its values did). On a CPU without
# native bf16 (AVX512-BF16 or AMX) it trains in fp32, over twice as slowly, so there it says to train 10 epochs
# instead of 20, which fit in 90 minutes on 2 cores and give a weaker model (docs/composites.md).
$python -m unet.train --recipe recipes/composites.json --out "$run"

# The test scores at the settings the model ships with (its inference.json, chosen on validation): the average over
# the eight quarter turns and mirror images, then regions of mean probability below 0.8 dropped.
$python -m unet.evaluate --weights "$run/best" --images data/composites/test/images \
  --masks data/composites/test/masks --dataset composites-test --out "$run/eval"

# checkpoints/composites/ becomes exactly what a Hub push would upload: config, safetensors, card, arguments, scores, history,
# curves.
cp "$run/curves.png" "$run/history.json" "$run/best/"
rm -rf checkpoints/composites
$python -m unet.publish --repo-id unet-tutorial/unet-composites --weights "$run/best" \
  --eval-json "$run/eval/eval.json" --notes docs/model-card-notes.md --dry-run --out checkpoints/composites
