"""ONNX Runtime backends.

* ``x86``: the CPU execution provider.
* ``x86-gpu``: CUDA (``DeviceId`` picks the GPU).
* ``tensorrt`` and ``jetson``: TensorRT through ONNX Runtime's TensorRT execution provider,
  CUDA for what TensorRT cannot run.  Engines are built on first start (minutes on a Jetson)
  and cached under ``DataDirectory/cache/tensorrt/<TensorRT version>-fp<16|32>/<model>``: the
  models folder may be read-only in a container, an engine only loads on the TensorRT version
  that built it, and an FP16 engine is not an FP32 one.

GPU backends need the ``onnxruntime-gpu`` wheel (``pip install '.[gpu]'``; on a Jetson, NVIDIA's
build).  When the GPU provider is missing they refuse to start rather than silently running
ten times slower on the CPU.  Secondary ONNX models (face mask, demographics) run on CUDA on
every GPU backend (:meth:`CudaDetector.open_secondary`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort

from libs.config.models import DetectorConfig
from libs.detectors import DETECTORS, ModelDetector
from libs.detectors.families import InputShape
from libs.detectors.secondary import OnnxModel, OrtModel

log = logging.getLogger(__name__)

Provider = str | tuple[str, dict[str, str]]

# Sonames of TensorRT's core library, newest first (JetPack 6 ships 10, JetPack 5 ships 8).
NVINFER_LIBRARIES = ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so")


def session_options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads steal the cores that video decoding and the other stages need.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def nvinfer_version_string(code: int) -> str:
    """``getInferLibVersion()``'s integer as ``major.minor.patch``: TensorRT 10 and later
    encode ``major * 10000 + minor * 100 + patch``, earlier ones ``major * 1000 + ...``."""
    major, rest = divmod(code, 10000) if code >= 100000 else divmod(code, 1000)
    minor, patch = divmod(rest, 100)
    return f"{major}.{minor}.{patch}"


def tensorrt_version(libraries: Sequence[str] = NVINFER_LIBRARIES) -> str:
    """The TensorRT version of this machine: the ``tensorrt`` Python package's if importable,
    else the ``libnvinfer`` library's, else ``"unknown"``."""
    try:
        import tensorrt  # type: ignore[import-not-found]

        return str(tensorrt.__version__)
    except ImportError:
        pass
    for name in libraries:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            lib.getInferLibVersion.restype = ctypes.c_int32
            return nvinfer_version_string(int(lib.getInferLibVersion()))
        except AttributeError:
            continue
    return "unknown"


def engine_cache_dir(data_dir: Path, model_path: Path, precision: int, version: str) -> Path:
    """Where TensorRT engines of ``model_path`` built with ``version`` at ``precision`` bits
    are kept: ``<data_dir>/cache/tensorrt/<version>-fp<precision>/<model stem>``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", version) or "unknown"
    return data_dir / "cache" / "tensorrt" / f"{safe}-fp{precision}" / model_path.stem


class OnnxRuntimeDetector(ModelDetector):
    device_name = "x86"
    providers: ClassVar[tuple[str, ...]] = ("CPUExecutionProvider",)
    install_hint = "use Device = x86"

    def provider_list(self) -> list[Provider]:
        """Execution providers with their options, best first."""
        return list(self.providers)

    @classmethod
    def provider_problem(cls, available: Sequence[str]) -> str | None:
        """Why the backend cannot run when ``available`` are the installed providers."""
        if cls.providers[0] not in available:
            return (
                f"Detector Device {cls.device_name!r} needs {cls.providers[0]}, which this "
                f"onnxruntime build does not have (it has {', '.join(available)}); "
                f"{cls.install_hint}"
            )
        return None

    @classmethod
    def unavailable(cls, config: DetectorConfig) -> str | None:
        return cls.provider_problem(ort.get_available_providers())

    def check_providers(self, available: Sequence[str]) -> None:
        """Refuse to start when the backend's first provider is missing from ``available``."""
        problem = self.provider_problem(available)
        if problem is not None:
            raise RuntimeError(problem)

    def load(self) -> None:
        self.check_providers(ort.get_available_providers())
        self.session = ort.InferenceSession(
            str(self.model_path), session_options(self.config.threads),
            providers=self.provider_list(),
        )
        self.check_started(self.session.get_providers())
        self.input_name = self.session.get_inputs()[0].name

    def check_started(self, started: Sequence[str]) -> None:
        """Refuse a session whose first provider did not start: ONNX Runtime falls back to the
        CPU with a warning when CUDA or TensorRT cannot start (no GPU, driver or CUDA
        libraries), which would run a GPU configuration on the CPU unnoticed."""
        if self.providers[0] not in started:
            raise RuntimeError(
                f"Detector Device {self.device_name!r}: {self.providers[0]} is installed but "
                f"did not start (the session runs on {', '.join(started)}); check the GPU, its "
                f"driver and the CUDA libraries (onnxruntime's warnings above say which is "
                f"missing), or use Device = x86"
            )

    def input_shape(self) -> InputShape:
        shape = self.session.get_inputs()[0].shape
        return [d if isinstance(d, int) else None for d in shape]

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        return list(self.session.run(None, {self.input_name: tensor}))


