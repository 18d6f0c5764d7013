"""The study's table: per-run figures read from results.json / the probe report, mean and spread
over seeds, and the markdown rows."""

from __future__ import annotations

import math

import pytest

from mem4d.ablation.table import METRICS, aggregate, render_tables, run_metrics


def _results(abs_rel: float, ate: float, iou: float | None = 0.4) -> dict:
    """A fake results.json of each benchmark (only the fields the table reads)."""
    depth = {"scale": {"dataset": {"abs_rel": abs_rel, "delta1": 1 - abs_rel}},
             "metric": {"dataset": {"abs_rel": 2 * abs_rel, "delta1": 0.1}}}
    pose = {"dataset": {"ate": ate, "rpe_trans": ate / 10, "rpe_rot": 10 * ate, "n_sequences": 3}}
    dynamic = {"depth": depth, "pose": pose}
    if iou is not None:
        dynamic["motion"] = {"dataset": {"iou": iou}}
    return {"synthetic-dynamic": dynamic,
            "synthetic-static": {"depth": {"scale": {"dataset": {"abs_rel": abs_rel / 2, "delta1": 0.9}}}, "pose": pose},
            "7scenes-sample": {"depth": depth, "pose": pose}}


def _probe(drift: float) -> dict:
    return {"dataset": {"ate": 0.2, "ate_revisit": 0.3, "revisit_drift": drift, "abs_rel_first": 0.1,
                        "abs_rel_revisit": 0.12}}


def test_run_metrics_read_every_source():
    m = run_metrics(_results(0.2, 0.05), _probe(0.07))
    assert set(m) == {x.key for x in METRICS}
    assert m["dyn_abs_rel"] == 0.2 and m["dyn_delta1"] == pytest.approx(0.8)
    assert m["static_abs_rel"] == 0.1 and m["ate"] == 0.05 and m["rpe_rot"] == pytest.approx(0.5)
    assert m["iou"] == 0.4 and m["7s_abs_rel_metric"] == 0.4 and m["loop_drift"] == 0.07
    missing = run_metrics({"synthetic-dynamic": _results(0.2, 0.05, iou=None)["synthetic-dynamic"]}, None)
    assert missing["iou"] is None and missing["7s_ate"] is None and missing["loop_ate"] is None
    assert missing["dyn_abs_rel"] == 0.2


def test_aggregate_mean_and_sample_spread_over_seeds():
    runs = [run_metrics(_results(0.2, 0.05), _probe(0.1)), run_metrics(_results(0.3, 0.07), _probe(0.2))]
    agg = aggregate(runs)
    a = agg["dyn_abs_rel"]
    assert a["n"] == 2 and a["mean"] == pytest.approx(0.25) and a["values"] == [0.2, 0.3]
    assert a["std"] == pytest.approx(math.sqrt(((0.2 - 0.25) ** 2 + (0.3 - 0.25) ** 2) / 1))  # ddof 1
    assert (a["min"], a["max"]) == (0.2, 0.3)
    assert agg["loop_drift"]["mean"] == pytest.approx(0.15)
    three = aggregate([{"ate": v} for v in (1.0, 2.0, 6.0)])["ate"]
    assert three["mean"] == pytest.approx(3.0) and three["std"] == pytest.approx(math.sqrt((4 + 1 + 9) / 2))
    one = aggregate(runs[:1])["dyn_abs_rel"]
    assert one["mean"] == 0.2 and one["std"] is None
    # a seed without a figure (e.g. no motion head) does not count as zero
    partial = aggregate([{"iou": 0.5}, {"iou": None}])["iou"]
    assert partial["n"] == 1 and partial["mean"] == 0.5 and partial["std"] is None
    assert aggregate([{}])["iou"]["mean"] is None


def test_table_rows_show_mean_and_spread():
    rows = {"full": aggregate([run_metrics(_results(0.2, 0.05), _probe(0.1)),
                               run_metrics(_results(0.3, 0.07), _probe(0.2))]),
            "no_psm": aggregate([run_metrics(_results(0.4, 0.1, iou=None), None)])}
    text = render_tables(rows, {"full": {"seeds": [0, 1], "parameters": 4_259_872, "cpu_ms": 41.26},
                                "no_psm": {"seeds": [0], "parameters": 3_924_768}},
                         notes=["a note"], probe_period=43.5)
    lines = text.splitlines()
    assert lines[0] == "a note"
    full = next(line for line in lines if line.startswith("| full (TCA + TDM + PSM) | 0, 1 | 0.250 ± 0.071 | 75.0 ± 7.1 |"))
    assert full.endswith("| 4.26 M | 41.3 |")
    no_psm = next(line for line in lines if line.startswith("| w/o PSM | 0 | 0.400 | 60.0 |"))
    assert no_psm.split(" | ")[9] == "–"  # IoU missing
    assert no_psm.endswith("| 3.92 M | – |")
    assert "after 43.5 frames" in text
    rows_no_psm = [line for line in lines if line.startswith("| w/o PSM")]
    assert len(rows_no_psm) == 3  # one per table; no probe figures for no_psm: dashes
    assert rows_no_psm[2] == "| w/o PSM | 0 | – | – | – | – | – |"
    assert "| 0.150 ± 0.071 |" in next(line for line in lines[lines.index(full) + 1:] if line.startswith("| full") and
                                        "0.300 ± 0.000" in line)
