"""The reliability counts of the README (issue 10): hostile files tried, kill points survived,
elastic restarts survived, and the resident-memory peak of the worst rejected input.

* **Hostile files**: every case of ``tests/hostile_cases.py``, each built by this process and
  then read in a fresh process (``hostile_cases.probe``): outcome (one-line rejection, defined
  result, or traceback), files touched outside the run (audit hooks), pickle payloads run, and
  how much resident memory grew while reading (Linux ``VmHWM`` after resetting it).
* **Kill points**: ``tests/test_reliability.py``'s ``KILL_POINTS``: a training run SIGKILLs
  itself at each point, is resumed, and must equal an uninterrupted run (metrics without
  wall-clock times, index, every snapshot array, final weights, progress) with no temporary
  file left.
* **Elastic restarts**: ``torchrun --max-restarts 1`` with rank 1 SIGKILLed mid-run, compared
  with an uninterrupted two-process gloo run.

    python benchmarks/reliability.py [--jobs 2] [--skip-kills] [--skip-torchrun]

Writes ``benchmarks/results/reliability.json`` (atomically) and prints a summary. The machine
may be shared: timings are not the point here, and none are reported.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import hostile_cases as H  # noqa: E402

from analysis.runfolder import atomic_write_json  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "reliability.json"
MAX_PEAK = 200 * 1024 * 1024


def probe_all(jobs: int) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))

    def one(case_id: str) -> dict:
        base = Path(tempfile.mkdtemp(prefix="hostile-"))
        try:
            H.save_case(case_id, base)
            code = f"import json, hostile_cases as H; print(json.dumps(H.probe({case_id!r}, {str(base)!r})))"
            proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=600)
            if proc.returncode != 0:
                return {"case": case_id, "outcome": "crash", "messages": [proc.stderr[-500:]],
                        "outside_access": [], "code_executed": False, "rss_growth_bytes": None}
            return json.loads(proc.stdout.strip().splitlines()[-1])
        finally:
            shutil.rmtree(base, ignore_errors=True)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(one, H.CASES))
    for r in results:
        print(f"  {r['case']:<40} {r['outcome']:<9} rss +{(r.get('rss_growth_bytes') or 0) / 2**20:6.1f} MiB",
              flush=True)
    return results


def kills() -> list[dict]:
    import test_reliability as T
    from blockout.train import is_resumable, resume_config, train

    tmp = Path(tempfile.mkdtemp(prefix="kills-"))
    try:
        hier = tmp / "h.json"
        hier.write_text(json.dumps(T.HIERARCHY))
        ref = tmp / "ref"
        train(T.tiny(str(hier), ref))
        want = T.run_fingerprint(ref)
        out = []
        for spec, what in T.KILL_POINTS:
            run = tmp / spec.replace(":", "_").replace("*", "x")
            code = T.killed_run(T.tiny(str(hier), run), spec)
            killed = code == -signal.SIGKILL
            cfg = T.tiny(str(hier), run)
            result = train(resume_config(run), resume=True) if is_resumable(run) else train(cfg)
            got = T.run_fingerprint(run)
            same = {k: got[k] == want[k] for k in want}
            left = T.leftovers(run)
            ok = killed and result.status == "finished" and all(same.values()) and not left
            out.append({"point": spec, "what": what, "killed": killed, "identical": same, "leftover_temps": left,
                        "survived": ok})
            print(f"  kill {spec:<26} {'survived' if ok else 'FAILED'}  ({what})", flush=True)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def elastic() -> dict:
    import test_reliability as T

    tmp = Path(tempfile.mkdtemp(prefix="elastic-"))
    try:
        ref, part = tmp / "ref", tmp / "part"
        a = T._torchrun(tmp, ref)
        b = T._torchrun(tmp, part, {"BLOCKOUT_TEST_KILL_AT": "step:4:1", "BLOCKOUT_TEST_KILL_RANK": "1"}, restarts=1)
        ok = a.returncode == 0 and b.returncode == 0
        same = {}
        if ok:
            fa, fb = T.run_fingerprint(ref), T.run_fingerprint(part)
            same = {k: fa[k] == fb[k] for k in fa}
        restarted = "resuming" in b.stderr
        survived = ok and restarted and all(same.values()) and not T.leftovers(part)
        print(f"  torchrun --max-restarts 1, rank 1 killed after step 4: {'survived' if survived else 'FAILED'}")
        return {"restarted": restarted, "identical": same, "survived": survived,
                "stderr_tail": None if survived else b.stderr[-2000:]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2, help="hostile cases probed at once (default: 2)")
    ap.add_argument("--skip-kills", action="store_true")
    ap.add_argument("--skip-torchrun", action="store_true")
    args = ap.parse_args()

    print(f"hostile files ({len(H.CASES)} cases, one process each):", flush=True)
    cases = probe_all(args.jobs)
    rejected = [r for r in cases if r["outcome"] == "rejected"]
    peaks = [(r.get("rss_growth_bytes") or 0, r["case"]) for r in cases]
    worst = max(peaks)
    worst_rejected = max((r.get("rss_growth_bytes") or 0, r["case"]) for r in rejected)
    summary = {
        "hostile_cases": len(cases),
        "rejected_one_line": len(rejected),
        "accepted_defined_result": sum(r["outcome"] == "accepted" and r["outcome"] == r.get("expect") for r in cases),
        "tracebacks": sum(r["outcome"] in ("traceback", "crash") for r in cases),
        "unexpected_outcomes": [r["case"] for r in cases if r["outcome"] != r.get("expect")],
        "outside_reads_or_writes": sum(len(r["outside_access"]) for r in cases),
        "code_executions": sum(bool(r["code_executed"]) for r in cases),
        "worst_rss_growth_rejected_mib": round(worst_rejected[0] / 2**20, 1),
        "worst_rss_growth_rejected_case": worst_rejected[1],
        "worst_rss_growth_any_mib": round(worst[0] / 2**20, 1),
        "rss_method": cases[0].get("rss_method") if cases else None,
        "rejected_within_200mb": all((r.get("rss_growth_bytes") or 0) <= MAX_PEAK for r in rejected),
    }
    kill_results = [] if args.skip_kills else kills()
    elastic_result = None if args.skip_torchrun else elastic()
    summary["kill_points"] = len(kill_results)
    summary["kill_points_survived"] = sum(k["survived"] for k in kill_results)
    summary["elastic_restarts"] = 0 if elastic_result is None else 1
    summary["elastic_restarts_survived"] = int(bool(elastic_result and elastic_result["survived"]))
    out = {"summary": summary, "machine": {"platform": platform.platform(), "python": platform.python_version(),
                                           "cpus": os.cpu_count(), "load_average": os.getloadavg()},
           "command": "python benchmarks/reliability.py", "cases": cases, "kills": kill_results,
           "elastic": elastic_result}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT, out)
    print(json.dumps(summary, indent=1))
    print(f"written to {OUT.relative_to(ROOT)}")
    ok = (summary["tracebacks"] == 0 and not summary["unexpected_outcomes"] and summary["code_executions"] == 0
          and summary["outside_reads_or_writes"] == 0 and summary["rejected_within_200mb"]
          and summary["kill_points_survived"] == summary["kill_points"]
          and summary["elastic_restarts_survived"] == summary["elastic_restarts"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
