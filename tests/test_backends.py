"""Detector backends behind the registry, model families behind theirs, and where the
secondary models run.

Hardware this machine lacks (NVIDIA GPU, TensorRT, Jetson, Coral EdgeTPU, Intel GPU/NPU) is
tested up to its boundary: the provider list, delegate options and cache paths built, and the
clear error when the runtime is missing.  Everything that runs here (ONNX Runtime CPU,
OpenVINO CPU, LiteRT CPU) runs for real.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from libs.config import load_config
from libs.config.models import DetectorConfig
from libs.detectors import DETECTORS, create_detector, model_format, resolve_model_path
from libs.detectors.families import MODEL_FAMILIES, InputShape, ModelFamily, default_models
from libs.detectors.families.yolox import Letterbox, YoloxCodec
from libs.detectors.secondary import open_onnx_model, placement_key
from libs.frame import Detections
from libs.geometry import iou_matrix

REPO = Path(__file__).resolve().parents[1]
ONNX = "models/person_yolox_nano_416.onnx"
TFLITE = "models/person_yolox_nano_416_fp16.tflite"
BACKENDS_HERE = ("x86", "openvino", "tflite")


def config_with(path: Path, **detector: str) -> Path:
    """``path`` with [Detector] keys replaced or added."""
    text = path.read_text()
    for key, value in detector.items():
        line = re.compile(rf"^{key} = .*$", re.M)
        if line.search(text):
            text = line.sub(f"{key} = {value}", text, count=1)
        else:
            text = text.replace("[Detector]\n", f"[Detector]\n{key} = {value}\n", 1)
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------
# Model families
# ---------------------------------------------------------------------------------------


def test_default_model_files_come_from_the_family_per_format(x86_config: Path) -> None:
    assert default_models()["yolox_nano"] == {".onnx": ONNX, ".tflite": TFLITE}
    assert model_format("x86") == model_format("openvino") == ".onnx"
    assert model_format("tflite") == model_format("edgetpu") == ".tflite"
    for device, default in (("x86", ONNX), ("openvino", ONNX), ("tflite", TFLITE),
                            ("edgetpu", TFLITE), ("tensorrt", ONNX)):
        cfg = load_config(config_with(x86_config, Device=device, ModelPath=""))
        assert resolve_model_path(cfg) == cfg.asset_path(default), device


def test_an_unknown_family_is_refused_at_load(x86_config: Path) -> None:
    from libs.config import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(config_with(x86_config, Name="ssd_mobilenet"))
    (problem,) = info.value.problems
    assert (problem.section, problem.key) == ("Detector", "Name")
    assert "yolox_nano" in problem.message and "ssd_mobilenet" in problem.message


class StretchFamily(ModelFamily):
    """Test-only: the YOLOX model fed a plain stretch of the image (no letterbox), boxes
    scaled back per axis.  Nothing in a backend knows it."""

    default_models = {".onnx": ONNX, ".tflite": TFLITE}

    def __init__(self, input_shape: InputShape, config: DetectorConfig) -> None:
        super().__init__(input_shape, config)
        height, width = input_shape[2], input_shape[3]
        assert isinstance(height, int) and isinstance(width, int)
        self.codec = YoloxCodec(width, height)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        import cv2

        h, w = image.shape[:2]
        size = (self.codec.input_width, self.codec.input_height)
        tensor = cv2.resize(image, size).transpose(2, 0, 1)[None].astype(np.float32)
        return tensor, (w / size[0], h / size[1])

    def decode(self, outputs: Sequence[np.ndarray], context: Any) -> Detections:
        sx, sy = context
        c = self.config
        unit = Letterbox(1.0, self.codec.input_width, self.codec.input_height)
        dets = self.codec.postprocess(outputs[0], unit, c.class_id, c.min_score, c.nms_threshold)
        dets.boxes = dets.boxes * np.array([sx, sy, sx, sy], np.float32)
        return dets


@pytest.fixture
def stretch_family() -> Iterator[str]:
    name = "test_yolox_stretch"
    MODEL_FAMILIES.register(name)(StretchFamily)
    yield name
    MODEL_FAMILIES._items.pop(name)


def test_a_second_family_runs_on_every_backend_here_unchanged(
    stretch_family: str, x86_config: Path, pets_frames: list
) -> None:
    image = pets_frames[0]
    found: dict[str, Detections] = {}
    for device in BACKENDS_HERE:
        cfg = load_config(config_with(x86_config, Device=device, Name=stretch_family,
                                      ModelPath="", MinScore="0.35"))
        det = create_detector(cfg)
        assert isinstance(det.family, StretchFamily)
        assert det.model_path.suffix == det.model_format  # the family's file of its format
        found[device] = det.detect(image)
    letterboxed = DETECTORS.get("x86")(DetectorConfig(MinScore=0.35),
                                       cfg.asset_path(ONNX)).detect(image)
    ref = found["x86"]
    assert len(ref) >= 3
    for device in BACKENDS_HERE:
        other = found[device]
        assert abs(len(other) - len(ref)) <= 1, device
        assert np.median(iou_matrix(ref.boxes, other.boxes).max(axis=1)) >= 0.9, device
    # The same people as the YOLOX family finds from a differently prepared input: the boxes
    # were scaled back per axis to the 768x576 frame.
    best = iou_matrix(letterboxed.boxes, ref.boxes).max(axis=1)
    assert (best >= 0.5).mean() >= 0.8
    assert not np.allclose(np.sort(ref.scores), np.sort(letterboxed.scores)[-len(ref):])


def test_family_reads_the_input_size_from_the_model(shared: Path) -> None:
    det = DETECTORS.get("x86")(DetectorConfig(ImageSize="320,320"), shared / ONNX)
    assert det.input_shape() == [1, 3, 416, 416]
    assert (det.family.codec.input_width, det.family.codec.input_height) == (416, 416)


# ---------------------------------------------------------------------------------------
# OpenVINO
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "available", "expected"),
    [
        ("CPU", ["CPU"], "CPU"),
        ("AUTO", ["CPU"], "CPU"),
        ("AUTO", ["CPU", "GPU"], "GPU"),
        ("AUTO", ["CPU", "GPU.0", "GPU.1", "NPU"], "NPU"),
        ("AUTO", ["CPU", "GPU.0", "GPU.1"], "GPU.0"),
        ("GPU", ["CPU", "GPU.0", "GPU.1"], "GPU.0"),
        ("GPU.1", ["CPU", "GPU.0", "GPU.1"], "GPU.1"),
        ("GPU.0", ["CPU", "GPU"], "GPU"),
        ("NPU", ["CPU", "NPU"], "NPU"),
    ],
)
def test_openvino_device_choice(wanted: str, available: list[str], expected: str) -> None:
    from libs.detectors.openvino_backend import resolve_device

    assert resolve_device(wanted, available) == expected


@pytest.mark.parametrize(("wanted", "available"),
                         [("NPU", ["CPU"]), ("GPU", ["CPU", "NPU"]), ("GPU.2", ["GPU.0", "GPU.1"])])
def test_openvino_missing_device_names_what_is_present(wanted: str, available: list[str]) -> None:
    from libs.detectors.openvino_backend import resolve_device

    with pytest.raises(ValueError, match=f"OpenvinoDevice {re.escape(wanted)}: ") as info:
        resolve_device(wanted, available)
    assert f"available: {', '.join(available)}" in str(info.value)


def test_openvino_refuses_a_device_this_machine_lacks(shared: Path) -> None:
    import openvino as ov

    present = ov.Core().available_devices
    missing = next((d for d in ("NPU", "GPU") if not any(p.startswith(d) for p in present)), None)
    if missing is None:
        pytest.skip("this machine has an NPU and a GPU")
    with pytest.raises(RuntimeError, match=f"OpenvinoDevice {missing}: ") as info:
        DETECTORS.get("openvino")(DetectorConfig(Device="openvino", OpenvinoDevice=missing),
                                  shared / ONNX)
    assert f"available: {', '.join(present)}" in str(info.value)


def test_openvino_runs_f32_by_default_and_the_precision_key_reaches_it(shared: Path) -> None:
    from libs.detectors.openvino_backend import compile_properties

    cfg = DetectorConfig(Device="openvino", Threads=1)
    assert cfg.openvino_device == "CPU" and cfg.openvino_precision == "f32"
    assert compile_properties(cfg, "CPU") == {"INFERENCE_PRECISION_HINT": "f32",
                                              "INFERENCE_NUM_THREADS": "1"}
    assert compile_properties(cfg, "GPU") == {"INFERENCE_PRECISION_HINT": "f32"}
    # several sessions on the CPU: one model for as many streams, every session's threads
    two = cfg.model_copy(update={"sessions": 2})
    assert compile_properties(two, "CPU") == {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2",
        "INFERENCE_NUM_THREADS": "2"}
    assert compile_properties(two, "GPU") == {"INFERENCE_PRECISION_HINT": "f32"}
    assert compile_properties(cfg.model_copy(update={"openvino_precision": "default"}),
                              "NPU") == {}
    det = DETECTORS.get("openvino")(DetectorConfig(Device="openvino", OpenvinoDevice="auto"),
                                    shared / ONNX)
    assert det.device == "CPU"  # AUTO on a machine with a CPU only
    assert str(det.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"


def test_openvino_keys_are_checked_at_load(x86_config: Path) -> None:
    from libs.config import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(config_with(x86_config, Device="openvino", OpenvinoDevice="TPU"))
    (problem,) = info.value.problems
    assert (problem.section, problem.key) == ("Detector", "OpenvinoDevice")
    assert "CPU, GPU, GPU.<n>, NPU or AUTO" in str(info.value)


# ---------------------------------------------------------------------------------------
# TensorRT and Jetson (ONNX Runtime's TensorRT provider): up to the hardware boundary
# ---------------------------------------------------------------------------------------


def unloaded(device: str, data_dir: Path, model: Path, **keys: Any) -> Any:
    """A backend object with its configuration but no session (that needs the hardware)."""
    cls = DETECTORS.get(device)
    det = cls.__new__(cls)
    det.config = DetectorConfig(Device=device, **keys)
    det.model_path = model
    det.data_dir = data_dir
    return det


@pytest.mark.parametrize("device", ["tensorrt", "jetson"])
@pytest.mark.parametrize("precision", [16, 32])
def test_tensorrt_providers_and_engine_cache_per_version_and_precision(
    device: str, precision: int, tmp_path: Path, shared: Path
) -> None:
    from libs.detectors.onnxruntime_backend import tensorrt_version

    det = unloaded(device, tmp_path, shared / ONNX, TensorrtPrecision=precision, DeviceId=1)
    (trt, opts), (cuda, cuda_opts), cpu = det.provider_list()
    assert (trt, cuda, cpu) == ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                                "CPUExecutionProvider")
    assert opts["trt_fp16_enable"] == ("True" if precision == 16 else "False")
    assert opts["device_id"] == cuda_opts["device_id"] == "1"
    assert opts["trt_engine_cache_enable"] == "True"
    version = tensorrt_version()
    assert Path(opts["trt_engine_cache_path"]) == (
        tmp_path / "cache" / "tensorrt" / f"{version}-fp{precision}" / "person_yolox_nano_416")


def test_engine_cache_lives_under_the_data_directory(x86_config: Path, tmp_path: Path) -> None:
    cfg = load_config(x86_config)
    det = create_detector(cfg)
    assert det.data_dir == cfg.data_dir
    trt = unloaded("tensorrt", cfg.data_dir, det.model_path)
    assert cfg.data_dir in Path(trt.engine_cache()).parents
    assert cfg.assets_dir not in Path(trt.engine_cache()).parents


def test_tensorrt_version_lookup() -> None:
    from libs.detectors.onnxruntime_backend import nvinfer_version_string, tensorrt_version

    assert nvinfer_version_string(8601) == "8.6.1"  # TensorRT 8: major * 1000
    assert nvinfer_version_string(100300) == "10.3.0"  # TensorRT 10: major * 10000
    assert nvinfer_version_string(8502) == "8.5.2"
    try:
        import tensorrt  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        assert tensorrt_version(["libnvinfer-not-here.so"]) == "unknown"
        # libc has no getInferLibVersion: a library without it is passed over.
        assert tensorrt_version(["libc.so.6"]) == "unknown"
    else:
        pytest.skip("the tensorrt package is installed here")


def test_cache_dir_names_are_safe(tmp_path: Path) -> None:
    from libs.detectors.onnxruntime_backend import engine_cache_dir

    path = engine_cache_dir(tmp_path, Path("/m/person.onnx"), 16, "10.3/../x y")
    assert path.parent.name == "10.3_.._x_y-fp16" and tmp_path in path.parents


@pytest.mark.parametrize("device", ["x86-gpu", "tensorrt", "jetson"])
def test_gpu_backends_refuse_without_their_provider(device: str, shared: Path) -> None:
    cls = DETECTORS.get(device)
    first = cls.providers[0]
    if first in ort.get_available_providers():
        pytest.skip(f"this machine has {first}")
    with pytest.raises(RuntimeError, match=f"Device '{device}' needs {first}") as info:
        cls(DetectorConfig(Device=device), shared / ONNX)
    assert "CPUExecutionProvider" in str(info.value) and "Device = " in str(info.value)


# ---------------------------------------------------------------------------------------
# EdgeTPU and LiteRT
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("device_id", "option"), [(0, ":0"), (2, ":2")])
def test_edgetpu_delegate_selects_the_accelerator(device_id: int, option: str) -> None:
    from libs.detectors.litert_backend import edgetpu_options

    assert edgetpu_options(DetectorConfig(Device="edgetpu", DeviceId=device_id)) == {
        "device": option}


# ai-edge-litert's Delegate.__del__ trips over the half-made delegate of a failed load.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_edgetpu_without_libedgetpu_is_a_clear_error(shared: Path) -> None:
    import ctypes

    from libs.detectors.litert_backend import EDGETPU_LIBRARY

    try:
        ctypes.CDLL(EDGETPU_LIBRARY)
    except OSError:
        pass
    else:
        pytest.skip("libedgetpu is installed here")
    with pytest.raises(RuntimeError, match=EDGETPU_LIBRARY) as info:
        DETECTORS.get("edgetpu")(DetectorConfig(Device="edgetpu", DeviceId=1), shared / TFLITE)
    text = str(info.value)
    assert "':1'" in text and "Device = tflite" in text
    del info
    gc.collect()  # the failed delegate goes here, under this test's warning filter


def test_litert_quantizes_integer_models_with_their_scales() -> None:
    from libs.detectors.litert_backend import dequantize, quantize

    float_in = {"dtype": np.float32, "quantization": (0.0, 0)}
    x = np.array([[0.0, 114.0, 255.0]], np.float32)
    assert quantize(x, float_in) is x
    uint8_in = {"dtype": np.uint8, "quantization": (1.0, 0)}
    np.testing.assert_array_equal(quantize(x, uint8_in), [[0, 114, 255]])
    int8_in = {"dtype": np.int8, "quantization": (1.0, -128)}
    q = quantize(x, int8_in)
    assert q.dtype == np.int8 and q.tolist() == [[-128, -14, 127]]
    int8_out = {"dtype": np.int8, "quantization": (0.5, 10)}
    np.testing.assert_allclose(dequantize(np.array([10, 12, -128], np.int8), int8_out),
                               [0.0, 1.0, -69.0])
    with pytest.raises(ValueError, match="without quantization"):
        quantize(x, {"dtype": np.int8, "quantization": (0.0, 0), "name": "images"})


def test_litert_needs_a_tflite_file(shared: Path) -> None:
    with pytest.raises(ValueError, match=r"needs a \.tflite ModelPath"):
        DETECTORS.get("tflite")(DetectorConfig(Device="tflite"), shared / ONNX)


# ---------------------------------------------------------------------------------------
# Secondary models on the detector's device
# ---------------------------------------------------------------------------------------

MASK = "models/facemask_rfb640_masked_face_v2.onnx"


def test_secondary_models_follow_the_detector_device(shared: Path) -> None:
    from libs.detectors.onnxruntime_backend import cuda_providers

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1, 3, 480, 640)).astype(np.float32)
    cpu = open_onnx_model(shared / MASK, 1)
    x86 = open_onnx_model(shared / MASK, 1, DetectorConfig(Device="x86"))
    ov = open_onnx_model(shared / MASK, 1, DetectorConfig(Device="openvino"))
    assert cpu.where == x86.where == "onnxruntime CPUExecutionProvider"
    assert ov.where == "openvino CPU"
    ref = cpu.run({"input": x})
    for got in (x86.run({"input": x}), ov.run({"input": x})):
        assert [a.shape for a in got] == [a.shape for a in ref]
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4)
    # GPU backends open secondary models on CUDA with the detector's DeviceId.
    assert cuda_providers(DetectorConfig(Device="jetson", DeviceId=1)) == [
        ("CUDAExecutionProvider", {"device_id": "1"}), "CPUExecutionProvider"]
    assert placement_key(None) != placement_key(DetectorConfig(Device="openvino"))


def test_demographics_on_openvino_match_onnx_runtime(shared: Path) -> None:
    from libs.post_processors.demographics import FaceModels

    m = shared / "models"
    paths = (m / "age_cydral_v1.onnx", m / "gender_cydral_v1.onnx",
             m / "emotion_mini_xception_fer2013_64.onnx")
    rng = np.random.default_rng(1)
    chips64 = [rng.integers(0, 255, (64, 64, 3), np.uint8) for _ in range(3)]
    chips32 = [rng.integers(0, 255, (32, 32, 3), np.uint8) for _ in range(3)]
    cpu = FaceModels(*paths, threads=1)
    ov = FaceModels(*paths, threads=1, detector=DetectorConfig(Device="openvino"))
    assert ov.age.where == "openvino CPU"
    # Batches of 3 and of 1: the batch dimension is dynamic on both runtimes.
    np.testing.assert_allclose(ov.ages(chips64), cpu.ages(chips64), atol=0.05)
    np.testing.assert_allclose(ov.ages(chips64[:1]), cpu.ages(chips64[:1]), atol=0.05)
    np.testing.assert_allclose(ov.male_probabilities(chips32), cpu.male_probabilities(chips32),
                               atol=1e-4)
    np.testing.assert_allclose(ov.emotions(chips64), cpu.emotions(chips64), atol=1e-4)


def test_devices_doc_table_says_where_each_backend_runs_secondary_models() -> None:
    text = (REPO / "docs" / "devices.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9-]+)` \|.*$", text, re.M)}
    assert set(rows) >= set(DETECTORS.names())
    for name in DETECTORS.names():
        assert DETECTORS.get(name).secondary_placement in rows[name], name
