"""A real one-node SLURM cluster on 127.0.0.1, started and stopped by the tests.

Debian's ``slurm-wlm`` (slurmctld, slurmd, client tools) and ``munge`` are installed with
``apt-get update && apt-get install`` when they are missing: CI machines start bare, so the project's own
files have to install them (this needs root, as on our CI machines). Every file the cluster uses
(``slurm.conf``, ``gres.conf``, the munge key and socket, state, spool, logs, PID files) lives in one
temporary directory; the daemons listen on free, non-default ports and are stopped by PID.

The Snakemake SLURM executor strips every ``SLURM_*`` variable (``SLURM_CONF`` included) inside a job, so
the ``srun`` it calls there only finds the configuration at ``/etc/slurm/slurm.conf``. To leave the
machine's ``/etc`` alone, slurmd runs in a private mount namespace (``unshare -m``) in which the
temporary configuration directory is bind-mounted on ``/etc/slurm``; jobs inherit that namespace. Client
commands outside it (``sbatch``, ``squeue`` from Snakemake) find the configuration via ``SLURM_CONF``.

The node declares the CPUs, memory and GPUs of a typical GPU node (16 CPUs, 64 GB, two ``gres/gpu``
backed by stand-in device files such as ``/dev/null``) whatever the hardware (``SlurmdParameters=config_overrides``), so the requests
of ``workflow/profiles/slurm`` (``--gpus=1``, ``--cpus-per-task=8``, ``--mem=32000``) are schedulable
unchanged. Nothing is enforced (no cgroups) and no real device is bound; the tests cap concurrency with
Snakemake's ``jobs`` so the real load stays within the machine.

Command line (for trying it by hand)::

    python tests/slurm_cluster.py start DIR   # prints the SLURM_CONF to export
    python tests/slurm_cluster.py stop DIR

If the cluster cannot start, :class:`SlurmUnavailable` says exactly why (with the daemons' log tails).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

APT_PACKAGES = ("slurm-wlm", "munge")
REQUIRED_PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "srun")
PARTITION = "debug"
STATE_FILE = "cluster.json"

# Debian installs the daemons (munged, slurmctld, slurmd) in /usr/sbin, which a minimal PATH lacks.
for _sbin in ("/usr/sbin", "/sbin"):
    if _sbin not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + _sbin


class SlurmUnavailable(RuntimeError):
    """The local SLURM cluster could not be started; the message says why."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return f"   ({path.name} was not written)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"   {path.name}: {line}" for line in text)


def ensure_slurm_installed() -> None:
    """Install ``slurm-wlm`` and ``munge`` with apt-get unless their programs are already on PATH."""
    missing = [prog for prog in REQUIRED_PROGRAMS if shutil.which(prog) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable(
            f"SLURM programs {missing} are not installed and installing {' '.join(APT_PACKAGES)} "
            f"with apt-get needs root (this process runs as uid {os.geteuid()})"
        )
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"SLURM programs {missing} are not installed and there is no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SlurmUnavailable(
                f"`{' '.join(cmd)}` failed with exit status {proc.returncode}:\n{proc.stderr[-2000:]}"
            )
    still_missing = [prog for prog in REQUIRED_PROGRAMS if shutil.which(prog) is None]
    if still_missing:
        raise SlurmUnavailable(f"after apt-get install, {still_missing} are still not on PATH")


@dataclass
class LocalSlurm:
    """A running one-node cluster: its directory, the client environment and the daemons' PIDs."""

    root: Path
    nodename: str
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def conf_dir(self) -> Path:
        return self.root / "etc"

    @property
    def conf_file(self) -> Path:
        return self.conf_dir / "slurm.conf"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for client commands (``sbatch``, ``squeue``, snakemake) outside the namespace."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf_file)
        return env

    def run_client(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, env=self.client_env(), timeout=timeout)

    def save(self) -> None:
        state = {"root": str(self.root), "nodename": self.nodename, "pids": self.pids}
        (self.root / STATE_FILE).write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, root: Path) -> "LocalSlurm":
        state = json.loads((Path(root) / STATE_FILE).read_text())
        return cls(root=Path(state["root"]), nodename=state["nodename"], pids=state["pids"])

    def logs(self) -> str:
        """The last lines of each daemon's log file and captured output."""
        files = sorted(self.log_dir.glob("*.log")) + sorted(self.log_dir.glob("*.out"))
        return "\n".join(_tail(path, 12 if path.suffix == ".log" else 4) for path in files)

    def stop(self, grace_s: float = 10) -> None:
        """Cancel leftover jobs, then stop slurmd, slurmctld and munged by PID (TERM, then KILL)."""
        if "slurmctld" in self.pids and _alive(self.pids["slurmctld"]):
            try:
                self.run_client("scancel", "--full", f"--partition={PARTITION}", timeout=10)
                deadline = time.monotonic() + grace_s
                while time.monotonic() < deadline:
                    queue = self.run_client("squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING", timeout=10)
                    if queue.returncode != 0 or not queue.stdout.strip():
                        break
                    time.sleep(0.5)
            except (subprocess.TimeoutExpired, OSError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is not None:
                _terminate(pid, grace_s)
        if (self.root / STATE_FILE).exists():
            self.save()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0): reap it if it has exited.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _terminate(pid: int, grace_s: float) -> None:
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)


