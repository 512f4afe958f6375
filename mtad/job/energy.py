"""Energy meters: joules read from hardware counters, or nothing at all.

- ``nvml``: each GPU's total-energy counter (mJ since the driver loaded), summed over the GPUs the
  models use; a GPU without that counter has its power draw sampled by a thread and integrated
  over real timestamps instead.
- ``rapl``: the CPU package counters under ``/sys/class/powercap`` (uJ), polled by a thread often
  enough that no wrap-around of a counter goes unseen.
- ``none``: energy is null. Energy is never estimated from a TDP or any other guess.

``Meter.joules()`` is cumulative since the meter was built; a timed region's energy is the
difference of two readings. Readings synchronize the GPU first, so queued kernels are counted.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from mtad.errors import UserError

METERS = ("auto", "nvml", "rapl", "none")
POWERCAP = Path("/sys/class/powercap")
RAPL_POLL_SECONDS = 1.0    # a package counter wraps after minutes at full power
POWER_POLL_SECONDS = 0.02  # sampling period where only instantaneous power is available


class _Counter:
    """A monotonic energy counter in joules that wraps to zero after ``wrap`` joules (None: never)."""

    def __init__(self, read: Callable[[], float], wrap: float | None = None):
        self.read, self.wrap = read, wrap
        self.last = read()
        self.joules = 0.0

    def update(self, now: float) -> None:
        raw = self.read()
        delta = raw - self.last
        if delta < 0 and self.wrap:
            delta += self.wrap
        self.joules += max(delta, 0.0)
        self.last = raw


class _PowerIntegral:
    """Trapezoidal integral of sampled power (W) over the real time between samples."""

    def __init__(self, read_watts: Callable[[], float], now: float):
        self.read = read_watts
        self.last_time, self.last_watts = now, read_watts()
        self.joules = 0.0

    def update(self, now: float) -> None:
        watts = self.read()
        self.joules += 0.5 * (watts + self.last_watts) * (now - self.last_time)
        self.last_time, self.last_watts = now, watts


class Meter:
    """Sums energy channels; a daemon thread updates them every ``poll_seconds`` (None: no thread)."""

    def __init__(self, source: str, channels: list, poll_seconds: float | None = None,
                 sync: Callable[[], None] | None = None, close: Callable[[], None] | None = None):
        self.source, self.channels, self._sync, self._close = source, channels, sync, close
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if poll_seconds:
            self._thread = threading.Thread(target=self._poll, args=(poll_seconds,), daemon=True, name="energy-meter")
            self._thread.start()

    def _update(self) -> float:
        with self._lock:
            now = time.monotonic()
            for channel in self.channels:
                channel.update(now)
            return sum(channel.joules for channel in self.channels)

    def _poll(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self._update()

    def joules(self) -> float | None:
        """Energy in joules since the meter was built (after a device synchronize)."""
        if self._sync:
            self._sync()
        return self._update()

    def idle_watts(self, seconds: float) -> float | None:
        """Mean power over ``seconds`` of doing nothing, so idle energy can be subtracted later."""
        if seconds <= 0:
            return None
        start = self.joules()
        time.sleep(seconds)
        return (self.joules() - start) / seconds

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self._close:
            self._close()


class NoMeter(Meter):
    """No readable energy source: every reading is None."""

    def __init__(self):
        super().__init__("none", [])

    def joules(self) -> float | None:
        return None

    def idle_watts(self, seconds: float) -> float | None:
        return None


def build_meter(kind: str, devices: list[torch.device], powercap: Path | None = None, nvml=None) -> Meter:
    """The meter ``kind`` (auto, nvml, rapl, none) for models on ``devices``.

    auto: NVML when the models are on GPUs and NVML answers, else RAPL when readable, else none.
    Asking for nvml or rapl where it cannot be read is an error, not a silent null.
    """
    if kind not in METERS:
        raise UserError(f"unknown meter {kind!r} (known: {', '.join(METERS)})")
    gpus = sorted({d.index or 0 for d in devices if d.type == "cuda"})
    if kind == "none":
        return NoMeter()
    if kind in ("auto", "nvml") and gpus:
        try:
            return nvml_meter(gpus, nvml)
        except _Unavailable as err:
            if kind == "nvml":
                raise UserError(f"meter=nvml: {err}") from None
    elif kind == "nvml":
        raise UserError("meter=nvml: the models are not on a GPU")
    try:
        return rapl_meter(powercap or POWERCAP)
    except _Unavailable as err:
        if kind == "rapl":
            raise UserError(f"meter=rapl: {err}") from None
    return NoMeter()


class _Unavailable(Exception):
    pass


def rapl_meter(powercap: Path) -> Meter:
    """The package domains (``intel-rapl:N``; their sub-domains are parts of them, not added)."""
    domains = sorted(d for d in powercap.glob("intel-rapl:*") if d.name.count(":") == 1)
    if not domains:
        raise _Unavailable(f"no RAPL package domains under {powercap}")

    def reader(domain: Path) -> Callable[[], float]:
        return lambda: int((domain / "energy_uj").read_text()) / 1e6

    try:
        channels = [_Counter(reader(d), int((d / "max_energy_range_uj").read_text()) / 1e6) for d in domains]
    except (OSError, ValueError) as err:
        raise _Unavailable(f"RAPL counters under {powercap} are not readable ({err}); reading them usually "
                           "needs root") from None
    return Meter("rapl", channels, poll_seconds=RAPL_POLL_SECONDS)


def nvml_meter(gpus: list[int], nvml=None) -> Meter:
    """NVML energy of CUDA devices ``gpus`` (torch indices)."""
    if nvml is None:
        try:
            import pynvml as nvml  # the module of the nvidia-ml-py package
        except ImportError:
            raise _Unavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)") from None
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as err:
        raise _Unavailable(f"NVML did not initialise: {err}") from None
    channels, sampled = [], False
    for index in gpus:
        handle = _nvml_handle(nvml, index)
        try:
            channels.append(_Counter(lambda h=handle: nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3))
        except nvml.NVMLError:  # no energy counter on this GPU (pre-Volta): integrate sampled power
            channels.append(_PowerIntegral(lambda h=handle: nvml.nvmlDeviceGetPowerUsage(h) / 1e3, time.monotonic()))
            sampled = True
    sync = (lambda: [torch.cuda.synchronize(i) for i in gpus]) if torch.cuda.is_available() else None
    return Meter("nvml" if not sampled else "nvml-power", channels,
                 poll_seconds=POWER_POLL_SECONDS if sampled else None, sync=sync, close=nvml.nvmlShutdown)


def _nvml_handle(nvml, index: int):
    """NVML numbers all GPUs, torch only the visible ones (CUDA_VISIBLE_DEVICES): match by UUID
    where torch reports it, by index otherwise."""
    if torch.cuda.is_available():
        found = re.search(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}",
                          str(getattr(torch.cuda.get_device_properties(index), "uuid", "")))
        if found:
            return nvml.nvmlDeviceGetHandleByUUID(f"GPU-{found.group(0)}")
    return nvml.nvmlDeviceGetHandleByIndex(index)
