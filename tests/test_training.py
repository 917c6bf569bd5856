"""train_model on real TFRecords of synthetic subjects: history, best weights, interruption and resume."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pandas as pd
import pytest

from dmri_rcnn.core.processing import save_tfrecord_data
from dmri_rcnn.errors import InputError
from dmri_rcnn.simulation import simulate_subject
from dmri_rcnn.training import (
    TrainingConfig,
    TrainingOutputs,
    read_checkpoint_state,
    settings_fingerprint,
    train_model,
)
from dmri_rcnn.training.config import RUN_SETTINGS


class Interrupt(keras.callbacks.Callback):
    """Stops the run like a kill would, right after the checkpoint of ``epoch`` was committed."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def run(records, out, epochs, callbacks=None, **settings):
    config = TrainingConfig(
        **{
            "model_dim": 1,
            "shells": [1000],
            "q_in": 6,
            "width": 0.05,
            "epochs": epochs,
            "steps_per_epoch": 2,
            "validation_steps": 1,
            "batch_size": 2,
            "q_out": 10,
            "seed": 7,
            **settings,
        }
    )
    return train_model(
        config,
        train_records=[records[0]],
        validation_records=[records[1]],
        outputs=TrainingOutputs(
            weights=out / "best.weights.h5",
            history=out / "history.tsv",
            loss_plot=out / "loss.png",
            checkpoint_dir=out / "checkpoint",
        ),
        title="1D test",
        callbacks=callbacks,
    )


def test_interrupted_training_resumes_from_the_last_committed_epoch(records, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(records, tmp_path, epochs=4, callbacks=[Interrupt(2)])
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and [row["epoch"] for row in state["history"]] == [1, 2]
    assert not (tmp_path / "best.weights.h5").exists(), "outputs appear only when training completes"
    # only the current epoch's files are kept
    assert sorted(p.name for p in (tmp_path / "checkpoint").glob("epoch-*")) == [
        "epoch-0002.optimizer.npz",
        "epoch-0002.weights.h5",
    ]

    result = run(records, tmp_path, epochs=4)
    assert result["resumed_from"] == 2
    history = pd.read_csv(tmp_path / "history.tsv", sep="\t")
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert list(history["run"]) == [1, 1, 2, 2]
    assert np.isfinite(history["loss"]).all() and np.isfinite(history["val_loss"]).all()
    best = int(history["val_loss"].idxmin())
    assert result["best_epoch"] == history.loc[best, "epoch"]
    assert result["best_val_loss"] == pytest.approx(history["val_loss"].min(), rel=1e-5)
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "checkpoint").exists()


def test_training_lowers_the_loss_on_a_learnable_problem(records, tmp_path):
    """Trained on one subject and validated on it, the loss must fall clearly.

    The first epoch's mean training loss starts from random weights; the simulated signal is smooth on
    the sphere, so 18 steps must cut the training loss several-fold and the validation loss (the same
    batches every epoch) below its first value. A model whose weights are not updated fails both.
    """
    config = TrainingConfig(
        model_dim=1, shells=[1000], q_in=6, width=0.25, epochs=3, steps_per_epoch=6, validation_steps=2,
        batch_size=4, q_out=10, learning_rate=3e-3, seed=3,
    )
    result = train_model(
        config, train_records=[records[0]], validation_records=[records[0]],
        outputs=TrainingOutputs(weights=tmp_path / "best.weights.h5", history=tmp_path / "history.tsv"),
    )
    history = pd.read_csv(tmp_path / "history.tsv", sep="\t")
    first, best = history["val_loss"].iloc[0], history["val_loss"].min()
    table = history[["epoch", "loss", "val_loss"]].to_string()
    assert history["loss"].iloc[-1] < 0.3 * history["loss"].iloc[0], table  # measured: 0.056 vs 0.379
    assert best < 0.9 * first, table  # measured: 0.0565 vs 0.0735
    assert result["best_val_loss"] == pytest.approx(best, rel=1e-5)


def test_checkpoint_with_other_settings_is_not_resumed(tmp_path):
    fingerprint = settings_fingerprint({"q_in": 6})
    (tmp_path / "state.json").write_text(json.dumps({"fingerprint": fingerprint, "last_weights": "w.weights.h5"}))
    (tmp_path / "w.weights.h5").write_bytes(b"x")
    assert read_checkpoint_state(tmp_path, fingerprint) is not None
    assert read_checkpoint_state(tmp_path, settings_fingerprint({"q_in": 10})) is None
    assert settings_fingerprint({"a": 1, "b": 2}) == settings_fingerprint({"b": 2, "a": 1})