def _write_config(cluster: LocalSlurm, cpus: int, memory_mb: int, gpus: int) -> None:
    root = cluster.root
    for sub in ("etc", "log", "state", "spool", "munge"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    # munged insists that its socket directory is not writable by others and its key is private.
    os.chmod(root, 0o755)
    os.chmod(root / "munge", 0o755)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)

    host = socket.gethostname().split(".")[0]
    conf = f"""\
# One-node test cluster written by tests/slurm_cluster.py; not for production use.
ClusterName=dmrircnntest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={cluster.log_dir}/slurmctld.log
SlurmdLogFile={cluster.log_dir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
ReturnToService=2
# Keep finished jobs visible to squeue long enough for Snakemake's squeue-based status checks.
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
# Use the node description below, not the detected hardware (see the module docstring).
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={cluster.nodename} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} Gres=gpu:{gpus} State=UNKNOWN
PartitionName={PARTITION} Nodes={cluster.nodename} Default=YES MaxTime=INFINITE State=UP
"""
    cluster.conf_file.write_text(conf)
    # Stand-in GPU devices: slurmd wants one distinct device file per GPU; none of these is bound.
    stand_ins = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random"]
    if gpus > len(stand_ins):
        raise SlurmUnavailable(f"at most {len(stand_ins)} stand-in GPUs, asked for {gpus}")
    devices = ",".join(stand_ins[:gpus])
    (cluster.conf_dir / "gres.conf").write_text(f"NodeName={cluster.nodename} Name=gpu File={devices}\n")


def _spawn(cluster: LocalSlurm, name: str, cmd: list[str]) -> None:
    log = open(cluster.log_dir / f"{name}.out", "wb")
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=cluster.client_env(),
        start_new_session=True,
    )
    log.close()
    cluster.pids[name] = proc.pid
    cluster.save()


def _wait_for(cluster: LocalSlurm, what: str, check, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, pid in cluster.pids.items():
            if not _alive(pid):
                raise SlurmUnavailable(f"{name} (pid {pid}) exited while waiting for {what}:\n{cluster.logs()}")
        if check():
            return
        time.sleep(0.3)
    raise SlurmUnavailable(f"timed out after {timeout_s:.0f} s waiting for {what}:\n{cluster.logs()}")


def start(root: Path, cpus: int = 16, memory_mb: int = 64000, gpus: int = 2, timeout_s: float = 60) -> LocalSlurm:
    """Install if needed, configure in ``root`` and start munged, slurmctld and slurmd.

    Returns once ``sinfo`` reports the node idle. On any failure every daemon already started is
    stopped and :class:`SlurmUnavailable` is raised with the reason.
    """
    ensure_slurm_installed()
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"slurmd must run as root to launch jobs; this process runs as uid {os.geteuid()}")
    if shutil.which("unshare") is None:
        raise SlurmUnavailable("`unshare` (util-linux) is missing: slurmd needs a private mount namespace")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise SlurmUnavailable(f"cannot create a private mount namespace (`unshare -m true`): {probe.stderr.strip()}")

    root = Path(root).resolve()
    cluster = LocalSlurm(root=root, nodename="testnode")
    _write_config(cluster, cpus, memory_mb, gpus)
    # The bind mount needs a mount point; an empty /etc/slurm is what slurm-wlm itself creates.
    Path("/etc/slurm").mkdir(exist_ok=True)
    munge_dir = root / "munge"
    try:
        _spawn(
            cluster,
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={munge_dir}/munge.socket",
                f"--key-file={munge_dir}/munge.key",
                f"--pid-file={munge_dir}/munged.pid",
                f"--seed-file={munge_dir}/munged.seed",
                f"--log-file={cluster.log_dir}/munged.log",
            ],
        )
        _wait_for(cluster, "the munge socket", (munge_dir / "munge.socket").exists, 15)
        _spawn(cluster, "slurmctld", ["slurmctld", "-D", "-i", "-f", str(cluster.conf_file)])
        _wait_for(cluster, "slurmctld to answer", lambda: cluster.run_client("sinfo", "-h").returncode == 0, 30)
        # slurmd and every job step it launches see the test configuration at /etc/slurm.
        _spawn(
            cluster,
            "slurmd",
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                'mount --bind "$1" /etc/slurm && exec slurmd -D -N "$2" -f /etc/slurm/slurm.conf',
                "sh",
                str(cluster.conf_dir),
                cluster.nodename,
            ],
        )

        def node_idle() -> bool:
            out = cluster.run_client("sinfo", "-h", "-N", "-o", "%N %T")
            return out.returncode == 0 and f"{cluster.nodename} idle" in out.stdout

        _wait_for(cluster, f"sinfo to show node {cluster.nodename} idle", node_idle, timeout_s)
    except BaseException:
        cluster.stop(grace_s=3)
        raise
    return cluster


def slurm_fixture(tmp_path_factory):
    """Pytest fixture body: a running cluster for the session, or a skip that says why it could not start.

    Use as ``local_slurm = pytest.fixture(scope="session")(slurm_fixture)`` in a test module.
    """
    import pytest

    try:
        cluster = start(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as err:
        pytest.skip(f"SLURM could not start here: {err}")
    try:
        yield cluster
    finally:
        cluster.stop()


def submitted_job_ids(snakemake_output: str) -> list[str]:
    """SLURM job ids from Snakemake's "has been submitted with SLURM jobid N" lines."""
    import re

    return re.findall(r"submitted with SLURM jobid (\d+)", snakemake_output)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(f"usage: {argv[0]} start|stop DIR", file=sys.stderr)
        return 2
    root = Path(argv[2])
    if argv[1] == "start":
        root.mkdir(parents=True, exist_ok=True)
        try:
            cluster = start(root)
        except SlurmUnavailable as err:
            print(f"SLURM could not start: {err}", file=sys.stderr)
            return 1
        print(f"export SLURM_CONF={cluster.conf_file}")
        print(f"# daemons: {cluster.pids}; stop with: {argv[0]} stop {root}")
        return 0
    LocalSlurm.load(root).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
