"""Issue 11, cases 7-14 and the warnings: every command answers bad input with one line and a documented
exit status, writes nothing, and keeps TensorFlow's start-up noise to itself.

The commands run as a user runs them: the installed console scripts in a subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bad_input_files import AFFINE, command, write_context_scan
from dmri_rcnn.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, InputError


def listing(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def expect_one_line(proc, status: int, *fragments: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Weights files of the 1D model (full and half width) and an original-format checkpoint."""
    from dmri_rcnn.core.model import get_1d_autoencoder
    from dmri_rcnn.core.weights import save_model_weights, save_original_checkpoint

    folder = tmp_path_factory.mktemp("weights")
    model = get_1d_autoencoder()
    half = get_1d_autoencoder(width=0.5)
    return {
        "h5": save_model_weights(model, folder / "one_d.weights.h5"),
        "half": save_model_weights(half, folder / "one_d_half.weights.h5"),
        "checkpoint": Path(save_original_checkpoint(model, folder / "ck" / "weights")),
        "n_arrays": len(model.weights),
        "n_params": int(sum(np.prod(w.shape) for w in model.weights)),
        "n_params_half": int(sum(np.prod(w.shape) for w in half.weights)),
    }


@pytest.fixture
def scan(tmp_path):
    write_context_scan(tmp_path)
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.uniform(500, 2000, (10, 10, 10, 6)).astype(np.float32), AFFINE), tmp_path / "plain.nii")
    return tmp_path


def rcnn(folder: Path, weights_file, *extra, **change) -> list[str]:
    files = {"-dmri_in": "dmri.nii.gz", "-bvec_in": "bvec_in", "-bvec_out": "bvec_out", "-mask": "mask.nii.gz",
             "-dmri_out": "out.nii.gz", **change}
    argv = command("run_dmri_rcnn.py")
    for flag, name in files.items():
        argv += [flag, str(folder / name)]
    return argv + ["-s", "1000", "-m", "1", "--weights", str(weights_file), "--no-progress", *extra]


def sh(folder: Path, *extra, **change) -> list[str]:
    files = {"-dmri_in": "dmri.nii.gz", "-bvec_in": "bvec_in", "-bvec_out": "bvec_out", "-dmri_out": "out.nii.gz", **change}
    argv = command("dmri_rcnn_sh_baseline.py")
    for flag, name in files.items():
        argv += [flag, str(folder / name)]
    return argv + list(extra)


def plot(folder: Path, **change) -> list[str]:
    files = {"-dmri_in": "dmri.nii.gz", "-reference": "dmri.nii.gz", "-out": "out.png", **change}
    argv = command("dmri_rcnn_plot.py")
    for flag, name in files.items():
        argv += [flag, str(folder / name)]
    return argv


def run(argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)


# ------------------------------------------------------------------ 7. damaged NIfTI files