@pytest.mark.parametrize("antipodal", [False, True])
def test_antipodal_option_reaches_the_direction_sampler(records, tmp_path, monkeypatch, antipodal):
    from dmri_rcnn.core.processing import processor as processor_module

    seen = []
    real_sampler = processor_module.farthest_point_subsets

    def recording_sampler(bvecs, q_in, q_out, rng, use_antipodal):
        seen.append(use_antipodal)
        return real_sampler(bvecs, q_in, q_out, rng, use_antipodal)

    monkeypatch.setattr(processor_module, "farthest_point_subsets", recording_sampler)
    result = run(records, tmp_path, epochs=1, antipodal=antipodal)
    assert seen and set(seen) == {antipodal}
    assert result["settings"]["antipodal"] is antipodal  # part of the resume fingerprint


def test_masked_loss_ignores_voxels_outside_the_mask():
    from dmri_rcnn.training import masked_mean_absolute_error

    target = np.zeros((2, 3, 2, 2, 2), np.float32)
    prediction = np.zeros_like(target)
    prediction[0, :, 0, 0, 0] = 0.5  # inside the mask: counts
    prediction[1, :, 1, 1, 1] = 9.0  # outside the mask: ignored
    mask = np.zeros((2, 1, 2, 2, 2), np.float32)
    mask[0, 0, 0, 0, :] = 1  # 2 brain voxels in example 0
    mask[1, 0, 0, :, :] = 1  # 4 in example 1
    packed = np.concatenate([target, mask], axis=1)
    loss = float(masked_mean_absolute_error(packed, prediction))
    # 3 directions x 0.5 over 3 directions x 6 brain voxels
    assert loss == pytest.approx(3 * 0.5 / (3 * 6))
    no_brain = np.concatenate([target, np.zeros_like(mask)], axis=1)
    assert float(masked_mean_absolute_error(no_brain, prediction)) == 0.0


def test_training_with_the_masked_loss(records, tmp_path):
    result = run(records, tmp_path, epochs=1, loss="mae_in_mask")
    assert result["settings"]["loss"] == "mae_in_mask"
    row = result["history"][0]
    assert np.isfinite(row["loss"]) and np.isfinite(row["val_loss"]) and row["loss"] > 0
    with pytest.raises(Exception, match="mae_in_mask"):
        run(records, tmp_path / "bad", epochs=1, loss="mse")


def test_cosine_schedule_decays_to_its_final_fraction():
    from dmri_rcnn.errors import InputError
    from dmri_rcnn.training import COSINE_FINAL_FRACTION, build_model

    optimizer = build_model(1, width=0.125, learning_rate=2e-3, lr_schedule="cosine", total_steps=100).optimizer
    expected = {0: 1.0, 50: COSINE_FINAL_FRACTION + (1 - COSINE_FINAL_FRACTION) / 2, 100: COSINE_FINAL_FRACTION}
    for step, fraction in expected.items():
        optimizer.iterations.assign(step)
        assert float(optimizer.learning_rate) == pytest.approx(2e-3 * fraction, rel=1e-5), step
    with pytest.raises(InputError, match="total number of training steps"):
        build_model(1, width=0.125, lr_schedule="cosine")
    with pytest.raises(InputError, match="lr_schedule is 'step'"):
        build_model(1, width=0.125, lr_schedule="step", total_steps=10)


class RecordLearningRate(keras.callbacks.Callback):
    """Collects the learning rate in force at every training batch."""

    def __init__(self, rates):
        super().__init__()
        self.rates = rates

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate))


def test_cosine_schedule_resumes_at_the_step_it_stopped(records, tmp_path):
    straight = []
    result = run(records, tmp_path / "straight", epochs=3, lr_schedule="cosine", callbacks=[RecordLearningRate(straight)])
    assert result["settings"]["lr_schedule"] == "cosine"
    assert len(straight) == 3 * 2 and straight == sorted(straight, reverse=True) and straight[0] > straight[-1]

    with pytest.raises(KeyboardInterrupt):
        run(records, tmp_path / "resumed", epochs=3, lr_schedule="cosine", callbacks=[Interrupt(1)])
    resumed = []
    result = run(records, tmp_path / "resumed", epochs=3, lr_schedule="cosine", callbacks=[RecordLearningRate(resumed)])
    assert result["resumed_from"] == 1
    assert resumed == pytest.approx(straight[2:], rel=1e-6)


# ---------------------------------------------------------------- configuration, data, checkpoint units


