"""Published-weights layout, download over HTTP (a server on 127.0.0.1), checkpoint and .weights.h5 loading."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from dmri_rcnn.cli import download_all_weights
from dmri_rcnn.core.model import get_1d_autoencoder, get_3d_autoencoder
from dmri_rcnn.core.weights import (
    PUBLISHED_WEIGHTS,
    get_weights,
    load_original_checkpoint,
    save_model_weights,
    save_original_checkpoint,
    weights_dir,
)
from dmri_rcnn.errors import EXIT_BAD_INPUT, InputError


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Announces 1000 bytes and sends 10, like a dropped connection."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def _own_weights_home(tmp_path, monkeypatch):
    """Each test starts with an empty $DMRI_RCNN_DIR (the shared one lives for the whole session)."""
    monkeypatch.setenv("DMRI_RCNN_DIR", str(tmp_path / "dmri_rcnn_home"))


@pytest.fixture
def serve(monkeypatch):
    """Start an HTTP server on 127.0.0.1 for a folder (or handler); point DMRI_RCNN_WEIGHTS_URL at it."""
    servers = []

    def start(folder: Path | None = None, handler=None):
        handler = handler or functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        monkeypatch.setenv("DMRI_RCNN_WEIGHTS_URL", f"http://127.0.0.1:{server.server_address[1]}/")
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def model_1d():
    return get_1d_autoencoder()


def _random_weights(model, seed):
    rng = np.random.default_rng(seed)
    for var in model.weights:
        value = rng.normal(0, 0.1, tuple(var.shape)) + (1.0 if var.name in ("gamma", "moving_variance") else 0.0)
        var.assign(value.astype(np.float32))


def test_directory_layout_follows_the_original(tmp_path, monkeypatch):
    monkeypatch.setenv("DMRI_RCNN_DIR", str(tmp_path))
    assert weights_dir(3, 1000, 6) == tmp_path / "3D_RCNN" / "b1000_6in"
    assert weights_dir(1, 3000, 10) == tmp_path / "1D_RCNN" / "b3000_10in"
    assert weights_dir(3, 2000, 10, combined=True) == tmp_path / "3D_RCNN" / "all_10in"
    assert weights_dir(3, 1000, 10, combined=True, norm=True) == tmp_path / "3D_RCNN" / "all_norm_10in"
    assert weights_dir(3, "all_norm", 10) == tmp_path / "3D_RCNN" / "all_norm_10in"
    monkeypatch.delenv("DMRI_RCNN_DIR")
    assert weights_dir(3, 1000, 6) == Path.home() / ".dmri_rcnn" / "3D_RCNN" / "b1000_6in"


@pytest.mark.parametrize(
    "args, match",
    [
        ((1, 1000, 10, True), "no published weights for the 1D model, combined"),
        ((3, 2000, 6), "no published weights for the 3D model, b=2000, q_in=6"),
        ((3, 1000, 30, True), "combined, q_in=30"),
        ((3, 1000, 7), "q_in=7"),
        ((3, 1500, 10), "b=1500"),
    ],
)
def test_combinations_without_weights_are_input_errors(args, match):
    with pytest.raises(InputError, match=match):
        get_weights(*args)


def test_norm_needs_combined():
    with pytest.raises(InputError, match="needs combined=True"):
        get_weights(3, 1000, 10, norm=True)


def test_download_from_local_server_then_load(tmp_path, serve, model_1d):
    _random_weights(model_1d, 0)
    published = PUBLISHED_WEIGHTS[(1, 1000, 6)]
    files = tmp_path / "server" / str(published.record) / "files"
    save_original_checkpoint(model_1d, files / "weights")
    assert sorted(p.name for p in files.iterdir()) == sorted(published.file_names())
    serve(tmp_path / "server")

    prefix = get_weights(model_dim=1, shell=1000, q_in=6, progress=False)
    assert Path(prefix) == weights_dir(1, 1000, 6) / "weights"
    for name in published.file_names():
        assert (Path(prefix).parent / name).read_bytes() == (files / name).read_bytes()
    loaded = get_1d_autoencoder(prefix)
    for a, b in zip(loaded.weights, model_1d.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    # Present files are not fetched again.
    shutil.rmtree(tmp_path / "server")
    assert get_weights(1, 1000, 6, progress=False) == prefix


def test_failed_download_names_expected_path_and_leaves_nothing(tmp_path, serve):
    (tmp_path / "empty").mkdir()
    serve(tmp_path / "empty")
    with pytest.raises(InputError) as err:
        get_weights(3, 1000, 6, progress=False)
    folder = weights_dir(3, 1000, 6)
    message = str(err.value)
    assert str(folder / "weights.index") in message
    assert "zenodo.org/record/6397318" in message and "dmri_rcnn_download_all_weights.py" in message
    assert "\n" not in message
    assert list(folder.iterdir()) == []


def test_truncated_download_is_not_kept(serve):
    serve(handler=_TruncatingHandler)
    with pytest.raises(InputError, match="downloading .* failed"):
        get_weights(1, 2000, 10, progress=False)
    assert list(weights_dir(1, 2000, 10).iterdir()) == []


def test_without_download_missing_weights_name_the_path():
    with pytest.raises(InputError, match=r"1D_RCNN/b3000_10in/weights\.index"):
        get_weights(1, 3000, 10, download=False)


def test_download_all_weights_command(tmp_path, serve, capsys):
    for key, published in PUBLISHED_WEIGHTS.items():
        files = tmp_path / "server" / str(published.record) / "files"
        files.mkdir(parents=True, exist_ok=True)
        for name in published.file_names():
            (files / name).write_bytes(f"{key} {name}".encode())
    serve(tmp_path / "server")
    assert download_all_weights.main(["--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == len(PUBLISHED_WEIGHTS)
    index = weights_dir(3, "all_norm", 10) / "weights.index"
    assert index.read_bytes() == b"(3, 'all_norm', 10) weights.index"
    assert (weights_dir(1, 1000, 10) / "weights.data-00001-of-00002").is_file()


def test_download_all_weights_reports_failure(tmp_path, serve, capsys):
    (tmp_path / "empty").mkdir()
    serve(tmp_path / "empty")
    assert download_all_weights.main(["--no-progress"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("dmri_rcnn_download_all_weights.py: error: 1D b1000 q_in=6") and err.count("\n") == 1


def test_mismatched_checkpoint_names_first_variable(tmp_path, model_1d):
    save_original_checkpoint(model_1d, tmp_path / "ck1" / "weights")
    with pytest.raises(InputError) as err:
        get_3d_autoencoder(str(tmp_path / "ck1" / "weights"))
    message = str(err.value)
    assert "layer_with_weights-0/layer_with_weights-1/conv_layer/layer/kernel" in message
    assert "(1, 1, 1, 200, 376)" in message and "(1, 1, 1, 200, 104)" in message


def test_missing_checkpoint_names_index_path(tmp_path, model_1d):
    with pytest.raises(InputError, match=r"expected .*nowhere/weights\.index"):
        load_original_checkpoint(model_1d, tmp_path / "nowhere" / "weights")


def test_checkpoint_folder_and_index_path_are_accepted(tmp_path, model_1d):
    _random_weights(model_1d, 3)
    save_original_checkpoint(model_1d, tmp_path / "ck" / "weights")
    for form in (tmp_path / "ck", tmp_path / "ck" / "weights.index"):
        other = get_1d_autoencoder(form)
        np.testing.assert_array_equal(other.weights[0].numpy(), model_1d.weights[0].numpy())


def test_own_weights_h5_roundtrip_and_errors(tmp_path, model_1d):
    _random_weights(model_1d, 1)
    path = save_model_weights(model_1d, tmp_path / "trained.weights.h5")
    assert [p.name for p in tmp_path.iterdir()] == ["trained.weights.h5"]  # no temporary left
    loaded = get_1d_autoencoder(str(path))
    for a, b in zip(loaded.weights, model_1d.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(InputError, match="weights file not found"):
        get_1d_autoencoder(str(tmp_path / "missing.weights.h5"))
    with pytest.raises(InputError, match="weights of another architecture: expected the 3D model"):
        get_3d_autoencoder(str(path))
