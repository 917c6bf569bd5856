"""Arithmetic precision of the models: which ones exist, and which one ``auto`` picks on this machine.

A model's weights are float32 whatever the precision; the precision says what the layers compute in:

- ``fp32``: float32 throughout (the paper, and the default everywhere, so that results do not depend on
  the machine);
- ``bf16``: bfloat16 layers (Keras ``mixed_bfloat16``) with float32 weights, optimizer and loss; fast
  where the hardware has bf16 units (x86 CPUs with AVX512-BF16 or AMX-BF16, NVIDIA GPUs of compute
  capability 8.0 and newer), emulated and slow elsewhere;
- ``fp16``: float16 layers (Keras ``mixed_float16``) with dynamic loss scaling in training; the fast
  path of NVIDIA GPUs of compute capability 7.x (V100, T4), which have no fast bf16.

``auto`` is opt-in (``training.precision: auto``, ``run_dmri_rcnn.py --precision auto``):
:func:`choose_precision` turns it into one of the three from the devices TensorFlow sees and says why.
Trained models record the precision actually used in their description (``best.weights.json``).

Importing this module does not import TensorFlow; only :func:`choose_precision` and
:func:`configure_devices` do.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from dmri_rcnn.errors import InputError
from dmri_rcnn.tensorflow_env import ONEDNN_VARIABLE, onednn_enabled

log = logging.getLogger(__name__)

#: Precisions a model can compute in, and the Keras dtype policy each builds the layers under.
KERAS_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
#: The precisions a model can compute in: ``fp32``, ``bf16`` and ``fp16``.
PRECISIONS = tuple(KERAS_POLICIES)
#: What a user may ask for: a precision, or ``auto`` (the fastest one the hardware runs natively).
PRECISION_REQUESTS = (*PRECISIONS, "auto")
#: CPU flags (Linux ``/proc/cpuinfo``) of native bfloat16 arithmetic.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def precision_problem(precision, allowed: tuple[str, ...] = PRECISIONS) -> str | None:
    """Why ``precision`` is not one of ``allowed`` (:data:`PRECISIONS`, or :data:`PRECISION_REQUESTS` where
    ``auto`` may still be resolved), or None: the one check of a precision, whoever is given one."""
    if precision in allowed:
        return None
    return f"precision is {precision!r}; expected one of {', '.join(allowed)}"


def check_precision(precision, allowed: tuple[str, ...] = PRECISIONS) -> str:
    """``precision`` if it is one of ``allowed``, else InputError (:func:`precision_problem`)."""
    problem = precision_problem(precision, allowed)
    if problem:
        raise InputError(problem)
    return precision


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where ``/proc/cpuinfo`` does not exist)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_bf16_kind(flags: set[str] | None = None) -> tuple[bool, str]:
    """``(native, why)``: whether this CPU computes bfloat16 natively through TensorFlow's kernels.

    Native needs the hardware (AVX512-BF16 or AMX-BF16) and oneDNN's kernels (Eigen's emulate bf16 on
    any CPU: several times slower than fp32, and less exact).
    """
    flags = cpu_flags() if flags is None else flags
    found = [flag for flag in CPU_BF16_FLAGS if flag in flags]
    if not found:
        return False, "the CPU has no native bf16 (neither AVX512-BF16 nor AMX-BF16)"
    if not onednn_enabled():
        return False, f"the CPU has {'/'.join(found)} but {ONEDNN_VARIABLE}=0 turns off the oneDNN kernels that use it"
    return True, f"the CPU has native bf16 ({'/'.join(found)})"


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a model runs in, why, and the devices that were found."""

    precision: str
    reason: str
    devices: str

    def describe(self) -> str:
        """One log line: ``precision fp32 (asked for); devices: CPU (x86_64, AVX2 + FMA, oneDNN on)``."""
        return f"precision {self.precision} ({self.reason}); devices: {self.devices}"