def _truncate_gz(folder):
    data = (folder / "dmri.nii.gz").read_bytes()
    (folder / "bad.nii.gz").write_bytes(data[: len(data) // 3])
    return "bad.nii.gz", "truncated or corrupt"


def _damage_gz(folder):
    data = bytearray((folder / "dmri.nii.gz").read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 40):
        data[i] ^= 0x5A
    (folder / "bad.nii.gz").write_bytes(bytes(data))
    return "bad.nii.gz", "truncated or corrupt"


def _truncate_nii(folder):
    data = (folder / "plain.nii").read_bytes()
    (folder / "bad.nii").write_bytes(data[: len(data) - 5000])
    return "bad.nii", "truncated or corrupt"


@pytest.mark.parametrize("damage", [_truncate_gz, _damage_gz, _truncate_nii], ids=["truncated-gz", "damaged-gz", "truncated-nii"])
@pytest.mark.parametrize("tool", ["run_dmri_rcnn", "sh_baseline", "plot"])
def test_case7_damaged_nifti_one_line_naming_flag_and_file(scan, weights, damage, tool):
    name, reason = damage(scan)
    argv = {"run_dmri_rcnn": rcnn(scan, weights["h5"], **{"-dmri_in": name}), "sh_baseline": sh(scan, **{"-dmri_in": name}),
            "plot": plot(scan, **{"-dmri_in": name})}[tool]
    before = listing(scan)
    line = expect_one_line(run(argv), EXIT_BAD_INPUT, "-dmri_in", str(scan / name), reason)
    assert "error: " in line
    assert listing(scan) == before


# ------------------------------------------------------------------ 8. damaged weights


def test_case8_truncated_checkpoint_shard(scan, weights, tmp_path_factory):
    folder = tmp_path_factory.mktemp("truncated_ck")
    source = weights["checkpoint"]
    (folder / "weights.index").write_bytes(source.with_name("weights.index").read_bytes())
    shard = source.with_name("weights.data-00000-of-00001").read_bytes()
    (folder / "weights.data-00000-of-00001").write_bytes(shard[: len(shard) // 4])
    expect_one_line(run(rcnn(scan, folder / "weights")), EXIT_BAD_INPUT, f"{folder / 'weights'}: cannot read variable",
                    "truncated or corrupt checkpoint")
    assert not (scan / "out.nii.gz").exists()


def test_case8_corrupt_weights_h5_names_the_file(scan, weights, tmp_path):
    corrupt = tmp_path / "corrupt.weights.h5"
    corrupt.write_bytes(weights["h5"].read_bytes()[:50000])
    expect_one_line(run(rcnn(scan, corrupt)), EXIT_BAD_INPUT, f"{corrupt}: cannot read this .weights.h5 file")
    assert not (scan / "out.nii.gz").exists()


# ------------------------------------------------------------------ 9./10. unwritable outputs


@pytest.mark.parametrize("where", ["read-only-folder", "file-as-folder"])
def test_case9_sh_and_plot_unwritable_output(scan, where):
    if where == "read-only-folder":  # /proc refuses new files even to root
        out_sh, out_png, fragment = "/proc/sh_out.nii.gz", "/proc/cmp.png", "cannot write in folder /proc"
    else:
        (scan / "afile").write_text("x")
        out_sh, out_png, fragment = str(scan / "afile" / "o.nii.gz"), str(scan / "afile" / "o.png"), "is a file, not a folder"
    before = listing(scan)
    argv = sh(scan)
    argv[argv.index("-dmri_out") + 1] = out_sh
    expect_one_line(run(argv), EXIT_BAD_INPUT, f"-dmri_out {out_sh}", fragment)
    argv = plot(scan)
    argv[argv.index("-out") + 1] = out_png
    expect_one_line(run(argv), EXIT_BAD_INPUT, f"-out {out_png}", fragment)
    assert listing(scan) == before


def test_case10_unwritable_output_found_before_the_model_under_the_users_name(scan, weights):
    argv = rcnn(scan, scan / "missing.weights.h5")  # the weights would fail too, but later
    argv[argv.index("-dmri_out") + 1] = "/proc/inferred.nii.gz"
    proc = run(argv)
    expect_one_line(proc, EXIT_BAD_INPUT, "-dmri_out /proc/inferred.nii.gz: cannot write in folder /proc")
    assert "Model parameters selected" not in proc.stdout  # refused before anything else


def test_case10_atomic_writer_reports_the_target_not_its_temporary_name():
    from dmri_rcnn.utils import atomic_path

    with pytest.raises(InputError) as caught:
        with atomic_path("/proc/inferred.nii.gz"):
            pass
    assert str(caught.value).startswith("/proc/inferred.nii.gz: cannot write there")
    assert ".tmp" not in str(caught.value)


# ------------------------------------------------------------------ 11. Ctrl-C and killed writers


def test_case11_ctrl_c_one_line_exit_130_nothing_written(scan, weights):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(rcnn(scan, weights["h5"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = ""
    while "Model parameters selected" not in seen:  # inputs read; now loading TensorFlow and the model
        line = proc.stdout.readline()
        assert line, f"command ended early: {proc.stderr.read()}"
        seen += line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert err.strip().splitlines() == ["run_dmri_rcnn.py: interrupted; no output written"]
    assert not [p.name for p in scan.iterdir() if p.name.startswith(".") or p.name.startswith("out")]


def test_case11_stale_temporary_of_a_killed_writer_is_removed_by_the_next_run(scan):
    from dmri_rcnn.utils import _host

    # a writer killed with SIGKILL in the middle of writing out.nii.gz cannot clean up after itself
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from dmri_rcnn.utils import atomic_path\n"
         f"with atomic_path({str(scan / 'out.nii.gz')!r}) as tmp:\n"
         "    tmp.write_bytes(b'half-written'); print(tmp, flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )
    stale = Path(writer.stdout.readline().strip())
    writer.kill()
    writer.wait()
    assert stale.exists() and stale.name.startswith(f".out.{_host()}-{writer.pid}.")
    alive = scan / f".out.{_host()}-{os.getpid()}.w0rk1ng0.tmp.nii.gz"  # a writer that is still running
    alive.write_bytes(b"in progress")
    other = scan / ".unrelated.tmp.nii.gz"
    other.write_bytes(b"someone else's")
    proc = run(sh(scan, "-smooth", "0.01"))  # the next run writing the same file
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()
    assert alive.exists() and other.exists()
    assert nib.load(scan / "out.nii.gz").shape == (10, 10, 10, 4)


# ------------------------------------------------------------------ 12. weights of another architecture


@pytest.mark.parametrize("which", ["other-model", "reduced-width"])
def test_case12_weights_of_another_architecture_one_line(scan, weights, which):
    if which == "other-model":  # 1D weights into the 3D model
        argv = rcnn(scan, weights["h5"])
        argv[argv.index("-m") + 1] = "3"
        expected = f"found a 1D model ({weights['n_arrays']} arrays, {weights['n_params']:,} parameters)"
        fragments = ("expected the 3D model", expected)
    else:
        argv = rcnn(scan, weights["half"])
        fragments = ("expected the 1D model", f"{weights['n_params']:,} parameters), found a 1D model of another width",
                     f"{weights['n_params_half']:,} parameters")
    line = expect_one_line(run(argv), EXIT_BAD_INPUT, "weights of another architecture", *fragments)
    assert "UserWarning" not in line
    assert not (scan / "out.nii.gz").exists()


# ------------------------------------------------------------------ 13. quiet start-up


def test_case13_successful_run_prints_nothing_on_stderr(scan, weights):
    proc = run(rcnn(scan, weights["h5"]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no oneDNN / absl / CPU-feature notices
    assert "Wrote" in proc.stdout
    assert nib.load(scan / "out.nii.gz").shape == (10, 10, 10, 4)


# ------------------------------------------------------------------ 14. one exit-status convention


def test_case14_every_command_uses_the_same_exit_statuses(scan, weights):
    missing = {"-dmri_in": "missing.nii.gz"}
    for argv in (rcnn(scan, weights["h5"], **missing), sh(scan, **missing), plot(scan, **missing)):
        expect_one_line(run(argv), EXIT_BAD_INPUT, "missing.nii.gz")
    for name in ("run_dmri_rcnn.py", "dmri_rcnn_sh_baseline.py", "dmri_rcnn_plot.py"):
        proc = run(command(name) + ["-no_such_flag"])  # argparse's own errors use the same status
        assert proc.returncode == EXIT_BAD_INPUT and "Traceback" not in proc.stderr
    page = (Path(__file__).resolve().parents[1] / "docs" / "guide" / "errors.md").read_text()
    assert page.startswith("# Errors and exit status")
    for status in (EXIT_BAD_INPUT, EXIT_INTERRUPTED, 1):
        assert f"| {status} |" in page


# ------------------------------------------------------------------ warnings


def test_warning_mask_affine_differs(scan, weights):
    mask = nib.load(scan / "mask.nii.gz")
    shifted = AFFINE.copy()
    shifted[:3, 3] = [5.0, 0.0, 0.0]
    nib.save(nib.Nifti1Image(np.asarray(mask.dataobj), shifted), scan / "mask.nii.gz")
    proc = run(rcnn(scan, weights["h5"]))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_dmri_rcnn.py: warning: -mask"), proc.stderr
    assert "affine differs from the dMRI's by up to 5 mm" in lines[0]
    assert (scan / "out.nii.gz").exists()


@pytest.mark.parametrize("factor, fragment", [(1e-3, "times the b=1000 scale constant 4000"), (-1.0, "negative signal value")])
def test_warning_signal_scale_far_from_the_models(scan, weights, factor, fragment):
    data = nib.load(scan / "dmri.nii.gz").get_fdata(dtype=np.float32) * factor
    nib.save(nib.Nifti1Image(data, AFFINE), scan / "dmri.nii.gz")
    proc = run(rcnn(scan, weights["h5"]))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_dmri_rcnn.py: warning: -dmri_in"), proc.stderr
    assert fragment in lines[0]
    if factor > 0:
        assert "use -c -n" in lines[0]


def test_case11_ctrl_c_swallowed_by_library_code_still_writes_nothing(tmp_path, monkeypatch):
    """Some libraries catch every exception; a Ctrl-C they swallow must still stop the output."""
    import dmri_rcnn.utils
    from dmri_rcnn.cli._command import run_command
    from dmri_rcnn.utils import atomic_path

    monkeypatch.setattr(dmri_rcnn.utils._Interrupt, "requested", False)
    target = tmp_path / "out.txt"

    def main(argv):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered to this process
        except BaseException:  # library code that swallows it
            pass
        with atomic_path(target) as tmp:
            tmp.write_text("result")
        return 0

    assert run_command(main, [], "tool") == EXIT_INTERRUPTED
    assert list(tmp_path.iterdir()) == []
