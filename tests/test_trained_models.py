"""Trained models describe themselves (sidecar), and whole scans are super-resolved (package and command)."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dmri_rcnn.cli.run_dmri_rcnn import main
from dmri_rcnn.core.inference import infer
from dmri_rcnn.core.model import get_1d_autoencoder, load_trained_model
from dmri_rcnn.core.model_spec import ModelSpec, read_model_spec, sidecar_path, write_model_spec
from dmri_rcnn.core.processing.directions import arc_distances, evenly_spread_directions
from dmri_rcnn.core.super_resolution import hcp_like_directions, super_resolve
from dmri_rcnn.core.weights import save_model_weights
from dmri_rcnn.errors import ConfigError, InputError
from dmri_rcnn.training import TrainingConfig, TrainingOutputs, train_model
from published_weights import random_published_model, serve_tree

AFFINE = np.array([[-1.5, 0, 0, 40.0], [0, 1.5, 0, -30.0], [0, 0, 1.5, 8.0], [0, 0, 0, 1]])


@pytest.fixture(autouse=True)
def _own_weights_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DMRI_RCNN_DIR", str(tmp_path / "dmri_rcnn_home"))
    monkeypatch.setenv("DMRI_RCNN_WEIGHTS_URL", "http://127.0.0.1:9")  # nothing downloadable by default


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def weights_server(monkeypatch):
    """Serve a folder over HTTP on 127.0.0.1 and point $DMRI_RCNN_WEIGHTS_URL at it."""
    started = []

    def start(folder: Path):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        monkeypatch.setenv("DMRI_RCNN_WEIGHTS_URL", f"http://127.0.0.1:{server.server_address[1]}")

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join()


def train(records, out, **kwargs):
    config = TrainingConfig(model_dim=1, shells=(1000,), q_in=6, width=0.05, min_filters=2, epochs=1,
                            steps_per_epoch=2, validation_steps=1, batch_size=2, seed=3)
    return train_model(
        config, train_records=[records[0]], validation_records=[records[1]],
        outputs=TrainingOutputs(weights=out / "best.weights.h5", history=out / "history.tsv"), **kwargs,
    )


@pytest.fixture(scope="module")
def trained(records, tmp_path_factory):
    """A 1D model of width 0.05 trained for one short epoch by train_model, as the workflow does."""
    out = tmp_path_factory.mktemp("trained")
    train(records, out)
    # Two steps leave a width-0.05 model's final ReLU mostly off; a positive output bias keeps the
    # comparisons below meaningful (the description written by train_model is untouched).
    model = load_trained_model(out / "best.weights.h5")
    model.get_layer("decoder").get_layer("dc4_conv").bias.assign(np.array([0.3], np.float32))
    save_model_weights(model, out / "best.weights.h5")
    return out / "best.weights.h5"


def test_fine_tuning_starts_from_the_checkpoint(records, trained, tmp_path):
    """Epoch 0 of the history is the starting weights' validation loss; one epoch changes the weights."""
    from dmri_rcnn.core.processing import TrainingProcessor

    start = load_trained_model(trained)
    validation = TrainingProcessor([1000], 6, q_out=10, seed=3).load_data([str(records[1])], validation=True,
                                                                            batch_size=2).take(1)
    start_loss = start.evaluate(validation, verbose=0, return_dict=True)["loss"]

    state = train(records, tmp_path, initial_weights=trained)
    history = state["history"]
    assert [row["epoch"] for row in history] == [0, 1]
    assert history[0]["val_loss"] == pytest.approx(start_loss, rel=1e-5)
    assert np.isnan(history[0]["loss"]) and np.isfinite(history[1]["loss"])
    tuned = load_trained_model(tmp_path / "best.weights.h5")
    changed = [not np.array_equal(a, b) for a, b in zip(tuned.get_weights(), start.get_weights())]
    assert sum(changed) > len(changed) // 2
    assert read_model_spec(tmp_path / "best.weights.h5") == read_model_spec(trained)

    # A start that is not this model is refused before any training.
    wrong = tmp_path / "wide.weights.h5"
    from dmri_rcnn.core.model import save_trained_model

    save_trained_model(get_1d_autoencoder(width=0.1), ModelSpec(model_dim=1, q_in=6, shells=(1000,), width=0.1), wrong)
    with pytest.raises(InputError, match=r"^initial weights .*wide\.weights\.h5: described in .*wide\.weights\.json as a 1D "
                       r"model, width 0\.1, .*; the model to train \(1D_b1000_q6\) needs width 0\.05, min_filters 2: "
                       r"init with 10 filters \(found 20; 10 of 12 blocks differ\)$"):
        train(records, tmp_path / "again", initial_weights=wrong)


