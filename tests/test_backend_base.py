"""What every backend shares through `Backend`: the constructor, the "can it run here" check, package versions."""

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest

from xpubench.backends import backend_names, get_backend
from xpubench.backends.null import NullBackend
from xpubench.backends.onnxruntime import OnnxRuntimeBackend
from xpubench.hardware.gpu import nvidia_gpu_count
from xpubench.run.environment import package_versions

ALL = backend_names(include_hidden=True)


@pytest.mark.parametrize("name", ALL)
def test_each_backend_class_reports_its_package_versions(name):
    cls = get_backend(name)
    versions = cls.package_versions()
    declared = [d for d in (cls.distribution, *cls.depends_on) if d]
    assert set(versions) <= set(declared)
    for distribution in declared:
        try:
            installed = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            assert distribution not in versions  # missing packages are simply absent
        else:
            assert versions[distribution] == installed
    if cls.distribution:
        assert versions.get(cls.distribution) == cls.version()


def test_the_installed_runtimes_report_their_versions():
    assert set(get_backend("onnxruntime").package_versions()) >= {"onnxruntime"}
    assert set(get_backend("litert").package_versions()) >= {"ai-edge-litert"}
    assert set(get_backend("openvino").package_versions()) >= {"openvino", "nncf"}
    assert set(get_backend("torch").package_versions()) >= {"torch"}
    assert get_backend("null").package_versions() == {}


def test_environment_records_every_backends_packages():
    recorded = package_versions()
    for distribution in ("numpy", "onnx", "onnxruntime", "openvino", "torch", "ai-edge-litert"):
        assert recorded[distribution] == importlib.metadata.version(distribution)
    for name in ALL:
        assert get_backend(name).package_versions().items() <= recorded.items()


def test_recording_versions_imports_no_framework():
    heavy = ["tensorflow", "keras", "torch", "onnxruntime", "openvino", "ai_edge_litert", "onnx", "hls4ml",
             "tflite_micro", "nncf", "tensorrt"]
    code = textwrap.dedent(
        f"""
        import sys
        from xpubench.run.environment import package_versions
        assert 'onnxruntime' in package_versions()
        print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_an_unimportable_runtime_is_not_installed_in_one_line(monkeypatch):
    monkeypatch.setattr(OnnxRuntimeBackend, "module", "onnxruntime_absent_for_this_test")
    expected = "onnxruntime is not installed (pip install onnxruntime)"
    assert OnnxRuntimeBackend.unavailable_reason() == expected
    assert OnnxRuntimeBackend.unavailable_reason("cuda:0", "fp16") == expected  # the package is what to fix first

    class Nested(NullBackend):
        name = "nested"
        distribution = None
        module = "xpubench_absent_package.runtime"  # its parent package is missing too

    assert Nested.unavailable_reason() == "xpubench_absent_package.runtime is not installed (pip install " \
        "xpubench_absent_package.runtime)"


@pytest.mark.parametrize("name", [n for n in ALL if "cuda" in get_backend(n).devices])
def test_cuda_needs_an_nvidia_gpu(name):
    cls = get_backend(name)
    reason = cls.unavailable_reason("cuda:0")
    if not cls.importable():
        assert reason == f"{cls.distribution} is not installed (pip install {cls.distribution})"
    elif nvidia_gpu_count() == 0:
        assert reason.startswith("no NVIDIA GPU here") and "\n" not in reason
    else:
        assert reason is None or "no NVIDIA GPU" not in reason


@pytest.mark.parametrize("name", ALL)
def test_every_reason_is_one_line(name):
    cls = get_backend(name)
    for device in (*cls.devices, "cuda", "nowhere"):
        for precision in (*cls.precisions, "fp64"):
            reason = cls.unavailable_reason(device, precision)
            assert reason is None or (reason and "\n" not in reason)
    assert "nowhere" in cls.unavailable_reason("nowhere") or not cls.importable()


def test_declared_capabilities_decide():
    assert NullBackend.unavailable_reason() is None
    assert NullBackend.unavailable_reason("cuda") == "null runs on cpu, not cuda"
    assert NullBackend.unavailable_reason(precision="bf16") == "null has no bf16 variant (it has fp32, fp16, int8)"
    assert NullBackend.unavailable_reason(options={"turbo": "on"}) == "null has no option 'turbo' (it has none)"
    ort = get_backend("onnxruntime")
    assert ort.unavailable_reason(options={"ep": "tensorrt"}) == "the TensorRT provider runs on cuda, not cpu"
    assert ort.unavailable_reason(options={"ep": "fast"}) == "onnxruntime option ep takes default|tensorrt, not 'fast'"


def test_the_constructor_defaults_to_the_first_device_and_precision():
    class Emulated(NullBackend):
        name = "emulated"
        devices = ("fpga-emulated",)
        precisions = ("fixed<16,6>",)
        option_choices = {"speed": ("slow", "fast")}

    backend = Emulated(threads=3)
    assert (backend.device, backend.precision, backend.threads) == ("fpga-emulated", "fixed<16,6>", 3)
    assert backend.options == {"speed": "slow"} and backend.artifact.name == "null"
    assert backend.calls == 0  # load() ran
    assert Emulated(precision="fixed<8,3>", options={"speed": "fast"}).options == {"speed": "fast"}
    with pytest.raises(ValueError, match="emulated option speed takes slow|fast, not 'warp'"):
        Emulated(options={"speed": "warp"})
