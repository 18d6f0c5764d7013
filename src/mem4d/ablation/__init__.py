"""The decoupled-vs-unified memory ablation (issue 15), one resumable study.

- `plan`: what a study trains (`StudyRun`: variant x training seed) and the settings every run shares;
- `study`: trains, scores (evaluation harness + loop probe), times and tabulates, skipping what is done;
- `loop_probe`: the long-range memory probe on looping scenes (ATE, revisit drift, revisit depth);
- `speed`: CPU ms per frame of several models, interleaved;
- `table`: per-run figures, mean and spread over seeds, the paper-style markdown tables;
- `command`: the command line of ``bench/ablation.py``.
"""
