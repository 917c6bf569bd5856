"""The benchmark machinery measures what it claims: FLOP table, per-child peak memory, tables, workflow sums."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench_hcp_inference  # noqa: E402
import bench_workflow  # noqa: E402
import hcp_rehearsal_costs  # noqa: E402
import common  # noqa: E402
import flops  # noqa: E402


@pytest.mark.parametrize("model_dim", [3, 1])
def test_flop_table_matches_the_published_and_built_models(model_dim):
    from dmri_rcnn.core.model import get_autoencoder

    assert flops.parameter_count(model_dim) == flops.PUBLISHED_PARAMETERS[model_dim]
    assert get_autoencoder(model_dim).count_params() == flops.parameter_count(model_dim)


def _macs_per_voxel_of_built_model(part) -> int:
    """Multiply-accumulates per voxel and q-step, read off the Keras model's own kernels.

    Every kernel (convolutions: (k, k, k, c_in, c_out); the ConvLSTM's input and recurrent kernels) does
    one multiply-add per weight and voxel; biases and normalisations are not counted, as in ``flops``.
    """
    return sum(int(np.prod(w.shape)) for w in part.weights if w.path.split("/")[-1] in ("kernel", "recurrent_kernel"))


@pytest.mark.parametrize("model_dim", [3, 1])
def test_flop_count_is_the_built_models(model_dim):
    from dmri_rcnn.core.model import get_autoencoder

    model = get_autoencoder(model_dim)
    encoder = _macs_per_voxel_of_built_model(model.get_layer("encoder"))
    decoder = _macs_per_voxel_of_built_model(model.get_layer("decoder"))
    assert flops.encoder_flops_per_step(model_dim) == 2 * 1000 * encoder
    assert flops.decoder_flops_per_step(model_dim) == 2 * 1000 * decoder
    # 20³ fully masked = 8 patches of 10³, predicting 84 directions from 6 (the reference case of docs/results.md)
    assert flops.patches_touching(np.ones((20, 20, 20))) == 8
    assert flops.model_flops(model_dim, 8, 6, 84) == 8 * 2 * 1000 * (6 * encoder + 84 * decoder)


def test_patches_touching_uses_central_padding():
    mask = np.zeros((25, 10, 10), bool)
    mask[0, 0, 0] = True  # padded by 2 before along i: falls in the first block
    mask[24, 9, 9] = True  # padded by 3 after: the third block
    assert flops.patches_touching(mask) == 2


def test_child_peak_rss_is_the_childs_own():
    small = common.run_python(sys.executable, "print('hi')").check("small child")
    big = common.run_python(
        sys.executable,
        "import numpy as np; a = np.ones(300 * 2**20 // 8); print(a.sum())",
    ).check("big child")
    assert big.peak_rss_bytes - small.peak_rss_bytes > 250 * 2**20
    assert small.peak_rss_bytes < 200 * 2**20
    assert big.seconds > 0 and big.cpu_seconds > 0


def test_child_report_and_failure():
    result = common.run_python(sys.executable, f"import sys; sys.path.insert(0, {str(BENCH)!r}); "
                               "import common; common.emit(x=1.5, label='a')")
    assert result.report == {"x": 1.5, "label": "a"}
    failed = common.run_python(sys.executable, "raise SystemExit(3)")
    with pytest.raises(RuntimeError, match="exit code 3"):
        failed.check("failing child")


def test_table_text_markdown_tsv(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    table = common.Table("demo", "Demo", ["name", "seconds"])
    table.add("ours", 1.23456)
    table.add("original", None)
    table.note("a note")
    table.show()
    assert "ours         1.23" in table.text()
    markdown = (tmp_path / "demo.md").read_text()
    assert "| ours | 1.23 |" in markdown and "| original | — |" in markdown and "Machine: cpu" in markdown
    assert (tmp_path / "demo.tsv").read_text().splitlines()[1] == "ours\t1.23"


def test_workflow_sums_snakemake_benchmark_files(tmp_path, capsys):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rule, name, seconds, rss in (("train_model", "m1", 100.0, 900), ("train_model", "m2", 50.5, 1200),
                                     ("infer", "s1/b1000/rcnn", 20.0, 700), ("autocrop", "s1", 1.0, "-")):
        path = tmp_path / "benchmarks" / rule / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"{seconds}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t50\t{seconds / 2}\n")
    rules = bench_workflow.read_benchmarks(tmp_path)
    assert rules["train_model"]["jobs"] == 2 and rules["train_model"]["seconds"] == pytest.approx(150.5)
    assert rules["train_model"]["max_rss_mb"] == 1200 and rules["autocrop"]["max_rss_mb"] == 0
    monkeypatch_dir = tmp_path / "results"
    common.RESULTS_DIR, saved = monkeypatch_dir, common.RESULTS_DIR
    try:
        bench_workflow.main(["--dir", str(tmp_path)])
    finally:
        common.RESULTS_DIR = saved
    out = capsys.readouterr().out
    assert "Three slowest rules: train_model (150 s), infer (20 s), autocrop (1 s)" in out


def test_workflow_without_benchmarks_says_so(tmp_path, capsys):
    assert bench_workflow.main(["--dir", str(tmp_path)]) is None
    assert "No Snakemake benchmark files" in capsys.readouterr().out


def test_training_config_batch_carries_the_mask_slot_of_the_masked_loss():
    import bench_training_config

    (context, bvec_in, bvec_out), target = bench_training_config.random_masked_batch(3)
    assert context.shape == (3, 6, 10, 10, 10) and bvec_in.shape == (3, 6, 3) and bvec_out.shape == (3, 10, 3)
    assert target.shape == (3, 11, 10, 10, 10)
    assert set(np.unique(target[:, -1])) == {0.0, 1.0}  # the last slot is a brain mask
    assert np.allclose(np.linalg.norm(bvec_out, axis=-1), 1.0, atol=1e-6)


def test_hcp_block_is_aligned_to_the_patch_grid_and_inside_the_brain():
    mask = np.zeros(bench_hcp_inference.HCP_SHAPE, np.uint8)
    mask[20:125, 25:150, 20:125] = 1
    block = bench_hcp_inference.central_block(mask, (3, 2, 1))
    assert flops.patches_touching(block) == 6
    assert block.sum() == 6 * 1000  # whole patches, all brain


def test_rehearsal_costs_from_benchmark_files_and_paper_extrapolation(tmp_path, capsys):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rule, name, seconds, rss in (("evaluate", "hcp04/b1000_q6/SH", 300.0, 5000), ("evaluate", "hcp05/b1000_q6/SH", 10.0, 900),
                                     ("autocrop", "hcp01", 100.0, "-"), ("infer", "hcp05/b1000_q6/3D", 50.0, 900),
                                     ("predict_sh_baseline", "hcp05/b1000_q6/SH", 9.0, 900), ("plot_fa_maps", "fa", 4.0, 500)):
        path = tmp_path / "benchmarks" / rule / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"{seconds}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t50\t{seconds / 2}\n")
    (tmp_path / "du.log").write_text("1 1000000 results/preprocessed/hcp01\n2 2000000 results/preprocessed/hcp01\n")
    jobs = hcp_rehearsal_costs.paper_jobs()
    assert jobs["train_model"] == 11 and jobs["infer"] == 5 * 13 and jobs["evaluate"] == 5 * 23
    common.RESULTS_DIR, saved = tmp_path / "results", common.RESULTS_DIR
    try:
        measured, paper = hcp_rehearsal_costs.main(["--dir", str(tmp_path)])
    finally:
        common.RESULTS_DIR = saved
    out = capsys.readouterr().out
    # whole-brain jobs only (hcp05 is the slab), CPU seconds (half the wall seconds here) × the paper's 115 jobs
    assert ["evaluate", "115", "150 s", common.fmt(150.0 * 115 / 3600)] == next(r for r in paper.rows if r[0] == "evaluate")[:4]
    autocrop = next(r for r in measured.rows if r[0] == "autocrop")
    assert autocrop[5] == common.fmt(None) and autocrop[6] == common.fmt(2.048)
    assert "6.3 TFLOP/s" in out
    # a rule seen only on the slab-cut test subject is not extrapolated (nor is infer: it comes from FLOPs)
    sh = next(r for r in paper.rows if r[0] == "predict_sh_baseline")
    assert sh[2] == "—" and "only on the slab" in sh[4]
    # the example-subject figures draw the (slab) test subject even though their job names no subject
    fa = next(r for r in paper.rows if r[0] == "plot_fa_maps")
    assert fa[2] == "—" and "only on the slab" in fa[4]
    # wall seconds on request
    common.RESULTS_DIR = tmp_path / "results"
    try:
        _, paper_wall = hcp_rehearsal_costs.main(["--dir", str(tmp_path), "--seconds", "wall"])
    finally:
        common.RESULTS_DIR = saved
    assert next(r for r in paper_wall.rows if r[0] == "evaluate")[2] == "300 s"


def test_evaluate_memory_bench_runs_every_step_on_a_small_subject(tmp_path, monkeypatch):
    import bench_evaluate_memory

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    table = bench_evaluate_memory.main(["--shape", "16", "18", "14", "--fa-methods", "2", "--work", str(tmp_path / "work")])
    assert [row[0] for row in table.rows] == ["evaluate", "fa_maps", "slices"]
    assert [row[1] for row in table.rows] == ["1", "2", "2"]
    assert all(float(row[5]) > 0.05 for row in table.rows)  # peak RSS in GiB: at least the interpreter
    header, *rows = (tmp_path / "work" / "evaluate_out" / "metrics.tsv").read_text().splitlines()
    assert header.split("\t")[:5] == ["subject", "method", "shell", "q_in", "mae"] and len(rows) == 1
    assert (tmp_path / "work" / "fa_maps_out" / "fa.png").stat().st_size > 0
    assert (tmp_path / "results" / "evaluate_memory.tsv").exists()


def test_training_profile_sorts_ops_by_kind():
    import profile_training_step

    kind = profile_training_step.op_kind
    backward_filter = "gradient_tape/rcnn_3d/decoder/dcv21_conv/convolution/Conv3DBackpropFilterV2"
    assert kind(backward_filter, "_MklNativeConv3DBackpropFilterV2") == "convolution backward"
    assert kind("rcnn_3d/decoder/dcv11_conv/BiasAdd", "_MklNativeFusedConv3D") == "convolution"
    assert kind("rcnn_1d/encoder/ecv21_norm/moments/SquaredDifference", "SquaredDifference") == "normalisation"
    assert kind("gradient_tape/rcnn_1d/encoder/ecv21_norm/batchnorm/mul_1/Mul_1", "Mul") == "normalisation backward"
    assert kind("rcnn_1d/encoder/conv_lstm/while/body/_1/mul", "Mul") == "ConvLSTM gates"
    assert kind("rcnn_1d/decoder/dcv11_swish/mul_1", "_MklSwish") == "activation"
    assert kind("mul_24", "Mul") == "optimizer and loss"
    assert kind("rcnn_1d/decoder/dcv1_concat/concat", "ConcatV2") == "other"
    assert set(profile_training_step.KINDS) >= {"convolution", "other"}


@pytest.mark.slow
def test_gpu_suite_smoke_measures_training_and_inference_on_the_cpu(tmp_path, monkeypatch):
    import gpu_suite

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    table = gpu_suite.main(["--smoke", "--skip", "studies", "--minutes", "20"])  # time to spare on a busy machine
    rows = {tuple(row[:5]): row for row in table.rows}
    for precision, xla in (("fp32", "on"), ("bf16", "off"), ("fp16", "off")):
        examples_per_s = rows[("training", "1D width 0.05", precision, xla, "2")][5]
        assert float(examples_per_s) > 0, (precision, table.text())
    inference = [row for row in table.rows if row[0] == "inference"]
    assert [(row[1][:2], row[2]) for row in inference] == [("1D", "fp32"), ("1D", "bf16"), ("3D", "fp32"), ("3D", "bf16")]
    assert all(float(row[6]) > 0 and row[7] == "—" for row in inference), table.text()  # no GPU: no GPU memory
    assert "| training | 1D width 0.05 | fp32 | on | 2 |" in (tmp_path / "gpu_suite_smoke.md").read_text()


def test_gpu_suite_runs_the_studies_as_the_readme_says_and_orders_methods_by_mae(tmp_path, monkeypatch):
    import gpu_suite

    commands = []

    def finished_study(command, env, workdir, timeout, log):
        commands.append((list(command), env))
        assert command[command.index("--directory") + 1] == str(workdir)
        summary = workdir / "results" / "summary.tsv"
        summary.parent.mkdir(parents=True)
        summary.write_text("shell\tq_in\tmethod\tmae\n1000\t6\tSH\t203.5\n1000\t6\t3D\t166.8\n1000\t6\t1D\t194.8\n")
        return 0, 12.5

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(gpu_suite, "run_stoppable", finished_study)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    table = gpu_suite.main(["--skip", "training", "inference", "--cores", "16"])
    assert [row[1] for row in table.rows] == ["default: b1000 q_in 6", "cpu-study: b1000 q_in 6"]
    assert all(row[8] == "3D 166.8 < 1D 194.8 < SH 203.5" and row[6] == "12.5" for row in table.rows)
    (default, env), (cpu_study, _) = commands
    assert default[default.index("--cores") + 1] == "16" and default[-2:] == ["--resources", "gpu=1"]
    assert "--configfile" not in default and cpu_study[cpu_study.index("--configfile") + 1].endswith("config/cpu-study.yaml")
    assert env["CUDA_VISIBLE_DEVICES"] == "1"  # the studies see the GPU the suite was given
