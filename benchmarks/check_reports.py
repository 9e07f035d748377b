"""Check that ``archlab report`` works on every registry name and on example run directories.

Issue 12's "Done when": the report works on every registry name and on every example's run
directory; it may skip a benchmark row a model cannot run, but it must say why. Each subject is
reported in a fresh subprocess with a timeout (a hung export or an out-of-memory model cannot
take the others down), and each row records: ok / failed (the one-line error), the sections the
report skipped with their stated reasons, benchmark rows that did not run, and the wall time.

Usage::

    python benchmarks/check_reports.py                          # every registry name
    python benchmarks/check_reports.py gat dlrm                 # a subset
    python benchmarks/check_reports.py --runs runs/bench_learning/gat-karate-*   # run directories
    python benchmarks/check_reports.py --no-deploy --bench-max-params 20e6 --runs DIR...

The benchmark section is the report's own (eager and onnxruntime, batch 1 and 8, 0.3 s each, in
process); ``--bench-max-params`` turns it off for models above that size (their row says so),
``--no-deploy`` skips the deployment section (~10 s a model). Writes
``benchmarks/results/check_reports.md`` (``check_reports_runs.md`` with ``--runs``; and ``.json``); the HTML reports go to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _child(subject: str, out: str, bench: bool, deploy: bool, bench_max_params: float | None) -> dict[str, Any]:
    """Build and write one report (runs in the subprocess); returns the row as plain data."""
    import torch

    torch.set_num_threads(1)
    import archlab
    from archlab.report.document import build_report
    from archlab.report.output import write_report

    note = ""
    if bench and bench_max_params is not None and not Path(subject).exists():
        n = sum(p.numel() for p in archlab.create(subject, device="meta").parameters())
        if n > bench_max_params:
            bench, deploy = False, False
            note = (
                f"benchmark/deployment off by the checker: {n / 1e6:.1f} M parameters > {bench_max_params / 1e6:.0f} M"
            )
    rep = build_report(subject, bench=bench, deploy=deploy)
    write_report(rep, out)
    failed_rows = [
        f"{r.backend} b={r.batch_size}: {r.status} ({' '.join(str(r.reason).split())[:160]})"
        for r in (rep.bench.rows if rep.bench is not None else [])
        if not r.ok
    ]
    advisor_skip = (rep.rationale or {}).get("advisor_skipped")
    return {
        "skipped": dict(rep.skipped),
        "failed_bench_rows": failed_rows,
        "advisor_skipped": advisor_skip,
        "checker_note": note,
        "timings_s": rep.timings_s,
        "figures": len(rep.figures),
    }


def _one_line(text: str) -> str:
    """The last non-empty line of a traceback (the exception), clipped."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "no output")[:300]


