"""The Keras 3 dMRI-RCNN models: layout, parameter counts, gate activation, serialisation."""

from __future__ import annotations

import numpy as np
import keras
import pytest

from dmri_rcnn.core.model import (
    ARCHITECTURES,
    get_1d_autoencoder,
    get_3d_autoencoder,
    keras2_hard_sigmoid,
)


@pytest.fixture(scope="module")
def model_3d():
    return get_3d_autoencoder()


@pytest.fixture(scope="module")
def model_1d():
    return get_1d_autoencoder()


def test_parameter_counts_match_the_paper_models(model_3d, model_1d):
    assert model_3d.count_params() == 6_833_193
    assert model_1d.count_params() == 846_817


def test_inputs_are_named_and_q_is_variable(model_3d):
    assert [t.name for t in model_3d.inputs] == ["enc_images", "enc_bvecs", "dec_bvecs"]
    assert tuple(model_3d.inputs[0].shape) == (None, None, 10, 10, 10)
    assert tuple(model_3d.inputs[2].shape) == (None, None, 3)
    assert tuple(model_3d.outputs[0].shape) == (None, None, 10, 10, 10)


def test_compiled_with_mae_and_adam(model_3d):
    assert model_3d.loss == "mae"
    assert isinstance(model_3d.optimizer, keras.optimizers.Adam)
    assert float(model_3d.optimizer.learning_rate) == pytest.approx(1e-3)
    assert model_3d.optimizer.epsilon == pytest.approx(1e-7)


def test_no_lambda_layers(model_3d, model_1d):
    for model in (model_3d, model_1d):
        for sub in (model.get_layer("encoder"), model.get_layer("decoder")):
            assert not any(isinstance(layer, keras.layers.Lambda) for layer in sub.layers)


@pytest.mark.parametrize("dim", [3, 1])
def test_layer_widths_kernels_and_norms(dim, model_3d, model_1d):
    model = model_3d if dim == 3 else model_1d
    encoder, decoder = model.get_layer("encoder"), model.get_layer("decoder")
    arch = ARCHITECTURES[dim]
    for name, filters, k in [*arch.encoder_branch1, *arch.encoder_branch2]:
        conv = encoder.get_layer(f"{name}_conv")
        assert conv.filters == filters and conv.kernel_size == (k, k, k) and conv.padding == "same"
    # Concatenated widths of the original: 4 -> 380 -> 668 (encoder), 51 -> 227 -> 635 -> 403 (decoder).
    assert encoder.get_layer("init_conv").kernel.shape == (1, 1, 1, 4, 200)
    assert encoder.get_layer("ecvl1_conv").kernel.shape[3] == 668
    assert encoder.get_layer("ecv21_conv").kernel.shape[3] == 380
    assert decoder.get_layer("dcvl1_conv").kernel.shape[3] == 51
    assert decoder.get_layer(f"{arch.decoder_branch1[0][0]}_conv").kernel.shape[3] == 227
    assert decoder.get_layer(f"{arch.decoder_branch2[0][0]}_conv").kernel.shape[3] == 635
    assert decoder.get_layer("dcv3_conv").kernel.shape[3] == 403
    # Per-voxel spatial LayerNorm for init/ecv1x, BatchNorm elsewhere, none on the head.
    init_norm = encoder.get_layer("init_norm")
    assert isinstance(init_norm, keras.layers.LayerNormalization)
    assert tuple(init_norm.gamma.shape) == (10, 10, 10) and init_norm.epsilon == pytest.approx(1e-3)
    assert isinstance(encoder.get_layer("ecv21_norm"), keras.layers.BatchNormalization)
    names = {layer.name for layer in decoder.layers}
    assert "dcv3_norm" not in names and "dc4_norm" not in names and "dc4_relu" in names
    lstm = encoder.get_layer("conv_lstm")
    assert lstm.cell.kernel.shape == (1, 1, 1, 88, 192) and lstm.cell.recurrent_kernel.shape == (1, 1, 1, 48, 192)