def write_context(folder: Path, q_in=6, q_out=3, shape=(12, 10, 10), seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    dmri = rng.uniform(200, 3000, shape + (q_in,)).astype(np.int16)
    nib.save(nib.Nifti1Image(dmri, AFFINE), folder / "dmri.nii.gz")
    mask = np.zeros(shape, np.uint8)
    mask[2:-2, 2:-2, 2:-2] = 1
    nib.save(nib.Nifti1Image(mask, AFFINE), folder / "mask.nii.gz")
    for name, n in (("bvec_in", q_in), ("bvec_out", q_out)):
        v = rng.normal(size=(3, n))
        np.savetxt(folder / name, v / np.linalg.norm(v, axis=0), fmt="%.6f")
    return {key: folder / name for key, name in
            (("dmri_in", "dmri.nii.gz"), ("mask", "mask.nii.gz"), ("bvec_in", "bvec_in"), ("bvec_out", "bvec_out"))}


def argv(paths, out, *extra, shell="1000"):
    return ["-dmri_in", str(paths["dmri_in"]), "-bvec_in", str(paths["bvec_in"]), "-bvec_out", str(paths["bvec_out"]),
            "-mask", str(paths["mask"]), "-dmri_out", str(out), "-s", shell, "--no-progress", *extra]


def one_line_error(capsys, args, out: Path) -> str:
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_dmri_rcnn.py: error: "), lines
    assert not out.exists()
    return lines[0]


# ----------------------------------------------------------------------------------- self-describing models


def test_train_model_writes_the_description_beside_the_weights(trained):
    spec = read_model_spec(trained)
    assert sidecar_path(trained) == trained.with_name("best.weights.json")
    assert spec == ModelSpec(model_dim=1, q_in=6, shells=(1000,), width=0.05, min_filters=2)
    model = load_trained_model(trained)
    assert model.get_layer("encoder").get_layer("init_conv").kernel.shape[-1] == 10  # 200 x 0.05
    fresh = get_1d_autoencoder(width=0.05, min_filters=2)
    assert any(not np.allclose(a, b) for a, b in zip(model.get_weights(), fresh.get_weights()))


def test_command_rebuilds_the_trained_model_without_flags(trained, tmp_path, capsys):
    """No -m (the default would be 3D) and no width: the sidecar decides, and the output is the library's."""
    paths = write_context(tmp_path)
    out = tmp_path / "inferred.nii.gz"
    assert main(argv(paths, out, "--weights", str(trained))) == 0
    assert "Model Type -> 1D" in capsys.readouterr().out
    model = load_trained_model(trained)
    expected = infer(nib.load(paths["dmri_in"]).get_fdata(dtype=np.float32), np.loadtxt(paths["bvec_in"]),
                     np.loadtxt(paths["bvec_out"]), nib.load(paths["mask"]).get_fdata() > 0, model, shell=1000,
                     progress=False)
    np.testing.assert_allclose(nib.load(out).get_fdata(dtype=np.float32), expected, rtol=1e-5, atol=1e-2)
    assert np.ptp(expected) > 1.0


@pytest.mark.parametrize(
    "change, match",
    [
        ({"extra": ["-m", "3"]}, "the command (-m, -s, -n and the context) needs a 3D model (found 1D)"),
        ({"q_in": 8}, "needs q_in 8 (found 6)"),
        ({"shell": "2000"}, "needs b=2000 (found b=1000)"),
        ({"extra": ["-c", "-n"]}, "needs percentile scaling (found shell)"),
    ],
)
def test_command_refuses_a_model_trained_for_something_else(trained, tmp_path, capsys, change, match):
    paths = write_context(tmp_path, q_in=change.get("q_in", 6))
    out = tmp_path / "inferred.nii.gz"
    line = one_line_error(capsys, argv(paths, out, "--weights", str(trained), *change.get("extra", []),
                                       shell=change.get("shell", "1000")), out)
    assert match in line and "best.weights.json" in line


def test_weights_that_do_not_fit_their_description_name_expected_and_found(trained, tmp_path, capsys):
    copy = tmp_path / "copy.weights.h5"
    copy.write_bytes(trained.read_bytes())
    write_model_spec(ModelSpec(model_dim=1, q_in=6, shells=(1000,), width=0.1, min_filters=2), copy)
    with pytest.raises(InputError) as err:
        load_trained_model(copy)
    message = str(err.value)
    assert "\n" not in message
    assert "expected the 1D model of this width (57 arrays, 14,158 parameters)" in message
    assert "found a 1D model of another width (57 arrays, 7,054 parameters)" in message
    assert "1D model, width 0.1, min_filters 2" in message and "described by " in message
    assert "copy.weights.json" in message

    # Without a description the command assumes a full-width model and says so.
    sidecar_path(copy).unlink()
    paths = write_context(tmp_path / "subject")
    out = tmp_path / "inferred.nii.gz"
    line = one_line_error(capsys, argv(paths, out, "--weights", str(copy), "-m", "1"), out)
    assert "expected the 1D model of this width" in line and "found a 1D model of another width" in line
    assert "copy.weights.json (the model's description) is missing" in line


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "cannot read the model description"),
        ('{"model_dim": 2, "q_in": 6, "shells": [1000]}', "model_dim is 2; expected 1 or 3"),
        ('{"model_dim": 3, "q_in": 6, "shells": [1000], "depth": 4}', "unknown key(s) depth"),
        ('{"model_dim": 3, "shells": [1000]}', "missing key(s) q_in"),
    ],
)
def test_bad_descriptions_are_one_line_errors_naming_the_file(tmp_path, content, match):
    weights = tmp_path / "m.weights.h5"
    sidecar_path(weights).write_text(content)
    with pytest.raises(InputError) as err:
        read_model_spec(weights)
    assert match in str(err.value) and str(sidecar_path(weights)) in str(err.value)
    assert "\n" not in str(err.value)