@DETECTORS.register("x86")
class CpuDetector(OnnxRuntimeDetector):
    device_name = "x86"
    providers: ClassVar[tuple[str, ...]] = ("CPUExecutionProvider",)
    scales_by_sessions = True


def cuda_providers(config: DetectorConfig) -> list[Provider]:
    return [("CUDAExecutionProvider", {"device_id": str(config.device_id)}),
            "CPUExecutionProvider"]


@DETECTORS.register("x86-gpu")
class CudaDetector(OnnxRuntimeDetector):
    device_name = "x86-gpu"
    providers: ClassVar[tuple[str, ...]] = ("CUDAExecutionProvider", "CPUExecutionProvider")
    install_hint = ("install the GPU build (pip install '.[gpu]') on a machine with an NVIDIA "
                    "GPU, or use Device = x86")
    secondary_placement = "ONNX Runtime, CUDA (DeviceId)"

    def provider_list(self) -> list[Provider]:
        return cuda_providers(self.config)

    @classmethod
    def open_secondary(cls, path: Path, threads: int, config: DetectorConfig) -> OnnxModel:
        # CUDA, not TensorRT, on every GPU backend: the demographics models take a dynamic
        # batch, which TensorRT would rebuild engines for.
        return OrtModel(path, threads, cuda_providers(config))


@DETECTORS.register("tensorrt")
class TensorRTDetector(CudaDetector):
    device_name = "tensorrt"
    providers: ClassVar[tuple[str, ...]] = (
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    install_hint = ("install the GPU build of onnxruntime (pip install '.[gpu]') and TensorRT "
                    "on a machine with an NVIDIA GPU, or use Device = x86-gpu for CUDA alone")

    def engine_cache(self) -> Path:
        return engine_cache_dir(self.data_dir, self.model_path, self.config.tensorrt_precision,
                                tensorrt_version())

    def provider_list(self) -> list[Provider]:
        trt: dict[str, Any] = {
            "device_id": str(self.config.device_id),
            "trt_fp16_enable": "True" if self.config.tensorrt_precision == 16 else "False",
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(self.engine_cache()),
        }
        return [("TensorrtExecutionProvider", trt), *cuda_providers(self.config)]

    def load(self) -> None:
        self.check_providers(ort.get_available_providers())
        cache = self.engine_cache()
        cache.mkdir(parents=True, exist_ok=True)
        if not any(cache.iterdir()):
            log.warning("building the TensorRT engine of %s in %s (minutes on a Jetson; "
                        "cached for the next start)", self.model_path.name, cache)
        super().load()


@DETECTORS.register("jetson")
class JetsonDetector(TensorRTDetector):
    device_name = "jetson"
    install_hint = ("install NVIDIA's onnxruntime-gpu build for your JetPack (docs/devices.md, "
                    "or the jetson-nano image), or use Device = x86 on the CPU")