def _gpu_capabilities() -> list[tuple[str, tuple[int, int] | None]]:
    """``(name, (major, minor))`` of every GPU TensorFlow sees (capability None where it is not reported)."""
    # lazy: the precision checks run without TensorFlow
    import tensorflow as tf

    found = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (RuntimeError, ValueError):
            details = {}
        capability = details.get("compute_capability")
        found.append((details.get("device_name", device.name), tuple(capability) if capability else None))
    return found


def describe_cpu(flags: set[str] | None = None) -> str:
    """``CPU (x86_64, AVX-512 + AVX512-BF16, oneDNN on)``: what the CPU offers these models."""
    flags = cpu_flags() if flags is None else flags
    simd = []
    if "avx512f" in flags:
        simd.append("AVX-512")
    elif "avx2" in flags:
        simd.append("AVX2" + (" + FMA" if "fma" in flags else ""))
    simd += [flag.upper().replace("_", "-") for flag in CPU_BF16_FLAGS if flag in flags]
    parts = [platform.machine() or "unknown architecture", " + ".join(simd) if simd else None,
             f"oneDNN {'on' if onednn_enabled() else 'off'}"]
    return f"CPU ({', '.join(part for part in parts if part)})"


def choose_precision(requested: str, gpus: list[tuple[str, tuple[int, int] | None]] | None = None,
                     flags: set[str] | None = None) -> PrecisionChoice:
    """The precision to run in for ``requested`` (a precision or ``auto``), with the reason.

    ``auto``: with GPUs, the precision all of them run fast (compute capability >= 8.0: bf16; 7.x: fp16;
    older or unknown: fp32); on the CPU, bf16 where it is native (:func:`cpu_bf16_kind`), else fp32. An
    explicit precision is kept as asked; the reason then warns when it is emulated.

    ``gpus`` and ``flags`` default to what TensorFlow and ``/proc/cpuinfo`` report (given, for tests).
    """
    check_precision(requested, PRECISION_REQUESTS)
    gpus = _gpu_capabilities() if gpus is None else gpus
    devices = [f"GPU {name}" + (f" (compute capability {cap[0]}.{cap[1]})" if cap else "") for name, cap in gpus]
    devices = ", ".join(devices) or describe_cpu(flags)
    if gpus:
        capabilities = [cap for _, cap in gpus]
        lowest = min(capabilities) if all(capabilities) else None
        if requested != "auto":
            return PrecisionChoice(requested, "asked for", devices)
        if lowest is not None and lowest >= (8, 0):
            return PrecisionChoice("bf16", "auto: GPUs of compute capability >= 8.0 compute bf16 natively", devices)
        if lowest is not None and lowest >= (7, 0):
            return PrecisionChoice("fp16", "auto: GPUs of compute capability 7.x have fast fp16, not bf16", devices)
        return PrecisionChoice("fp32", "auto: the GPUs have neither fast bf16 nor fast fp16", devices)
    native, why = cpu_bf16_kind(flags)
    if requested == "auto":
        return PrecisionChoice("bf16" if native else "fp32", f"auto: {why}", devices)
    if requested == "bf16" and not native:
        return PrecisionChoice("bf16", f"asked for, although {why}: TensorFlow emulates it, slower than fp32 and "
                               "less exact", devices)
    if requested == "fp16":
        return PrecisionChoice("fp16", "asked for, although CPUs run fp16 emulated, slower than fp32", devices)
    return PrecisionChoice(requested, "asked for", devices)


def configure_devices() -> None:
    """Let every visible GPU's memory grow as needed instead of reserving it whole at start-up.

    So several TensorFlow jobs can share one GPU. Call before the first TensorFlow operation; later it
    is a no-op (TensorFlow refuses the change once a GPU is initialised).
    """
    # lazy: the precision checks run without TensorFlow
    import tensorflow as tf

    for device in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(device, True)
        except (RuntimeError, ValueError):
            log.debug("memory growth of %s not changed: the GPU is already initialised", device.name)