def test_a_file_without_description_cannot_be_loaded_blindly(tmp_path):
    weights = save_model_weights(get_1d_autoencoder(width=0.05), tmp_path / "bare.weights.h5")
    with pytest.raises(InputError, match=r"no model description .*bare\.weights\.json"):
        load_trained_model(weights)


# -------------------------------------------------------------------------------------------- super-resolve


def test_evenly_spread_directions_are_unit_reproducible_and_spread():
    directions = evenly_spread_directions(30, seed=4)
    assert directions.shape == (3, 30)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=0), 1.0, atol=1e-12)
    np.testing.assert_array_equal(directions, evenly_spread_directions(30, seed=4))
    angles = np.degrees(arc_distances(directions, antipodal=True))
    closest = angles[~np.eye(30, dtype=bool)].min()
    assert closest > 15.0  # 30 random axes would typically have a pair within a few degrees
    hcp = hcp_like_directions(1000)
    assert hcp.shape == (3, 90)
    assert not np.allclose(hcp, hcp_like_directions(2000))


def write_scan(folder: Path, shape=(12, 10, 11), seed=5):
    """A scan of 2 b0, 6 b=1000 and 3 b=2000 volumes, interleaved, int16, with a rich header."""
    rng = np.random.default_rng(seed)
    bvals = np.array([5, 995, 1005, 2000, 1000, 990, 5, 2010, 1000, 1010, 1995])
    bvecs = rng.normal(size=(3, bvals.size))
    bvecs /= np.linalg.norm(bvecs, axis=0)
    bvecs[:, bvals < 50] = 0
    dmri = rng.integers(100, 3000, shape + (bvals.size,)).astype(np.int16)
    image = nib.Nifti1Image(dmri, AFFINE)
    image.header["descrip"] = b"clinical scan"
    image.header.set_xyzt_units("mm", "sec")
    image.header["pixdim"][4] = 3.2  # TR
    image.set_qform(AFFINE, code=1)
    image.set_sform(AFFINE, code=4)
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(image, folder / "data.nii.gz")
    np.savetxt(folder / "bvals", bvals[None], fmt="%d")
    np.savetxt(folder / "bvecs", bvecs, fmt="%.6f")
    mask = np.zeros(shape, np.uint8)
    mask[2:-2, 2:-2, 2:-2] = 1
    nib.save(nib.Nifti1Image(mask, AFFINE), folder / "mask.nii.gz")
    return folder, bvals, bvecs


