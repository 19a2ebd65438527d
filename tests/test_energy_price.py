"""Energy meters (RAPL on a written powercap folder), the price catalogue and its TOML extension, roofline counts."""

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from tests.conftest import run_cli
from xpubench.core.cell import Cell, CellResult, Energy
from xpubench.errors import UsageError
from xpubench.hardware import catalogue, energy, host, roofline
from xpubench.hardware.catalogue import SECONDS_PER_YEAR, Entry, PriceSettings


@pytest.fixture(autouse=True)
def no_user_catalogue(monkeypatch, tmp_path):
    """Neither $XPUBENCH_CATALOGUE nor a ~/.config file is read unless a test writes one."""
    monkeypatch.delenv("XPUBENCH_CATALOGUE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


# -- the catalogue -------------------------------------------------------------------------------


def test_the_source_studies_devices_are_in_the_catalogue():
    known = catalogue.load()
    i7 = known.find("Intel(R) Core(TM) i7-8550U CPU @ 1.80GHz", kind="cpu")
    assert (i7.id, i7.tdp_w, i7.price_usd) == ("i7-8550u", 15, 409)
    p100 = known.find("Tesla P100-PCIE-16GB", kind="gpu")
    assert (p100.tdp_w, p100.price_usd) == (250, 7500)
    assert p100.cloud_usd_per_h * catalogue.HOURS_PER_MONTH == pytest.approx(9.99)
    assert known.find("Tesla T4", kind="gpu").tdp_w == 70
    assert known.find("Tesla V100-SXM2-16GB", kind="gpu").tdp_w == 300
    assert known.find("Tesla V100-PCIE-32GB", kind="gpu").tdp_w == 250
    coral = catalogue.entry_for_device("edgetpu:usb:0", known)
    assert (coral.tdp_w, coral.price_usd) == (2, 60)
    assert [known.get(i).tdp_w for i in ("jetson-nano", "jetson-tx2", "jetson-xavier")] == [10, 15, 30]
    assert known.find("STM32F407 (Cortex-M4)").kind == "mcu"
    assert known.find("AMD EPYC 7763 64-Core Processor", kind="cpu").tdp_w == 280
    assert catalogue.cpu_tdp_w("Intel(R) Core(TM) i7-8550U CPU @ 1.80GHz") == 15
    assert catalogue.cpu_tdp_w("Some CPU nobody sells") is None


def test_a_cells_device_maps_to_its_entry_and_emulated_devices_have_none():
    known = catalogue.load()
    assert catalogue.entry_for_device("cpu", known) == known.find(host.cpu_model(), kind="cpu")
    assert catalogue.entry_for_device("mcu-emulated", known) is None
    assert catalogue.entry_for_device("fpga-emulated", known) is None
    assert catalogue.entry_for_device("remote:http://x:8000", known) is None
    assert catalogue.price_for_cell("mcu-emulated", 1.0, catalogue=known) is None
    if catalogue.gpu_name(0) is None:
        assert catalogue.entry_for_device("cuda:0", known) is None


def test_a_toml_file_corrects_and_extends_the_catalogue(tmp_path, monkeypatch):
    path = tmp_path / "mine.toml"
    path.write_text(
        """
        [device.i7-8550u]
        price_usd = 380

        [device.my-npu]
        name = "Acme NPU 1"
        kind = "tpu"
        match = ["Acme NPU"]
        tdp_w = 5
        cloud_usd_per_h = 0.5

        [price]
        lifetime_years = 5
        usd_per_kwh = 0.30
        """
    )
    known = catalogue.load(path)
    assert known.get("i7-8550u").price_usd == 380 and known.get("i7-8550u").tdp_w == 15
    assert known.find("Acme NPU 1 rev b").id == "my-npu"
    assert known.settings == PriceSettings(lifetime_years=5, usd_per_kwh=0.30)
    assert known.files == (str(path),)
    # The environment variable names the same file for every command.
    monkeypatch.setenv("XPUBENCH_CATALOGUE", str(path))
    assert catalogue.load().get("my-npu") is not None
    monkeypatch.delenv("XPUBENCH_CATALOGUE")
    # So does the default place under the config folder.
    default = tmp_path / "config" / "xpubench" / "catalogue.toml"
    default.parent.mkdir(parents=True)
    default.write_text(path.read_text())
    assert catalogue.load().get("i7-8550u").price_usd == 380


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[device.x\nprice_usd = 1", "not valid TOML"),
        ("[device.x]\nprice = 1", "unknown key(s) price"),
        ("[device.x]\ntdp_w = -3", "tdp_w must be a positive number"),
        ("[device.x]\nkind = 'fpga'", "kind must be one of"),
        ("[devices.x]\ntdp_w = 3", "unknown table(s) devices"),
    ],
)
def test_a_bad_catalogue_file_is_one_line_error(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match="bad.toml") as caught:
        catalogue.load(path)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_the_cli_exits_2_with_one_line_for_a_bad_catalogue(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[device.x\n")
    done = run_cli("devices", "--catalogue", str(path), timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not valid TOML" in done.stderr, done.stderr
    good = tmp_path / "good.toml"
    good.write_text('[device.my-npu]\nname = "Acme NPU"\nkind = "tpu"\ntdp_w = 5\nprice_usd = 99\n')
    done = run_cli("devices", "--catalogue", str(good), "--list-catalogue", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "my-npu" in done.stdout and "i7-8550u" in done.stdout and "energy" in done.stdout


def test_price_per_million_inferences():
    i7 = Entry("i7", "i7", "cpu", tdp_w=15, price_usd=409)
    settings = PriceSettings(lifetime_years=3, duty=1.0, usd_per_kwh=0.15)
    found = catalogue.price_per_million(i7, 1e-3, settings=settings)
    capital = 409 / (3 * SECONDS_PER_YEAR) * 1e-3
    electricity = 15 * 1e-3 / 3.6e6 * 0.15
    assert found["usd_per_million"] == pytest.approx((capital + electricity) * 1e6)
    assert "purchase $409 over 3 y at 100% duty" in found["basis"] and "TDP x time" in found["basis"]
    # Half the duty doubles the capital share; a measured energy replaces TDP x time.
    half = catalogue.price_per_million(i7, 1e-3, energy_j=0.002, settings=PriceSettings(duty=0.5))
    assert half["usd_per_million"] == pytest.approx((2 * capital + 0.002 / 3.6e6 * 0.15) * 1e6)
    assert "measured energy" in half["basis"]
    # The study's P100 at $9.99/month: both bases are given, the purchase is the headline.
    p100 = catalogue.load().get("tesla-p100")
    both = catalogue.price_per_million(p100, 2e-3)
    assert both["cloud_usd_per_million"] == pytest.approx(9.99 / 730 / 3600 * 2e-3 * 1e6)
    assert both["usd_per_million"] == both["owned_usd_per_million"] and both["device"] == "tesla-p100"
    cloud_only = catalogue.price_per_million(Entry("t4", "T4", "gpu", tdp_w=70, cloud_usd_per_h=0.35), 1e-3)
    assert cloud_only["usd_per_million"] == pytest.approx(0.35 / 3600 * 1e-3 * 1e6)
    assert cloud_only["basis"].startswith("cloud $0.35/h")
    assert catalogue.price_per_million(Entry("n", "n", "cpu", tdp_w=5), 1e-3) is None
    # A vCPU price is for each logical CPU of the host.
    vcpu = Entry("v", "v", "cpu", cloud_usd_per_h=0.04, per_vcpu=True)
    expected = 0.04 * host.logical_cpus() / 3600 * 1e-3 * 1e6
    assert catalogue.price_per_million(vcpu, 1e-3)["usd_per_million"] == pytest.approx(expected)
    coral = catalogue.price_for_cell("edgetpu:usb:0", 2.0)
    assert coral["device"] == "coral-edgetpu" and coral["usd_per_million"] > 0


# -- energy --------------------------------------------------------------------------------------


def write_zone(root, name, label, value_uj, range_uj=2**32):
    zone = root / name
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "name").write_text(f"{label}\n")
    (zone / "energy_uj").write_text(f"{value_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return zone


def test_rapl_reads_packages_and_undoes_the_wrap_around(tmp_path):
    root = tmp_path / "powercap"
    pkg0 = write_zone(root, "intel-rapl:0", "package-0", 2**32 - 1_000_000)
    pkg1 = write_zone(root, "intel-rapl:1", "package-1", 5_000_000, range_uj=262_143_328_850)
    core = write_zone(root, "intel-rapl:0:0", "core", 7)  # inside package-0: not added again
    write_zone(root, "intel-rapl-mmio:0", "package-0", 9)  # the same package through MMIO
    meter = energy.RaplMeter(root)
    assert meter.source == "rapl:package-0+package-1"
    with meter.measuring() as reading:
        (pkg0 / "energy_uj").write_text("500000\n")  # wrapped: 1.0 J to the top, then 0.5 J
        (pkg1 / "energy_uj").write_text("7000000\n")  # +2 J
        (core / "energy_uj").write_text("999999999\n")
        assert meter.joules() == pytest.approx(3.5)
        (pkg0 / "energy_uj").write_text("2500000\n")  # +2 J more, read at the end
    assert reading.joules == pytest.approx(5.5)
    assert reading.seconds > 0 and reading.watts == pytest.approx(5.5 / reading.seconds)


def test_psys_is_used_only_where_there_is_no_package_zone(tmp_path):
    root = tmp_path / "powercap"
    write_zone(root, "intel-rapl:0", "package-0", 0)
    write_zone(root, "intel-rapl:1", "psys", 0)
    assert energy.RaplMeter(root).source == "rapl:package-0"
    only = tmp_path / "only"
    write_zone(only, "intel-rapl:0", "psys", 0)
    assert energy.RaplMeter(only).source == "rapl:psys"


def test_no_meter_is_a_one_line_reason_and_the_energy_stays_modelled(tmp_path):
    empty = tmp_path / "no-powercap"
    assert energy.meter_for("cpu", empty) is None
    reason = energy.why_no_meter("cpu", empty)
    assert reason.startswith("RAPL not readable here") and "\n" not in reason
    assert energy.why_no_meter("mcu-emulated") == "no energy meter for mcu-emulated devices"
    # This machine, as it is: either a meter or a reason, never both and never an exception.
    for device in ("cpu", "cuda:0"):
        meter, why = energy.meter_for(device), energy.why_no_meter(device)
        assert (meter is None) != (why is None)
    if not os.path.exists("/sys/class/powercap"):
        assert "RAPL not readable here" in energy.why_no_meter("cpu")
    if energy.meter_for("cuda:0") is None:
        assert "NVML" in energy.why_no_meter("cuda:0")
    record = CellResult(Cell("m", "null"), "ok", energy=Energy.modelled(15.0, 2.0)).as_dict()
    assert record["energy"] == {"k_w_ms": 30.0, "tdp_w": 15.0, "source": "modelled"}
    assert record["price"] is None and record["roofline"] is None


def test_measured_energy_subtracts_idle_power_per_inference(tmp_path):
    root = tmp_path / "powercap"
    zone = write_zone(root, "intel-rapl:0", "package-0", 1_000_000)
    meter = energy.RaplMeter(root)
    with meter.measuring() as reading:
        (zone / "energy_uj").write_text("31000000\n")  # 30 J over the window
    reading.seconds = 2.0  # the window as if it had lasted 2 s: 15 W
    samples = np.full(100, 1_000_000, dtype=np.int64)  # 100 calls of 1 ms, batch 2
    measured = Energy.measured(reading, 5.0, samples, batch_size=2, tdp_w=15.0, per_sample_ms=0.5)
    # (15 W - 5 W idle) x 0.1 s busy / 200 inferences
    assert measured.joules_per_inference == pytest.approx(0.005)
    assert measured.source == "rapl:package-0"
    # The K-function stays TDP x time per inference beside the measurement, never the measured energy.
    assert measured.k_w_ms == pytest.approx(15.0 * 0.5)
    record = measured.as_dict()
    assert record["power_w"] == pytest.approx(15.0) and record["idle_w"] == 5.0
    # Idle power is measured once per meter and kept.
    assert energy.idle_power(meter, seconds=0.05) == energy.idle_power(meter, seconds=5) == 0.0
    assert energy.idle_power(None) is None


# -- roofline ------------------------------------------------------------------------------------


def onnx_model(tmp_path, nodes, inputs, outputs, weights):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        [numpy_helper.from_array(np.ones(s, np.float32), n) for n, s in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return path


def test_roofline_counts_an_onnx_graph_analytically(tmp_path):
    from onnx import helper

    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("ConvTranspose", ["p", "wt"], ["u"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["u"], ["f"]),
        helper.make_node("Gemm", ["f", "g", "gb"], ["y"], transB=1),
        helper.make_node("Softmax", ["y"], ["out"]),
    ]
    weights = {"w": (8, 3, 3, 3), "b": (8,), "s": (8,), "bb": (8,), "m": (8,), "v": (8,), "wt": (8, 2, 2, 2),
               "g": (10, 2 * 16 * 16), "gb": (10,)}
    path = onnx_model(tmp_path, nodes, [("x", ["N", 3, 16, 16])], [("out", ["N", 10])], weights)
    conv = 2 * 8 * 16 * 16 * 3 * 9 + 8 * 16 * 16
    norm = 2 * 8 * 16 * 16
    relu = 8 * 16 * 16
    pool = 8 * 8 * 8 * 4
    transposed = 2 * (8 * 8 * 8) * 2 * 2 * 2  # each input element x Cout x kernel
    gemm = 2 * 512 * 10 + 10
    expected = conv + norm + relu + pool + transposed + gemm + 3 * 10
    one, four = roofline.count(path, 1), roofline.count(path, 4)
    assert one["flops"] == four["flops"] == expected
    weight_bytes = 4 * sum(int(np.prod(s)) for s in weights.values())
    assert one["weight_bytes"] == weight_bytes and one["uncounted_ops"] == []
    activations = 4 * (  # inputs read and outputs written by every node but Flatten
        (3 * 256 + 8 * 256) + 2 * 8 * 256 + 2 * 8 * 256 + (8 * 256 + 8 * 64) + (8 * 64 + 2 * 256) + (512 + 10) + 20
    )
    assert one["bytes"] == weight_bytes + activations
    assert four["bytes"] == pytest.approx(weight_bytes / 4 + activations)  # weights read once per batch
    assert one["intensity"] == pytest.approx(expected / one["bytes"])


@pytest.mark.slow
def test_roofline_of_a_keras_dense_and_conv_model_equals_the_analytic_count(tmp_path):
    from xpubench.convert.keras import keras_to_onnx, quiet_tensorflow

    quiet_tensorflow()
    import keras

    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            # Non-zero biases, as after training: the exporter folds zero ones away.
            keras.layers.Conv2D(4, 3, activation="relu", bias_initializer="ones"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(5, activation="softmax", bias_initializer="ones"),
        ]
    )
    path = keras_to_onnx(model, tmp_path / "keras.onnx")  # as the zoo's models are exported
    conv = 2 * (6 * 6 * 4) * (3 * 3 * 3) + 6 * 6 * 4 + 6 * 6 * 4  # MACs, bias, relu
    pool = 3 * 3 * 4 * (2 * 2)
    dense = 2 * 36 * 5 + 5 + 3 * 5  # MACs, bias, softmax
    counted = roofline.count(path, 3)
    assert counted["flops"] == conv + pool + dense, counted
    assert counted["weight_bytes"] >= 4 * (3 * 3 * 3 * 4 + 4 + 36 * 5 + 5)


def test_the_matmul_peak_is_measured_once_and_cached(tmp_path):
    found = roofline.peak(1)
    peak = found["gflops"]
    assert peak > 0 and found["under_load"] in (True, False)
    cached = json.loads((roofline_cache()).read_text())
    assert cached[f"{host.cpu_model()}|threads=1"] == found
    assert roofline.peak(1) == found  # from the cache: no second probe
    path = onnx_model(tmp_path, [__import__("onnx").helper.make_node("MatMul", ["x", "w"], ["y"])],
                      [("x", ["N", 64])], [("y", ["N", 64])], {"w": (64, 64)})
    found = roofline.for_cell(path, 1, per_sample_ms=0.01, threads=1)
    assert found["flops"] == 2 * 64 * 64
    assert found["gflops"] == pytest.approx(2 * 64 * 64 / 1e-5 / 1e9)
    assert found["peak_fraction"] == pytest.approx(found["gflops"] / peak)
    assert roofline.for_cell(path, 1, 0.01, device="cuda:0")["peak_fraction"] is None
    broken = roofline.for_cell(tmp_path / "missing.onnx", 1, 0.01)
    assert set(broken) == {"error"} and "\n" not in broken["error"]


def test_a_peak_probed_under_load_is_marked_and_probed_again_later(tmp_path, monkeypatch):
    monkeypatch.setenv("XPUBENCH_CACHE", str(tmp_path))
    probes = iter([(30.0, 0.45), (25.0, 0.6), (90.0, 0.98)])  # (GFLOP/s, the probe's share of its core)
    monkeypatch.setattr(roofline, "_measure_peak", lambda threads: next(probes))
    key = f"{host.cpu_model()}|threads=1"

    def age(seconds):
        cached = json.loads(roofline_cache().read_text())
        cached[key]["measured_at"] -= seconds
        roofline_cache().write_text(json.dumps(cached))

    loaded = roofline.peak(1)
    assert (loaded["gflops"], loaded["under_load"]) == (30.0, True)
    assert roofline.peak(1) == loaded  # too soon to probe again
    age(roofline.REPROBE_AFTER_S + 1)
    still = roofline.peak(1)  # probed again, under load again: the better figure stays
    assert (still["gflops"], still["under_load"], still["cpu_share"]) == (30.0, True, 0.6)
    age(roofline.REPROBE_AFTER_S + 1)
    quiet = roofline.peak(1)
    assert (quiet["gflops"], quiet["under_load"]) == (90.0, False)
    age(10 * roofline.REPROBE_AFTER_S)
    assert roofline.peak(1) == json.loads(roofline_cache().read_text())[key]  # a quiet peak stays
    path = onnx_model(tmp_path, [__import__("onnx").helper.make_node("MatMul", ["x", "w"], ["y"])],
                      [("x", ["N", 64])], [("y", ["N", 64])], {"w": (64, 64)})
    assert roofline.for_cell(path, 1, per_sample_ms=0.01)["peak_under_load"] is False


def test_the_probe_sees_other_processes_taking_its_core():
    """Two busy loops per CPU leave the probe well under half of its core."""
    import subprocess
    import sys

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * host.logical_cpus())]
    try:
        gflops, share = roofline._measure_peak(1)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert gflops > 0
    assert share < roofline.UNDER_LOAD_SHARE, share


def roofline_cache():
    from xpubench.paths import cache_dir

    return cache_dir() / "roofline-peak.json"


NVML_STUB = r"""
/* The NVML calls xpubench makes, with nvml.h's signatures; the energy counter advances 250 mJ per read. */
typedef struct nvmlDevice_st *nvmlDevice_t;
static unsigned long long energy = 1000000ULL;
static struct nvmlDevice_st { int index; } devices[1];
int nvmlInit_v2(void) { return 0; }
const char *nvmlErrorString(int code) { return code == 2 ? "Invalid Argument" : "Unknown Error"; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (index > 0) return 2;
    *device = &devices[index];
    return 0;
}
int nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    const char *text = "Tesla T4";
    unsigned int i = 0;
    for (; text[i] && i + 1 < length; i++) name[i] = text[i];
    name[i] = 0;
    return device == &devices[0] ? 0 : 2;
}
int nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *value) {
    energy += 250;
    *value = energy;
    return device == &devices[0] ? 0 : 2;
}
"""


def test_the_nvml_meter_through_a_library_with_nvmls_signatures(tmp_path):
    """No GPU here: a stand-in libnvidia-ml.so.1 checks the ctypes calls and the device mapping."""
    import shutil
    import subprocess
    import sys

    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build the stand-in library")
    (tmp_path / "nvml.c").write_text(NVML_STUB)
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(tmp_path / "libnvidia-ml.so.1"), str(tmp_path / "nvml.c")],
                   check=True)
    code = (
        "from xpubench.hardware import catalogue, energy\n"
        "meter = energy.meter_for('cuda:0')\n"
        "with meter.measuring() as reading:\n"
        "    pass\n"
        "print(meter.source, reading.joules, catalogue.gpu_name(0), catalogue.entry_for_device('cuda:0').id)\n"
        "print(energy.why_no_meter('cuda:1'))\n"
    )
    env = {**os.environ, "LD_LIBRARY_PATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == "nvml:0 0.25 Tesla T4 tesla-t4"
    assert second == "NVML not readable here: getting GPU 1 failed: Invalid Argument"


# -- wired into the sweep ------------------------------------------------------------------------


class WallClockMeter(energy.Meter):
    """A meter whose counter rises at 10 W of wall time and whose idle power is 4 W: 6 W net."""

    source = "test:0"

    def joules(self):
        import time

        return 10.0 * time.perf_counter()

    def power_w(self, seconds):
        return 4.0


def test_measure_cell_records_the_meter_the_price_and_the_roofline(tmp_path, monkeypatch):
    from onnx import helper

    from xpubench.core.measure import MeasureConfig
    from xpubench.models import resolve
    from xpubench.run.cell_runner import measure_cell
    from xpubench.run.matrix import CellSettings

    path = onnx_model(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", ["N", 32])],
                      [("y", ["N", 16])], {"w": (32, 16)})
    workload = resolve(str(path), say=lambda _m: None)
    config = MeasureConfig(warmup_runs=2, warmup_time_s=0, min_runs=30, min_time_s=0)
    cell = Cell(path.name, "onnxruntime", batch_size=4)
    # As on this machine: the meter or the model, named either way.
    record = measure_cell(cell, workload, CellSettings(config, 15.0)).as_dict()
    assert record["status"] == "ok", record["reason"]
    meter = energy.meter_for("cpu")
    assert record["energy"]["source"] == (meter.source if meter else "modelled")
    entry = catalogue.entry_for_device("cpu")
    if entry is not None and (entry.price_usd or entry.cloud_usd_per_h):
        assert record["price"]["device"] == entry.id and record["price"]["usd_per_million"] > 0
        assert record["price"]["time_per_inference_ms"] == pytest.approx(record["per_sample_ms"])
    else:
        assert record["price"] is None
    roof = record["roofline"]
    assert roof["flops"] == 2 * 32 * 16 and roof["counted_from"] == str(path)
    assert roof["gflops"] == pytest.approx(2 * 32 * 16 / (record["per_sample_ms"] / 1e3) / 1e9)
    assert roof["peak_fraction"] == pytest.approx(roof["gflops"] / roof["peak_gflops"])
    # A readable meter: its source, idle subtracted, joules per inference from busy time.
    monkeypatch.setattr(energy, "meter_for", lambda device: WallClockMeter())
    # The meter and the window's clock are read one after the other: over 0.2 s, a stall of a few ms
    # between the two reads (a loaded machine) moves the power by a percent, not to 6 W (idle not
    # subtracted) or 4 W.
    result = measure_cell(cell, workload, CellSettings(replace(config, min_time_s=0.2), 15.0))
    measured = result.as_dict()["energy"]
    assert measured["source"] == "test:0" and measured["idle_w"] == 4.0
    assert measured["power_w"] == pytest.approx(10.0, rel=2e-2)
    busy_s = result.samples_ns.sum() / 1e9
    expected = (measured["power_w"] - 4.0) * busy_s / (result.runs * 4)
    assert measured["joules_per_inference"] == pytest.approx(expected)


def test_score_uses_the_models_metric_and_the_delta_against_the_reference(tmp_path):
    from onnx import helper

    from xpubench.backends import get_backend
    from xpubench.models import resolve
    from xpubench.run.cell_runner import score

    # y = sum of the 8 inputs: a regression whose resolution is 0 against that truth.
    path = onnx_model(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", ["N", 8])],
                      [("y", ["N", 1])], {"w": (8, 1)})
    x = np.random.default_rng(0).uniform(1, 2, (50, 8)).astype(np.float32)
    noisy = x.sum(axis=1, keepdims=True) * np.random.default_rng(1).uniform(0.8, 1.2, (50, 1))
    workload = replace(resolve(str(path), say=lambda _m: None), x_eval=x, y_eval=x.sum(axis=1), metric="resolution",
                       reference=([noisy.astype(np.float32)], "a noisier reference"))
    backend = get_backend("onnxruntime")(path)
    try:
        found = score(backend, workload, 8)
        assert found["accuracy_metric"] == "resolution" and found["accuracy_value"] == pytest.approx(0, abs=1e-6)
        # Lower is better for resolution: this model beats its reference, so the delta is negative.
        assert found["accuracy_delta"] < -0.05
        workload = replace(workload, metric="auc", y_eval=(x[:, 0] > 1.5).astype(np.int64))
        found = score(backend, workload, 8)
        assert found["accuracy_metric"] == "auc" and 0.5 < found["accuracy_value"] <= 1
        workload = replace(workload, y_eval=np.zeros(50, np.int64))  # one class: no AUC, and no failed cell
        assert "accuracy_value" not in score(backend, workload, 8)
    finally:
        backend.close()