def test_regenerated_records_do_not_resume_a_stale_checkpoint(records, tmp_path):
    # the same file names with new content (e.g. the subjects were simulated again with another seed)
    train, validation = tmp_path / "data" / "train" / "part-0.tfrecord", tmp_path / "data" / "val" / "part-0.tfrecord"
    for source, target in zip(records, (train, validation)):
        target.parent.mkdir(parents=True)
        target.write_bytes(source.read_bytes())
    out = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        run([train, validation], out, epochs=2, callbacks=[Interrupt(1)])
    assert json.loads((out / "checkpoint" / "state.json").read_text())["epoch"] == 1

    subject = simulate_subject(seed=5, shape=(12, 12, 10), n_directions=20, n_b0=1)
    save_tfrecord_data(subject.dmri, subject.bvecs, subject.bvals, subject.mask, train)
    result = run([train, validation], out, epochs=2)
    assert result["resumed_from"] == 0
    assert [row["run"] for row in result["history"]] == [1, 1]


def test_fingerprint_covers_settings_and_record_content_but_not_epochs(tmp_path):
    first, second = tmp_path / "s1" / "part-0.tfrecord", tmp_path / "s2" / "part-0.tfrecord"
    for path, content in ((first, b"abc"), (second, b"xyz")):
        path.parent.mkdir()
        path.write_bytes(content)
    config = TrainingConfig(model_dim=3, shells=[1000], q_in=6, epochs=5)

    def fingerprint(cfg, train=(first,)):
        return settings_fingerprint(cfg.fingerprint(list(train), [second]))

    base = fingerprint(config)
    assert fingerprint(dataclasses.replace(config, epochs=50)) == base  # training longer resumes
    assert fingerprint(TrainingConfig(model_dim=3, shells=(1000,), q_in=6, epochs=5)) == base
    for change in ({"batch_size": 8}, {"q_in": 10}, {"seed": 1}, {"width": 0.5}, {"antipodal": True}):
        assert fingerprint(dataclasses.replace(config, **change)) != base, change
    assert fingerprint(config, train=(second,)) != base
    first.write_bytes(b"abd")  # same name and size, other content
    assert fingerprint(config) != base
    settings = config.fingerprint([first], [second])
    assert "epochs" not in settings and settings["train_records"][0].startswith("s1/part-0.tfrecord:3:")


def test_training_config_from_the_workflow_config():
    import yaml

    from workflow_utils import load_default_config

    from dmri_rcnn.study.design import model_spec

    cfg = load_default_config()
    cfg["models"]["combined"]["shells"] = [1000, 2000]
    spec = model_spec(cfg, "3D_all_q10")
    config = TrainingConfig.from_config(cfg, spec, seed=11)
    assert config.spec == spec and config.seed == 11
    assert (config.model_dim, config.shells, config.q_in) == (3, (1000, 2000), 10)
    assert config.width == cfg["models"]["width"] and config.antipodal == cfg["sampling"]["antipodal"]
    for key, value in cfg["training"].items():
        # threads, devices: settings of the rule's run; seed: the base of every model's seed
        if key not in (*RUN_SETTINGS, "seed"):
            assert getattr(config, key) == value, key
    assert TrainingConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3
    with pytest.raises(InputError, match="model_dim is 2"):
        dataclasses.replace(config, model_dim=2)
    with pytest.raises(InputError, match="epochs is 0"):
        dataclasses.replace(config, epochs=0)
    with pytest.raises(InputError, match="spec has lstm_size 32"):
        dataclasses.replace(config, spec=dataclasses.replace(spec, lstm_size=32))


def test_datasets_follow_the_configuration(records):
    from dmri_rcnn.training.dataset import build_datasets

    config = TrainingConfig(model_dim=1, shells=[1000], q_in=6, q_out=10, batch_size=2, steps_per_epoch=3,
                            validation_steps=2, seed=3)
    train, validation = build_datasets(config, [records[0]], [records[1]])
    (context, context_bvecs, target_bvecs), targets = next(iter(train))
    assert tuple(context.shape) == (2, 6, 10, 10, 10) and tuple(context_bvecs.shape) == (2, 6, 3)
    assert tuple(target_bvecs.shape) == (2, 10, 3) and tuple(targets.shape) == (2, 10, 10, 10, 10)
    assert len(list(validation)) == 2
    assert len(list(train.take(50))) == 50  # repeats when steps_per_epoch caps an epoch
    again = [v[1].numpy() for v in build_datasets(config, [records[0]], [records[1]])[1]]
    assert all(np.array_equal(a, v[1].numpy()) for a, v in zip(again, validation))  # same batches each epoch
    masked = dataclasses.replace(config, loss="mae_in_mask")
    _, targets = next(iter(build_datasets(masked, [records[0]], [records[1]])[0]))
    assert tuple(targets.shape) == (2, 11, 10, 10, 10)  # the brain mask rides as the last target slot


