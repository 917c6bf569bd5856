"""Shared machinery of the benchmarks: machine facts, timing, peak memory, tables, the original package.

Every measured case runs in a fresh child process so that its peak resident memory (``ru_maxrss`` of
that child, read with ``os.wait4``) belongs to it alone and no TensorFlow state leaks between cases.
A child reports its inner timings by printing one line ``BENCH_JSON {...}`` on stdout.

The original ``dmri-rcnn==0.4.2`` runs in its own environment (``make original-env``), under legacy
Keras (``TF_USE_LEGACY_KERAS=1``). It is only called, never copied.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
JSON_PREFIX = "BENCH_JSON "
GNU_TIME = "/usr/bin/time"

# Quiet TensorFlow in every child; the benchmarks are CPU-only.
CHILD_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONHASHSEED": "0"}


# ------------------------------------------------------------------------------------------ machine


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask; ``os.cpu_count()`` where unavailable)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def package_version(*names: str) -> str:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


#: Set by :func:`imitate_avx2` (the benchmarks' ``--imitate-avx2``).
IMITATING_AVX2 = False


def add_imitation_argument(parser) -> None:
    parser.add_argument("--imitate-avx2", action="store_true",
                        help="run every case as on a CPU with AVX2 + FMA and no AVX-512 (bench/README.md says how "
                        "close this comes)")


def imitate_avx2() -> None:
    """Run the children as on a CPU with AVX2 and FMA but no AVX-512, each package with its own defaults there.

    oneDNN is limited to AVX2 (``ONEDNN_MAX_CPU_ISA``) in every child. On such a CPU TensorFlow leaves its
    oneDNN kernels off by default, so the original package's children get ``TF_ENABLE_ONEDNN_OPTS=0``;
    ours switches them on itself (:func:`dmri_rcnn.core.precision.enable_onednn_by_default`) unless
    ``TF_ENABLE_ONEDNN_OPTS`` is set (``=0`` measures ours on TensorFlow's default Eigen kernels). bf16 is
    not imitated: TensorFlow would still see this CPU's bf16 units.
    """
    global IMITATING_AVX2
    IMITATING_AVX2 = True
    os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"


def machine_facts() -> dict[str, str]:
    """What a reader needs to compare numbers across machines (read without importing TensorFlow)."""
    flags = cpu_flags()
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{mem_kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        memory = "unknown"
    return {
        "cpu": cpu_model(),
        "cores": str(usable_cores()),
        "simd": (" ".join(simd) or "none reported") + (" (imitating AVX2 only)" if IMITATING_AVX2 else ""),
        "memory": memory,
        "python": platform.python_version(),
        "tensorflow": package_version("tensorflow", "tensorflow-cpu"),
        "keras": package_version("keras"),
        "load (1/5/15 min)": " ".join(f"{x:.2f}" for x in load),
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }


def print_machine_facts(file=None) -> str:
    facts = machine_facts()
    text = "Machine: " + "; ".join(f"{k} {v}" for k, v in facts.items())
    print(text, file=file or sys.stdout, flush=True)
    return text


# ------------------------------------------------------------------------------------------ timing


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


@dataclass
class ChildResult:
    """One child process: its wall time, peak RSS and the JSON it reported."""

    seconds: float
    peak_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str
    report: dict = field(default_factory=dict)
    cpu_seconds: float = float("nan")  #: user + system CPU time of the child: less sensitive to other load

    @property
    def peak_rss_gib(self) -> float:
        return self.peak_rss_bytes / 2**30

    def check(self, what: str) -> "ChildResult":
        if self.returncode != 0:
            tail = "\n".join((self.stdout + self.stderr).splitlines()[-30:])
            raise RuntimeError(f"{what} failed with exit code {self.returncode}:\n{tail}")
        return self


def run_child(
    argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None, timeout: float = 3600
) -> ChildResult:
    """Run ``argv`` in a fresh process; return wall seconds, its own peak RSS and any ``BENCH_JSON`` report.

    Linux carries a process's high-water RSS across ``exec``, so a child spawned straight from this
    process would report at least this process's own RSS. The command therefore runs under GNU
    ``/usr/bin/time``, a small process whose child's peak (``%M``) is that command's alone. Without it,
    ``wait4``'s ``ru_maxrss`` is used: exact whenever the child outgrows this (light) parent.
    """
    full_env = {**os.environ, **CHILD_ENV, **(env or {})}
    use_time = os.access(GNU_TIME, os.X_OK)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("w+", suffix=".maxrss") as maxrss_file:
        command = [GNU_TIME, "-f", "%M", "-o", maxrss_file.name, *argv] if use_time else list(argv)
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=full_env, cwd=cwd)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        # ru_maxrss and %M are in KiB on Linux (ru_maxrss in bytes on macOS).
        scale = 1 if sys.platform == "darwin" else 1024
        peak = int(usage.ru_maxrss) * scale
        if use_time:
            lines = Path(maxrss_file.name).read_text().split()
            if lines and lines[-1].isdigit():
                peak = int(lines[-1]) * 1024
    report = {}
    for line in stdout.splitlines():
        if line.startswith(JSON_PREFIX):
            report.update(json.loads(line[len(JSON_PREFIX) :]))
    return ChildResult(seconds, peak, proc.returncode, stdout, stderr, report,
                       usage.ru_utime + usage.ru_stime)


def emit(**values) -> None:
    """Called inside a child: report values to the parent (one ``BENCH_JSON`` line)."""
    print(JSON_PREFIX + json.dumps(values), flush=True)


# ------------------------------------------------------------------------------------------ environments


def our_python() -> str:
    """The interpreter running the benchmarks (the project's environment)."""
    return sys.executable


def our_env() -> dict[str, str]:
    """Environment for children running this checkout's package (``src/`` first on the path).

    ``$DMRI_RCNN_BENCH_SRC`` points the children at another checkout's ``src/`` (to compare branches).
    """
    src = os.environ.get("DMRI_RCNN_BENCH_SRC", str(REPO_ROOT / "src"))
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": src + (os.pathsep + path if path else ""), "TF_USE_LEGACY_KERAS": "0"}


def original_python() -> Path | None:
    """Interpreter of the original package's environment, or None if it is not built.

    ``$DMRI_RCNN_ORIGINAL_PYTHON`` wins; otherwise ``.venv-original/bin/python`` of this checkout, then of
    the main checkout a worktree belongs to (``make original-env`` builds it).
    """
    env_path = os.environ.get("DMRI_RCNN_ORIGINAL_PYTHON")
    candidates = [Path(env_path)] if env_path else []
    candidates.append(REPO_ROOT / ".venv-original" / "bin" / "python")
    try:
        common = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--path-format=absolute", "--git-common-dir"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        candidates.append(Path(common).parent / ".venv-original" / "bin" / "python")
    except (OSError, subprocess.CalledProcessError):
        pass
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return None


def original_env() -> dict[str, str]:
    """Environment for the original package: legacy Keras, and none of this checkout on the path."""
    env = {"TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": ""}
    if IMITATING_AVX2:
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"  # TensorFlow's own choice on a CPU without AVX-512
    return env


def require_original() -> Path | None:
    python = original_python()
    if python is None:
        print(
            "The original dmri-rcnn==0.4.2 environment is missing: run `make original-env` "
            "(or set DMRI_RCNN_ORIGINAL_PYTHON); its columns are left empty.",
            file=sys.stderr,
        )
    return python


def run_python(python: str | os.PathLike, script: str, args: Sequence[str] = (), env=None, **kwargs) -> ChildResult:
    """Run Python source ``script`` with interpreter ``python`` in a fresh process (see :func:`run_child`)."""
    return run_child([str(python), "-c", script, *map(str, args)], env=env, **kwargs)


def run_bench_child(module: str, call: str, label: str, python=None, env=None) -> ChildResult | None:
    """Run ``module.call`` (a call of a function of ``bench/module.py``, as source) in a fresh process.

    ``python``/``env`` default to ours. A failed child prints ``<label> failed: <its last stderr line>``
    to stderr and gives None, so one broken case does not stop a table.
    """
    script = f"import sys; sys.path.insert(0, {str(BENCH_DIR)!r}); import {module}; {module}.{call}"
    result = run_python(python or our_python(), script, env=our_env() if env is None else env)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"{label} failed: {last}", file=sys.stderr)
        return None
    return result


# ------------------------------------------------------------------------------------------ tables


def fmt(value, digits: int = 3) -> str:
    """Numbers with ``digits`` significant figures; None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if value != value:  # NaN
        return "—"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10 ** digits:
        return f"{value:.0f}"
    if magnitude < 1e-3:
        return f"{value:.2e}"
    return f"{value:.{digits}g}"


class Table:
    """A results table printed as plain text and written as Markdown and TSV under ``bench/results/``."""

    def __init__(self, name: str, title: str, columns: Sequence[str]):
        self.name, self.title, self.columns = name, title, list(columns)
        self.rows: list[list[str]] = []
        self.notes: list[str] = []

    def add(self, *values) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"{self.name}: {len(values)} values for {len(self.columns)} columns")
        self.rows.append([fmt(v) for v in values])

    def note(self, text: str) -> None:
        self.notes.append(text)

    def text(self) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c) for i, c in enumerate(self.columns)]
        line = "  ".join(c.ljust(w) for c, w in zip(self.columns, widths))
        body = ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in self.rows]
        rule = "-" * len(line)
        return "\n".join([self.title, rule, line, rule, *body, rule, *self.notes])

    def markdown(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|"
        body = ["| " + " | ".join(r) + " |" for r in self.rows]
        notes = [f"\n{n}" for n in self.notes]
        return "\n".join([f"### {self.title}", "", head, sep, *body, *notes]) + "\n"

    def tsv(self) -> str:
        return "\n".join("\t".join(r) for r in [self.columns, *self.rows]) + "\n"

    def show(self, write: bool = True) -> None:
        print("\n" + self.text() + "\n", flush=True)
        if write:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            facts = "Machine: " + "; ".join(f"{k} {v}" for k, v in machine_facts().items())
            (RESULTS_DIR / f"{self.name}.md").write_text(self.markdown() + "\n" + facts + "\n")
            (RESULTS_DIR / f"{self.name}.tsv").write_text(self.tsv())


def ratio(ours, original):
    """ours / original, or None when either is missing."""
    if ours is None or original is None or original == 0:
        return None
    return ours / original