def check(subject: str, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Report ``subject`` in a fresh subprocess; the row of the table."""
    stem = Path(subject).name if Path(subject).exists() else subject
    out = out_dir / f"{stem}.html"
    res_file = out_dir / f"{stem}.row.json"
    res_file.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        __file__,
        "--child",
        subject,
        str(out),
        str(res_file),
        "1" if not args.no_bench else "0",
        "1" if not (args.no_bench or args.no_deploy) else "0",
        str(args.bench_max_params or ""),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    row: dict[str, Any] = {"subject": subject}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env, cwd=ROOT)
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        if proc.returncode == 0 and res_file.is_file():
            row.update(json.loads(res_file.read_text()))
            row["status"] = "ok"
        else:
            row["status"] = "failed"
            row["error"] = _one_line(proc.stderr)
    except subprocess.TimeoutExpired:
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        row["status"] = "failed"
        row["error"] = f"timed out after {args.timeout:.0f} s"
    return row


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of ``rows``."""
    lines = [
        "| subject | status | wall s | skipped sections (why) | benchmark rows not run | other | options |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        skipped = "; ".join(f"**{k}**: {v}" for k, v in (r.get("skipped") or {}).items()) or "-"
        bench_rows = "; ".join(r.get("failed_bench_rows") or []) or "-"
        other = "; ".join(x for x in (r.get("checker_note"), r.get("advisor_skipped"), r.get("error")) if x) or "-"
        lines.append(
            f"| {r['subject']} | {r['status']} | {r['wall_s']} | {_md_cell(skipped)} | "
            f"{_md_cell(bench_rows)} | {_md_cell(other)} | {_md_cell(r.get('options', ''))} |"
        )
    return "\n".join(lines)


def _flags(args: argparse.Namespace) -> str:
    """The options that change what a row measures (the subjects are the table's first column)."""
    flags = [f"--timeout {args.timeout:g}"]
    flags += ["--no-bench"] if args.no_bench else ["--no-deploy"] if args.no_deploy else []
    if args.bench_max_params is not None and not args.no_bench:
        flags.append(f"--bench-max-params {args.bench_max_params:g}")
    return " ".join(flags)


def _merge(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This invocation's rows replace the same subjects' rows of an earlier table; the others stay."""
    if not path.is_file():
        return rows
    by_subject = {r["subject"]: r for r in json.loads(path.read_text())}
    by_subject.update({r["subject"]: r for r in rows})
    return sorted(by_subject.values(), key=lambda r: r["subject"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        subject, out, res_file, bench, deploy, max_p = sys.argv[2:8]
        row = _child(subject, out, bench == "1", deploy == "1", float(max_p) if max_p else None)
        Path(res_file).write_text(json.dumps(row))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="registry names (default: all of archlab.list_models())")
    ap.add_argument("--runs", nargs="+", default=[], help="run or design directories to report instead")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per subject")
    ap.add_argument("--no-bench", action="store_true", help="skip the benchmark and deployment sections")
    ap.add_argument("--no-deploy", action="store_true", help="skip the deployment section")
    ap.add_argument("--bench-max-params", type=float, default=None, help="no benchmark above this many parameters")
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/archlab_check_reports"))
    ap.add_argument("--table-only", action="store_true", help="only redraw the table from its .json")
    ap.add_argument("--md", type=Path, default=None, help="table file (default results/check_reports[_runs].md)")
    args = ap.parse_args()
    if args.table_only:
        subjects = []
    elif args.runs:
        subjects = list(args.runs)
    else:
        import archlab

        subjects = args.models or archlab.list_models()
    args.md = args.md or RESULTS / ("check_reports_runs.md" if args.runs else "check_reports.md")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in subjects:
        row = check(s, args.out_dir, args)
        print(f"{row['status']:6} {row['wall_s']:6.1f}s {s} {row.get('error', '')}", flush=True)
        rows.append(row)
    opts = _flags(args)
    for row in rows:
        row["options"] = opts
    rows = _merge(args.md.with_suffix(".json"), rows)
    on_runs = bool(args.runs) or args.md.stem.endswith("_runs")
    n_ok = sum(r["status"] == "ok" for r in rows)
    asked = "not measured: the report was built with"  # sections turned off by the command's options
    n_skip = sum(any(not v.startswith(asked) for v in (r.get("skipped") or {}).values()) for r in rows)
    commands = sorted({r.get("options", "") for r in rows})
    text = (
        f"# archlab report on {'run directories' if on_runs else 'registry names'}\n\n"
        "Each subject reported in a fresh subprocess (OMP threads 1), with: "
        + "; ".join(
            f"`python benchmarks/check_reports.py {c} {'--runs DIR...' if on_runs else '[NAME...]'}`" for c in commands
        )
        + " (the `options` column says which; `--table-only` redraws this table from the .json).\n\n"
        f"{n_ok}/{len(rows)} reports written; {n_skip} of them skip a section the command asked for, "
        "each with its stated reason.\n\n"
        f"{table(rows)}\n"
    )
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(text)
    args.md.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    print(f"{n_ok}/{len(rows)} ok; table in {args.md}")


if __name__ == "__main__":
    main()
