"""A real S3-compatible server on 127.0.0.1 for the tests: moto's standalone ``moto_server``.

:func:`start_moto_server` starts it on a free port and waits until it answers; :func:`stop_server`
stops it by PID. :func:`write_hcp_subject` writes a small subject in the HCP layout
(``{subject}/T1w/Diffusion/{data.nii.gz,bvals,bvecs,nodif_brain_mask.nii.gz}``) and
:func:`upload_folder` puts a folder into a bucket under a key prefix, as the HCP bucket holds it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Credentials moto accepts (any non-empty pair works); tests put them in the environment only.
ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"
HCP_FILE_NAMES = ("data.nii.gz", "bvals", "bvecs", "nodif_brain_mask.nii.gz")


@dataclass
class S3Server:
    """A running moto server: its endpoint URL and PID."""

    endpoint_url: str
    pid: int
    log_path: Path

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def credentials_env(self) -> dict[str, str]:
        """Variables through which the workflow's S3 storage reaches this server (never in config)."""
        return {
            "SNAKEMAKE_STORAGE_S3_ACCESS_KEY": ACCESS_KEY,
            "SNAKEMAKE_STORAGE_S3_SECRET_KEY": SECRET_KEY,
            "SNAKEMAKE_STORAGE_S3_ENDPOINT_URL": self.endpoint_url,
        }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto_server(log_dir: Path, timeout_s: float = 30) -> S3Server:
    """Start ``moto_server -H 127.0.0.1 -p PORT`` and return once it answers HTTP requests."""
    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(exe).exists():
        raise RuntimeError("moto_server is not installed: pip install 'moto[server]' (the `test` extra)")
    port = _free_port()
    log_path = Path(log_dir) / "moto_server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = S3Server(endpoint_url=f"http://127.0.0.1:{port}", pid=proc.pid, log_path=log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"moto_server did not answer on port {port} within {timeout_s} s")


def stop_server(server: S3Server, grace_s: float = 10) -> None:
    """Stop the server by its PID (TERM, then KILL) and reap it."""
    try:
        os.kill(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(server.pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.1)
    os.kill(server.pid, signal.SIGKILL)
    os.waitpid(server.pid, 0)


def write_hcp_subject(folder: Path, seed: int, shape=(12, 12, 8), n_per_shell: int = 12) -> None:
    """Write a small random subject in HCP's T1w/Diffusion file layout (not meant to look like a brain).

    Parameters
    ----------
    folder : Path
        The subject's ``T1w/Diffusion`` folder; created.
    seed : int
        Seed of the random signal and directions.
    shape : tuple of int
        Spatial size (i, j, k) in voxels.
    n_per_shell : int
        Directions per shell at b = 1000, 2000 and 3000 s/mm² (plus 2 b0 volumes).
    """
    import nibabel as nib

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    bvals = np.concatenate([[5, 5], np.repeat([1000, 2000, 3000], n_per_shell)]).astype(float)
    dirs = rng.normal(size=(3, bvals.size))
    dirs /= np.linalg.norm(dirs, axis=0)
    dirs[:, :2] = 0.0
    dmri = rng.uniform(100, 3000, size=(*shape, bvals.size)).astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    mask[2:-2, 2:-2, 1:-1] = 1
    affine = np.diag([1.25, 1.25, 1.25, 1.0])
    nib.save(nib.Nifti1Image(dmri, affine), folder / "data.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), folder / "nodif_brain_mask.nii.gz")
    np.savetxt(folder / "bvals", bvals[None], fmt="%d")
    np.savetxt(folder / "bvecs", dirs, fmt="%.6f")


def upload_folder(server: S3Server, bucket: str, folder: Path, prefix: str) -> list[str]:
    """Upload every file under ``folder`` to ``s3://bucket/prefix/<relative path>``; return the keys."""
    client = server.client()
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)
    keys = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        key = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}"
        client.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys
