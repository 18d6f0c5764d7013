"""Throughput of `mem4d reconstruct` with and without one competing busy process, per thread setting.

Each setting runs `mem4d reconstruct` as its own process (OpenMP reads its environment once, at
start) on the same input, first on an otherwise idle machine, then next to one process spinning
in a Python loop (`python -c "while True: pass"`), and reports frames/s from meta.json. The
question (issue 14, item 1): does the default stay within 2x of its idle throughput when the
machine is shared?

    .venv/bin/python bench/bench_threads.py INPUT [--settings "2:ACTIVE,2:,2:PASSIVE,1:,default"] [--json out.json] \
        [reconstruct options, e.g. --no-video]

A setting is ``THREADS:OMP_WAIT_POLICY`` (an empty policy: OpenMP's own default; ``default``:
what `mem4d reconstruct` does when neither ``--threads`` nor the policy is given).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run_once(inp: str, threads: str, policy: str | None, out: Path, extra: list[str]) -> dict:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("OMP_WAIT_POLICY", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy  # an empty value is ignored by OpenMP and kept by mem4d
    cmd = [sys.executable, "-m", "mem4d.cli.main", "reconstruct", inp, "--out", str(out), "--no-progress",
           "--overwrite", *extra]
    if threads != "default":
        cmd += ["--threads", threads]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = json.loads((out / "meta.json").read_text())
    return {"frames": meta["frames"], "frames_per_second": meta["frames_per_second"],
            "threads_used": meta.get("threads")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input", help="video or image folder")
    p.add_argument("--settings", default="2:ACTIVE,2:,2:PASSIVE,1:,default")
    p.add_argument("--busy", type=int, default=1, help="competing busy processes in the loaded runs (default 1)")
    p.add_argument("--json", type=Path, default=None)
    args, extra = p.parse_known_args(argv)  # anything else goes to `mem4d reconstruct`
    extra = [a for a in extra if a != "--"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "recon"
        for setting in args.settings.split(","):
            threads, _, policy = setting.partition(":")
            pol = policy if ":" in setting else None
            idle = run_once(args.input, threads, pol, out, extra)
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
            try:
                busy = run_once(args.input, threads, pol, out, extra)
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
            row = {"setting": setting, "threads_used": idle["threads_used"], "frames": idle["frames"],
                   "idle_fps": idle["frames_per_second"], "busy_fps": busy["frames_per_second"],
                   "load_average_1min": os.getloadavg()[0]}
            row["slowdown"] = row["idle_fps"] / row["busy_fps"]
            rows.append(row)
            print(f"--threads {threads:>7} OMP_WAIT_POLICY={pol if pol is not None else '(mem4d default)':<16} "
                  f"threads used {row['threads_used']}: idle {row['idle_fps']:.2f} frames/s, with {args.busy} busy "
                  f"process(es) {row['busy_fps']:.2f} frames/s ({row['slowdown']:.1f}x slower; load average "
                  f"{row['load_average_1min']:.1f})", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
