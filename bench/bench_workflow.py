#!/usr/bin/env python
"""Wall time of the default study per Snakemake rule, from the workflow's benchmark files.

    python bench/bench_workflow.py [--dir .]        # after `make study`

Every rule of the workflow writes ``benchmarks/<rule>/<wildcards>.tsv`` (Snakemake's ``benchmark:``
directive: seconds, peak RSS in MB, CPU time, ...). This sums the seconds of all jobs of each rule,
reports the total and the three slowest rules. It reads what a finished run left; it runs nothing.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def read_benchmarks(root: Path) -> dict[str, dict]:
    """{rule: {"jobs", "seconds", "cpu_seconds", "max_rss_mb"}} from ``root/benchmarks/<rule>/**/*.tsv``."""
    rules: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "seconds": 0.0, "cpu_seconds": 0.0, "max_rss_mb": 0.0})
    folder = root / "benchmarks"
    for path in sorted(folder.rglob("*.tsv")):
        rule = path.relative_to(folder).parts[0]
        if rule.endswith(".tsv"):  # a flat benchmarks/<name>.tsv: the file names the job
            rule = rule[: -len(".tsv")]
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                entry = rules[rule]
                entry["jobs"] += 1
                entry["seconds"] += _number(row.get("s"))
                entry["cpu_seconds"] += _number(row.get("cpu_time"))
                entry["max_rss_mb"] = max(entry["max_rss_mb"], _number(row.get("max_rss")))
    return dict(rules)


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):  # Snakemake writes "-" where it could not measure
        return 0.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--dir", default=str(common.REPO_ROOT),
                        help="folder the study ran in (holding benchmarks/); default: this checkout")
    args = parser.parse_args(argv)
    root = Path(args.dir)
    rules = read_benchmarks(root)
    if not rules:
        print(f"No Snakemake benchmark files under {root / 'benchmarks'}: run the study first (`make study`, "
              "minutes on CPU), or point --dir at the folder it ran in.")
        return None
    total = sum(r["seconds"] for r in rules.values())
    table = common.Table("workflow", f"Default study, wall time per rule (benchmarks under {root})",
                         ["rule", "jobs", "seconds (sum)", "share", "CPU s (sum)", "max RSS MB"])
    ordered = sorted(rules.items(), key=lambda item: item[1]["seconds"], reverse=True)
    for rule, entry in ordered:
        table.add(rule, entry["jobs"], entry["seconds"], f"{100 * entry['seconds'] / total:.0f} %" if total else "—",
                  entry["cpu_seconds"], entry["max_rss_mb"])
    table.add("total", sum(r["jobs"] for r in rules.values()), total, "100 %",
              sum(r["cpu_seconds"] for r in rules.values()), max(r["max_rss_mb"] for r in rules.values()))
    slowest = ", ".join(f"{rule} ({entry['seconds']:.0f} s)" for rule, entry in ordered[:3])
    table.note(f"Three slowest rules: {slowest}. Seconds are summed over jobs; jobs that ran in parallel "
               "overlap, so the sum can exceed the run's wall time.")
    table.show()
    return rules


if __name__ == "__main__":
    main()
