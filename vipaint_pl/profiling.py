"""Where a method's time goes: its network evaluations, counted per network and direction, each timed alone.

Every method's cost is network evaluations (denoiser, decoder, encoder). ``NetworkCounter`` hooks the prior's
networks and records each call's signature (network, input shapes, forward or backward); ``floor_seconds``
then times one evaluation of every signature alone and sums count x time: the least a method could take with
no work outside the networks. ``wall / floor`` is the method's overhead.

    with NetworkCounter(prior) as counter, PeakMemory() as memory:
        start = time.perf_counter(); run_method(...); wall = time.perf_counter() - start
    overhead = wall / counter.floor_seconds()

``OpCounter`` counts the operators a run dispatches (forward and backward, any device); ``floor_ops`` counts those of
the recorded evaluations replayed alone, so that the difference is the work a method adds around its networks, in
operators: on a GPU each is a kernel launch or host step, which small networks do not hide.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode


def prior_networks(prior) -> dict[str, nn.Module]:
    """The prior's networks by role: ``denoiser`` (the UNet), ``encoder`` and ``decoder`` (an autoencoder's)."""
    nets = {}
    if isinstance(getattr(prior, "unet", None), nn.Module):
        nets["denoiser"] = prior.unet
    autoencoder = getattr(prior, "autoencoder", None)
    for role in ("encoder", "decoder"):
        if isinstance(getattr(autoencoder, role, None), nn.Module):
            nets[role] = getattr(autoencoder, role)
    return nets


def _first_tensor(value) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    for item in (value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else
                 getattr(value, "__dict__", {}).values()):
        if isinstance(item, Tensor):
            return item
    return None


def _signature(args, kwargs) -> tuple:
    return tuple((k, tuple(v.shape), str(v.dtype)) for k, v in list(enumerate(args)) + sorted(kwargs.items())
                 if isinstance(v, Tensor))


def _detached(value):
    return value.detach().clone() if isinstance(value, Tensor) else value


@dataclass
class _Replay:
    module: nn.Module
    args: tuple
    kwargs: dict
    grad: bool


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class NetworkCounter:
    """Counts the forward and backward evaluations of the prior's networks, by (network, input shapes).

    ``counts`` maps (network, direction, signature) to a count, direction "forward" or "backward" (a backward
    is counted when a gradient reaches the network's output). The first call of every signature is kept to be
    replayed by ``floor_seconds``.
    """

    def __init__(self, prior):
        self.networks = prior_networks(prior)
        self.counts: Counter = Counter()
        self.replays: dict[tuple, _Replay] = {}
        self._handles = []

    def _hook(self, name: str):
        def hook(module, args, kwargs, output):
            sig = (name, _signature(args, kwargs))
            self.counts[(name, "forward", sig[1])] += 1
            if sig not in self.replays:
                self.replays[sig] = _Replay(module, tuple(_detached(a) for a in args),
                                            {k: _detached(v) for k, v in kwargs.items()}, torch.is_grad_enabled())
            out = _first_tensor(output)
            if out is not None and out.requires_grad:
                out.register_hook(lambda grad: self._count_backward(name, sig[1]))
        return hook

    def _count_backward(self, name: str, sig: tuple) -> None:
        self.counts[(name, "backward", sig)] += 1

    def __enter__(self) -> "NetworkCounter":
        self._handles = [m.register_forward_hook(self._hook(n), with_kwargs=True) for n, m in self.networks.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def evaluations(self) -> dict[str, int]:
        """Evaluations per "network direction" (e.g. ``{"denoiser forward": 60, "decoder backward": 50}``)."""
        out: Counter = Counter()
        for (name, direction, _), n in self.counts.items():
            out[f"{name} {direction}"] += n
        return dict(out)

    def samples_evaluated(self) -> dict[str, int]:
        """Rows through each network direction (evaluations x their batch size)."""
        out: Counter = Counter()
        for (name, direction, sig), n in self.counts.items():
            out[f"{name} {direction}"] += n * (sig[0][1][0] if sig and sig[0][1] else 1)
        return dict(out)

    @staticmethod
    def _replayed(replay: _Replay, backward: bool):
        """A function that evaluates a recorded call once (forward, or forward + backward), and its device."""
        args = list(replay.args)
        grad_input = next((i for i, a in enumerate(args) if isinstance(a, Tensor) and a.is_floating_point()), None)
        device = next((a.device for a in args if isinstance(a, Tensor)), torch.device("cpu"))
        if backward and grad_input is not None:
            args[grad_input] = args[grad_input].detach().requires_grad_(True)

        def evaluate():
            with torch.set_grad_enabled(replay.grad or backward):
                out = _first_tensor(replay.module(*args, **replay.kwargs))
                if backward:
                    out.backward(torch.ones_like(out))
        return evaluate, device

    def time_alone(self, replay: _Replay, backward: bool, repeats: int = 5) -> float:
        """Seconds of one evaluation (forward, or forward + backward) of a recorded call: the fastest of
        ``repeats`` after one warm-up (as ``timeit`` advises: slower runs measure the machine's other work)."""
        evaluate, device = self._replayed(replay, backward)
        times = []
        for _ in range(repeats + 1):
            _sync(device)
            start = time.perf_counter()
            evaluate()
            _sync(device)
            times.append(time.perf_counter() - start)
        return min(times[1:])

    def floor_ops(self) -> int:
        """Operators dispatched by every recorded evaluation replayed alone, times its count (as ``floor_seconds``
        with ``OpCounter`` for the clock)."""
        total = 0
        for (name, sig), replay in self.replays.items():
            counts = []
            for backward in (False, True):
                evaluate, _ = self._replayed(replay, backward)
                with OpCounter() as ops:
                    evaluate()
                counts.append(ops.ops)
            total += self.counts[(name, "forward", sig)] * counts[0]
            total += self.counts[(name, "backward", sig)] * max(counts[1] - counts[0], 0)
        return total

    def floor_seconds(self, repeats: int = 5) -> float:
        """Sum over every recorded signature of count x its time alone (backward: forward + backward minus
        forward)."""
        total = 0.0
        for (name, sig), replay in self.replays.items():
            forward = self.time_alone(replay, False, repeats)
            total += self.counts[(name, "forward", sig)] * forward
            n_back = self.counts[(name, "backward", sig)]
            if n_back:
                total += n_back * max(self.time_alone(replay, True, repeats) - forward, 0.0)
        return total


class OpCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched while it is active (``ops``): forward and backward, on any device,
    including those on host scalars."""

    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


class PeakMemory:
    """Peak memory while the block runs: the CUDA allocator's peak on a GPU, else the process's resident set
    sampled every ``interval`` seconds (``peak_bytes``: absolute; ``increase_bytes``: above the start)."""

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.002):
        self.device, self.interval = torch.device(device), interval
        self.peak_bytes = self.start_bytes = 0
        self._stop = threading.Event()

    def _rss(self) -> int:
        import psutil

        return psutil.Process().memory_info().rss

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = torch.cuda.memory_allocated(self.device)
        else:
            self.start_bytes = self.peak_bytes = self._rss()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, self._rss())

    @property
    def increase_bytes(self) -> int:
        return max(self.peak_bytes - self.start_bytes, 0)
