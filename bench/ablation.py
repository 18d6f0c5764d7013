"""Decoupled vs unified memory (issue 15): the whole ablation study in one resumable command.

Trains the variants full, unified, no_tdm, no_psm and no_tca of one preset from scratch with one
recipe (the same steps, data seed stream and validation; only the training seed differs between
seeds), scores each final model on synthetic-dynamic, synthetic-static and the 7-Scenes sample
through the evaluation harness and on a long-range loop probe, counts parameters, times CPU ms per
frame (variants interleaved, one thread), and writes STUDY/study.json and STUDY/table.md
(`mem4d.ablation`). Rerun the same command to continue an interrupted study.

    # the study of issue 15 (defaults: full and unified x 2 seeds, the others x 1; procrustes pose)
    .venv/bin/python bench/ablation.py --config configs/ablation-tiny.yaml --study ../runs-ablation/tiny
    # the paper's camera head instead
    .venv/bin/python bench/ablation.py --config configs/ablation-tiny.yaml --study ../runs-ablation/tiny-absolute \
        --camera-pose absolute
    # a smoke run of the pipeline (minutes; its numbers mean nothing)
    OMP_NUM_THREADS=1 .venv/bin/python bench/ablation.py --config configs/ablation-tiny.yaml --study /tmp/abl-smoke \
        --variants full,unified --seeds full=1,unified=1 --steps 20 --set data.image_size=[48,64] \
        --set data.sizes.long_side=null --set data.val_scenes=1 --set data.val_frames=8 \
        --limit-seqs 2 --max-frames 8 --probe-scenes 1 --speed-rounds 2
"""

from __future__ import annotations

import sys

from mem4d.ablation.command import main

if __name__ == "__main__":
    sys.exit(main())