def test_conv_lstm_gate_is_the_keras2_hard_sigmoid(model_3d):
    lstm = model_3d.get_layer("encoder").get_layer("conv_lstm")
    assert lstm.cell.recurrent_activation is keras2_hard_sigmoid
    x = np.array([-5.0, -2.5, -1.0, 0.0, 1.0, 2.5, 5.0], dtype=np.float32)
    expected = np.clip(0.2 * x + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(np.asarray(keras2_hard_sigmoid(x)), expected, rtol=0, atol=1e-7)
    # Keras 3's own hard_sigmoid (slope 1/6) differs, so using it would change the model.
    assert not np.allclose(np.asarray(keras.activations.hard_sigmoid(x)), expected)


def test_variable_q_and_output_shape(model_1d):
    rng = np.random.default_rng(0)
    for q_in, q_out in ((6, 3), (10, 7)):
        out = model_1d.predict(
            [
                rng.random((2, q_in, 10, 10, 10), dtype=np.float32),
                rng.normal(size=(2, q_in, 3)).astype(np.float32),
                rng.normal(size=(2, q_out, 3)).astype(np.float32),
            ],
            verbose=0,
        )
        assert out.shape == (2, q_out, 10, 10, 10) and out.dtype == np.float32
        assert np.all(out >= 0)  # final ReLU


def test_target_directions_are_decoded_independently(model_1d):
    rng = np.random.default_rng(1)
    images = rng.random((1, 6, 10, 10, 10), dtype=np.float32)
    bvec_in = rng.normal(size=(1, 6, 3)).astype(np.float32)
    bvec_out = rng.normal(size=(1, 5, 3)).astype(np.float32)
    together = model_1d.predict([images, bvec_in, bvec_out], verbose=0)
    alone = model_1d.predict([images, bvec_in, bvec_out[:, 2:3]], verbose=0)
    np.testing.assert_allclose(alone[:, 0], together[:, 2], atol=1e-5)  # float rounding only


def test_width_scales_filters_but_keeps_structure():
    small = get_3d_autoencoder(width=0.25)
    enc = small.get_layer("encoder")
    assert enc.get_layer("ecv11_conv").filters == 26
    assert enc.get_layer("conv_lstm").filters == 12
    # qspace skip (4 channels) is still concatenated: 26 + 50 + 18 + 4
    assert enc.get_layer("ecv21_conv").kernel.shape[3] == 26 + 50 + 18 + 4
    assert small.count_params() < 6_833_193 // 10


def test_min_filters_keeps_the_bottleneck_wide_while_width_shrinks_the_rest():
    plain = get_1d_autoencoder(width=0.125)
    floored = get_1d_autoencoder(width=0.125, min_filters=16)
    widths = {
        name: (plain.get_layer(part).get_layer(name).filters, floored.get_layer(part).get_layer(name).filters)
        for part, name in [
            ("encoder", "init_conv"),  # 200 -> 25: above the floor, unchanged
            ("encoder", "ecvl1_conv"),  # 32 -> 4, floored to 16
            ("encoder", "conv_lstm"),  # 48 -> 6, floored to 16
            ("decoder", "dcv3_conv"),  # 16 -> 2, floored to 16
            ("decoder", "dc4_conv"),  # the single output filter is never widened
        ]
    }
    assert widths == {
        "init_conv": (25, 25),
        "ecvl1_conv": (4, 16),
        "conv_lstm": (6, 16),
        "dcv3_conv": (2, 16),
        "dc4_conv": (1, 1),
    }
    assert floored.get_layer("decoder").input_shape[0][-1] == 16  # the latent state the decoder receives
    assert get_1d_autoencoder(width=1.0, min_filters=16).count_params() == 846_817  # no effect at full width


def test_keras_file_roundtrip(tmp_path, model_1d):
    path = tmp_path / "rcnn1d.keras"
    model_1d.save(path)
    loaded = keras.models.load_model(path)
    rng = np.random.default_rng(2)
    batch = [
        rng.random((1, 6, 10, 10, 10), dtype=np.float32),
        rng.normal(size=(1, 6, 3)).astype(np.float32),
        rng.normal(size=(1, 2, 3)).astype(np.float32),
    ]
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model_1d.predict(batch, verbose=0), atol=1e-6)
    lstm = loaded.get_layer("encoder").get_layer("conv_lstm")
    assert lstm.cell.recurrent_activation is keras2_hard_sigmoid
