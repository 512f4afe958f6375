"""Energy meters against a fake powercap tree and a fake NVML module."""

import json
import os
import threading
import time
import types
from pathlib import Path

import pytest
import torch

from mtad.job import energy
from mtad.job.energy import build_meter
from mtad.errors import UserError
from mtad.job.harness import run_job

ROOT = Path(__file__).resolve().parent.parent

CPU = [torch.device("cpu")]
GPU = [torch.device("cuda", 0)]


def write_domain(root, name, energy_uj, max_uj=1_000_000_000):
    domain = root / name
    domain.mkdir(exist_ok=True)
    (domain / "energy_uj").write_text(f"{energy_uj}\n")
    (domain / "max_energy_range_uj").write_text(f"{max_uj}\n")


def test_rapl_sums_packages_ignores_subdomains_and_handles_wrap(tmp_path):
    write_domain(tmp_path, "intel-rapl:0", 999_000_000)
    write_domain(tmp_path, "intel-rapl:1", 5_000_000)
    write_domain(tmp_path, "intel-rapl:0:0", 123)  # core sub-domain: already inside package 0
    meter = build_meter("auto", CPU, powercap=tmp_path)
    try:
        assert meter.source == "rapl"
        start = meter.joules()
        write_domain(tmp_path, "intel-rapl:0", 2_000_000)    # wrapped: +1 J to the top, +2 J after it
        write_domain(tmp_path, "intel-rapl:1", 8_500_000)    # +3.5 J
        write_domain(tmp_path, "intel-rapl:0:0", 99_999_999)
        assert meter.joules() - start == pytest.approx(1.0 + 2.0 + 3.5)
    finally:
        meter.close()


def test_unreadable_or_missing_rapl(tmp_path):
    assert build_meter("auto", CPU, powercap=tmp_path).source == "none"
    with pytest.raises(UserError, match="meter=rapl: no RAPL"):
        build_meter("rapl", CPU, powercap=tmp_path)
    (tmp_path / "intel-rapl:0").mkdir()  # present but no readable counter, as for a non-root user
    with pytest.raises(UserError, match="not readable"):
        build_meter("rapl", CPU, powercap=tmp_path)


def test_no_meter_reports_none_never_a_guess(tmp_path):
    meter = build_meter("none", CPU, powercap=tmp_path)
    assert meter.source == "none" and meter.joules() is None and meter.idle_watts(0.1) is None
    with pytest.raises(UserError, match="unknown meter"):
        build_meter("tdp", CPU)
    with pytest.raises(UserError, match="not on a GPU"):
        build_meter("nvml", CPU)


class FakeNVML(types.SimpleNamespace):
    """The part of pynvml the meter uses; device 0 has an energy counter, device 1 only power."""

    class NVMLError(Exception):
        pass

    def __init__(self, fail_init=False):
        super().__init__(millijoules=[10_000, None], milliwatts=[0, 200_000], fail_init=fail_init, shut=False)

    def nvmlInit(self):
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self.millijoules[handle] is None:
            raise self.NVMLError("Not Supported")
        return self.millijoules[handle]

    def nvmlDeviceGetPowerUsage(self, handle):
        return self.milliwatts[handle]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fake NVML numbers devices by index, as on a CPU host")
def test_nvml_energy_counter():
    nvml = FakeNVML()
    meter = energy.nvml_meter([0], nvml)
    start = meter.joules()
    nvml.millijoules[0] += 2_500
    assert meter.source == "nvml" and meter.joules() - start == pytest.approx(2.5)
    meter.close()
    assert nvml.shut


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fake NVML numbers devices by index, as on a CPU host")
def test_nvml_without_counter_integrates_sampled_power_over_real_time():
    meter = energy.nvml_meter([1], FakeNVML())  # a constant 200 W
    try:
        assert meter.source == "nvml-power"
        start, began = meter.joules(), time.monotonic()
        time.sleep(0.3)
        joules, seconds = meter.joules() - start, time.monotonic() - began
        assert joules == pytest.approx(200 * seconds, rel=0.05)
    finally:
        meter.close()


def test_nvml_that_does_not_start_falls_back_under_auto_and_fails_when_asked_for(tmp_path):
    down = FakeNVML(fail_init=True)
    assert build_meter("auto", GPU, powercap=tmp_path, nvml=down).source == "none"
    with pytest.raises(UserError, match="meter=nvml: NVML did not initialise: Driver Not Loaded"):
        build_meter("nvml", GPU, powercap=tmp_path, nvml=down)


def test_a_job_records_energy_per_sample_and_in_total(tmp_path, monkeypatch):
    """A RAPL counter that a thread advances by 1 mJ per millisecond, read by a real job."""
    from hydra import compose, initialize_config_dir

    write_domain(tmp_path, "intel-rapl:0", 0)
    counter, stop = tmp_path / "intel-rapl:0" / "energy_uj", threading.Event()

    def advance():
        uj = 0
        while not stop.wait(0.001):
            uj += 1000
            (tmp_path / "next").write_text(str(uj))
            os.replace(tmp_path / "next", counter)  # atomic: a reader never sees a half-written file

    monkeypatch.setattr(energy, "POWERCAP", tmp_path)
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=["pair=tiny", "task=synthetic", "task.limit=2", "decoder=spd",
                                           "max_new_tokens=16", f"results_dir={tmp_path / 'results'}",
                                           "meter_idle_seconds=0.2"])
    writer = threading.Thread(target=advance, daemon=True)
    writer.start()
    try:
        summary = run_job(cfg, tmp_path / "job")
    finally:
        stop.set()
        writer.join()
    samples = [json.loads(line) for line in (tmp_path / "job" / "samples.jsonl").read_text().splitlines()]
    assert summary["energy_source"] == "rapl" and summary["energy_joules"] > 0
    assert summary["energy_joules"] == pytest.approx(sum(s["energy_joules"] for s in samples))
    assert summary["joules_per_token"] == pytest.approx(summary["energy_joules"] / summary["totals"]["new_tokens"])
    assert 0 < summary["idle_watts"] < 2  # 1 W from the fake counter, whatever the thread's lag