def test_super_resolve_command_with_downloaded_published_weights(tmp_path, capsys, weights_server):
    """--super-resolve: b0 and context copied bit for bit, predictions appended; weights come over HTTP."""
    model = random_published_model(1, seed=11)
    serve_tree(model, tmp_path / "zenodo", 1, 1000, 6)
    weights_server(tmp_path / "zenodo")
    folder, bvals, bvecs = write_scan(tmp_path / "scan")
    targets = evenly_spread_directions(7, seed=1)
    np.savetxt(folder / "targets", targets, fmt="%.6f")
    out = tmp_path / "sr" / "data.nii.gz"
    out.parent.mkdir()
    assert main(["-dmri_in", str(folder / "data.nii.gz"), "-bvec_in", str(folder / "bvecs"), "-bvec_out",
                 str(folder / "targets"), "-mask", str(folder / "mask.nii.gz"), "-dmri_out", str(out), "-s", "1000",
                 "-m", "1", "--super-resolve", str(folder / "bvals"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "8 acquired + 7 predicted volumes; 3 volume(s) of other shells left out" in printed

    written, source = nib.load(out), nib.load(folder / "data.nii.gz")
    keep = [0, 1, 2, 4, 5, 6, 8, 9]  # b0 and b=1000 in file order; the b=2000 volumes are left out
    assert written.shape == (12, 10, 11, 15) and written.get_data_dtype() == np.float32
    data = np.asarray(written.dataobj)
    acquired = np.asarray(source.dataobj)[..., keep]
    np.testing.assert_array_equal(data[..., :8], acquired.astype(np.float32))  # bit-identical copies
    out_bvals = np.loadtxt(out.with_name("data.bval"))
    out_bvecs = np.loadtxt(out.with_name("data.bvec"))
    np.testing.assert_array_equal(out_bvals, [*bvals[keep], *[1000] * 7])
    assert out_bvecs.shape == (3, 15)
    np.testing.assert_allclose(out_bvecs[:, :8], bvecs[:, keep], atol=1e-6)
    np.testing.assert_allclose(out_bvecs[:, 8:], targets, atol=1e-6)
    # header kept
    np.testing.assert_allclose(written.affine, source.affine)
    assert written.header["descrip"] == source.header["descrip"]
    assert written.header.get_xyzt_units() == ("mm", "sec")
    assert int(written.header["sform_code"]) == 4 and int(written.header["qform_code"]) == 1
    np.testing.assert_allclose(written.header.get_zooms(), source.header.get_zooms())
    # the predictions are the model's from the six b=1000 volumes
    context = [1, 2, 4, 5, 8, 9]
    expected = infer(np.asarray(source.dataobj)[..., context], bvecs[:, context], targets,
                     nib.load(folder / "mask.nii.gz").get_fdata() > 0, model, shell=1000, progress=False)
    np.testing.assert_allclose(data[..., 8:], expected, rtol=1e-5, atol=1e-2)
    assert np.ptp(expected) > 1.0


def test_super_resolve_with_named_target_schemes(tmp_path, capsys):
    """--target-directions N | hcp replace -bvec_out; the package function gives the same volumes."""
    model = random_published_model(1, seed=12)
    weights = tmp_path / "m.weights.h5"
    from dmri_rcnn.core.model import save_trained_model

    save_trained_model(model, ModelSpec(model_dim=1, q_in=6, shells=(1000,)), weights)
    folder, bvals, bvecs = write_scan(tmp_path / "scan", shape=(10, 10, 10))
    def command(out, targets, shell="1000"):
        return ["-dmri_in", str(folder / "data.nii.gz"), "-bvec_in", str(folder / "bvecs"), "-mask",
                str(folder / "mask.nii.gz"), "-s", shell, "--super-resolve", str(folder / "bvals"),
                "--weights", str(weights), "--no-progress", "-dmri_out", str(out), "--target-directions", targets]

    for name, count in (("5", 5), ("hcp", 90)):
        out = tmp_path / f"sr_{name}.nii"
        assert main(command(out, name)) == 0
        assert nib.load(out).shape[3] == 8 + count
        assert np.loadtxt(tmp_path / f"sr_{name}.bval").size == 8 + count
    np.testing.assert_allclose(np.loadtxt(tmp_path / "sr_hcp.bvec")[:, 8:], hcp_like_directions(1000), atol=1e-6)

    result = super_resolve(np.asarray(nib.load(folder / "data.nii.gz").dataobj), bvals, bvecs,
                           nib.load(folder / "mask.nii.gz").get_fdata() > 0, model, 1000,
                           evenly_spread_directions(5), progress=False)
    assert result.acquired.tolist() == [True] * 8 + [False] * 5
    np.testing.assert_allclose(result.dmri, nib.load(tmp_path / "sr_5.nii").get_fdata(dtype=np.float32),
                               rtol=1e-5, atol=1e-2)

    out = tmp_path / "bad.nii.gz"
    line = one_line_error(capsys, command(out, "many"), out)
    assert "--target-directions many: expected a number of directions (e.g. 60) or 'hcp'" in line
    line = one_line_error(capsys, command(out, "5", shell="3000"), out)
    assert "no volume of shell b=3000; b-values found: 5, 990, 995, 1000, 1005, 1010, 1995, 2000, 2010" in line


# ------------------------------------------------------------------------------ the study's weight sources


def _study(weights="published", width=1.0, epochs=0, combined_shells=(1000, 2000, 3000), min_filters=1):
    from dmri_rcnn.study.design import model_spec
    from dmri_rcnn.study.pretrained import check_model_weights

    config = {"models": {"weights": weights, "width": width, "min_filters": min_filters,
                         "combined": {"norm": False, "shells": list(combined_shells)}},
              "training": {"epochs": epochs}}
    check_model_weights(config, [model_spec(config, name) for name in ("3D_b1000_q6", "3D_all_q10")])


def test_study_weight_sources_are_checked_before_any_job(tmp_path, monkeypatch):
    from dmri_rcnn.study.design import ConfigError
    from dmri_rcnn.study.pretrained import published_key

    assert published_key(ModelSpec(model_dim=3, shells=(3000, 1000, 2000), q_in=10)) == (3, "all", 10)
    norm = ModelSpec(model_dim=3, shells=(1000, 2000, 3000), q_in=10, scaling="percentile")
    assert published_key(norm) == (3, "all_norm", 10)
    assert published_key(ModelSpec(model_dim=1, shells=(2000,), q_in=6)) is None
    _study()
    _study(min_filters=16)  # at width 1.0 no layer is below 16 filters: the same network
    with pytest.raises(ConfigError, match=r"^invalid config: models.weights: model 3D_all_q10 has no published weights; published: 1D_b1000_q6"):
        _study(combined_shells=(1000, 2000))
    with pytest.raises(ConfigError, match=r"^invalid config: models.width: .* full width \(1.0\); models.width is 0.5"):
        _study(width=0.5)
    with pytest.raises(ConfigError, match="^invalid config: training.epochs: 0 means evaluation only"):
        _study(weights="scratch")
    with pytest.raises(ConfigError, match="neither scratch, published nor a path pattern"):
        _study(weights="elsewhere/best.weights.h5")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="the weights this run's training writes"):
        _study(weights="results/models/{model}/best.weights.h5", epochs=2)


def test_weights_fit_a_model_when_they_build_its_network(tmp_path, monkeypatch):
    """The one check compares the layers two descriptions build, not their settings: the published weights
    (width 1.0, min_filters 1) are the model of width 1.0 with min_filters 16 (no layer is narrower)."""
    from dmri_rcnn.core.model_spec import check_weights, published_model_spec

    weights = tmp_path / "1D_b1000_q6.weights.h5"
    weights.write_bytes(b"only the description is read")
    write_model_spec(published_model_spec(1, 1000, 6), weights)
    wanted = ModelSpec(model_dim=1, q_in=6, shells=(1000,), width=1.0, min_filters=16)
    assert check_weights(weights, wanted, "the study's model 1D_b1000_q6") == published_model_spec(1, 1000, 6)
    narrow = dataclasses.replace(wanted, width=0.125)
    with pytest.raises(InputError, match=r"^.*1D_b1000_q6\.weights\.h5: described in .*1D_b1000_q6\.weights\.json as a "
                       r"1D model, width 1, min_filters 1, q_in 6, b=1000, shell scaling, trained in fp32; the study's "
                       r"model 1D_b1000_q6 needs width 0\.125, min_filters 16: init with 25 filters \(found 200; "):
        check_weights(weights, narrow, "the study's model 1D_b1000_q6")
    assert check_weights(tmp_path / "none.weights.h5", wanted, "x", required=False) is None
    with pytest.raises(InputError, match="none.weights.h5: file not found; the command needs it"):
        check_weights(tmp_path / "none.weights.h5", wanted, "the command")

    # the same check runs while the workflow reads its config, for weights given by a path pattern
    monkeypatch.chdir(tmp_path)
    pattern = "{model}.weights.h5"
    config = {"models": {"weights": pattern, "width": 1.0, "min_filters": 16, "combined": {"norm": False}},
              "training": {"epochs": 0}}
    from dmri_rcnn.study.pretrained import check_model_weights

    check_model_weights(config, [wanted])
    with pytest.raises(ConfigError, match=r"^invalid config: models.weights: .*the study's model 1D_b1000_q10 needs "
                       r"q_in 10 \(found 6\)"):
        weights.rename(tmp_path / "1D_b1000_q10.weights.h5")
        write_model_spec(published_model_spec(1, 1000, 6), tmp_path / "1D_b1000_q10.weights.h5")
        check_model_weights(config, [dataclasses.replace(wanted, q_in=10)])


def test_the_all_norm_variant_is_chosen_by_models_combined_norm():
    from dmri_rcnn.errors import ConfigError
    from dmri_rcnn.study.pretrained import check_model_weights, published_checkpoint, pretrained_weights

    from dmri_rcnn.study.design import model_spec

    config = {"models": {"weights": "published", "width": 1.0, "combined": {"norm": True}}, "training": {"epochs": 0}}
    assert published_checkpoint(model_spec(config, "3D_all_q10")) == (3, "all_norm", 10)
    assert published_checkpoint(model_spec(config, "3D_b2000_q10")) == (3, 2000, 10)
    assert pretrained_weights(config, "3D_all_q10") == "resources/published_weights/3D_all_q10.weights.h5"
    config["models"]["weights"] = "scratch"
    config["training"]["epochs"] = 3
    with pytest.raises(ConfigError, match="models.combined.norm: 99th-percentile scaling exists only for the published"):
        check_model_weights(config, [])


def test_study_inference_follows_the_described_scaling(tmp_path):
    """A model described with percentile scaling (the published all_norm) is fed the context / its 99th percentile."""
    from dmri_rcnn.core.model import save_trained_model
    from dmri_rcnn.core.processing.scaling import percentile_scale
    from dmri_rcnn.study.predict_rcnn import predict_with_trained_model

    model = random_published_model(1, seed=13)
    weights = tmp_path / "norm.weights.h5"
    save_trained_model(model, ModelSpec(model_dim=1, q_in=6, shells=(1000, 2000, 3000), scaling="percentile"), weights)
    paths = write_context(tmp_path / "subject")
    out = tmp_path / "prediction.nii.gz"
    predicted = predict_with_trained_model(
        context=paths["dmri_in"], context_bvecs=paths["bvec_in"], target_bvecs=paths["bvec_out"], mask=paths["mask"],
        weights=weights, spec=ModelSpec(model_dim=1, q_in=6, shells=(2000,), scaling="percentile"), shell=2000,
        out_path=out,
    )
    dmri = nib.load(paths["dmri_in"]).get_fdata(dtype=np.float32)
    mask = nib.load(paths["mask"]).get_fdata() > 0
    expected = infer(dmri, np.loadtxt(paths["bvec_in"]), np.loadtxt(paths["bvec_out"]), mask, model,
                     scale=percentile_scale(dmri, mask, 99), progress=False)
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-2)
    shell_scaled = infer(dmri, np.loadtxt(paths["bvec_in"]), np.loadtxt(paths["bvec_out"]), mask, model, shell=2000,
                         progress=False)
    assert np.max(np.abs(expected - shell_scaled)) > 1.0
    with pytest.raises(InputError, match="the study's model 3D_b2000_q6 needs a 3D model"):
        predict_with_trained_model(context=paths["dmri_in"], context_bvecs=paths["bvec_in"],
                                   target_bvecs=paths["bvec_out"], mask=paths["mask"], weights=weights,
                                   spec=ModelSpec(model_dim=3, q_in=6, shells=(2000,), scaling="percentile"),
                                   shell=2000, out_path=tmp_path / "never.nii.gz")