def test_checkpoint_commit_and_resume_state(tmp_path):
    from dmri_rcnn.training.checkpoint import epoch_checkpoint_callback, new_state

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mae")
    state = new_state("abc", {"q_in": 6})
    callback = epoch_checkpoint_callback(tmp_path, state)
    callback.set_model(model)
    for epoch, val_loss in enumerate([0.5, 0.7]):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 1.0, "val_loss": val_loss})
    saved = read_checkpoint_state(tmp_path, "abc")
    assert saved["epoch"] == 2 and saved["best_epoch"] == 1 and saved["best_val_loss"] == 0.5
    # only the files the state names are kept
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["state.json", "best-0001.weights.h5", "epoch-0002.weights.h5", "epoch-0002.optimizer.npz"]
    )
    assert read_checkpoint_state(tmp_path, "other") is None
    (tmp_path / "epoch-0002.weights.h5").unlink()
    assert read_checkpoint_state(tmp_path, "abc") is None  # a state naming a missing file is not resumed


def test_bf16_training_computes_in_bfloat16_and_saves_float32_weights(records, tmp_path):
    from dmri_rcnn.core.model import get_1d_autoencoder
    from dmri_rcnn.training import build_model

    model = build_model(3, width=0.125, precision="bf16", loss="mae_in_mask")
    assert model.get_layer("decoder").get_layer("dcv12_conv").compute_dtype == "bfloat16"
    assert all(weight.dtype == "float32" for weight in model.weights)
    with pytest.raises(InputError, match="precision is 'fp8'"):
        build_model(1, width=0.125, precision="fp8")
    with pytest.raises(InputError, match="precision is 'fp8'"):
        TrainingConfig(model_dim=1, shells=[1000], q_in=6, precision="fp8")

    result = run(records, tmp_path, epochs=2, precision="bf16")
    assert result["settings"]["precision"] == "bf16"
    sidecar = json.loads((tmp_path / "best.weights.json").read_text())
    assert sidecar["precision"] == "bf16"  # the description says what the model was trained in
    assert all(np.isfinite(row["loss"]) and np.isfinite(row["val_loss"]) for row in result["history"])
    fp32 = get_1d_autoencoder(weights=None, width=0.05)
    fp32.load_weights(tmp_path / "best.weights.h5")  # the weights file is the same as an fp32 model's
    assert all(weight.dtype == "float32" for weight in fp32.weights)
    assert settings_fingerprint(result["settings"]) != settings_fingerprint({**result["settings"], "precision": "fp32"})


def test_auto_precision_is_resolved_logged_and_recorded(records, tmp_path, caplog, monkeypatch):
    """``auto`` trains in what this machine runs natively, says so in the log and records it."""
    from dmri_rcnn.core.precision import choose_precision

    expected = choose_precision("auto").precision
    with caplog.at_level("INFO", logger="dmri_rcnn.training.train"):
        result = run(records, tmp_path, epochs=1, precision="auto")
    assert result["settings"]["precision"] == expected != "auto"
    assert json.loads((tmp_path / "best.weights.json").read_text())["precision"] == expected
    line = next(r.getMessage() for r in caplog.records if "precision" in r.getMessage() and "devices" in r.getMessage())
    assert f"precision {expected} (auto: " in line and "CPU (" in line


def test_fp16_training_scales_the_loss_and_learns(records, tmp_path):
    """fp16: float16 layers, a loss-scaling optimizer, a finite loss that falls over a few steps."""
    from dmri_rcnn.training import build_model

    model = build_model(1, width=0.05, precision="fp16", loss="mae_in_mask", learning_rate=1e-2)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("decoder").get_layer("dcv11_conv").compute_dtype == "float16"
    assert all(weight.dtype == "float32" for weight in model.weights)
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(2, 9, 3))
    unit /= np.linalg.norm(unit, axis=-1, keepdims=True)
    context = rng.uniform(0.2, 0.6, (2, 6, 10, 10, 10)).astype(np.float32)
    target = np.concatenate([np.full((2, 3, 10, 10, 10), 0.4, np.float32), np.ones((2, 1, 10, 10, 10), np.float32)], 1)
    inputs = [context, unit[:, :6].astype(np.float32), unit[:, 6:].astype(np.float32)]
    losses = [float(model.train_on_batch(inputs, target)) for _ in range(8)]
    assert all(np.isfinite(losses)), losses
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
