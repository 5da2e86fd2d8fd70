"""What would make a GPU wait, counted on any machine.

A tensor on the ``meta`` device stands for one on a GPU: its values cannot be read, so every read
that would wait for a GPU (``.item()``, ``bool()``, ``.tolist()``, ``.cpu()``, ``nonzero``,
``unique``, selecting by a boolean mask) raises there. What ``meta`` allows but CUDA makes wait,
``DeviceWaits`` counts: a copy from the host that blocks (``Tensor.to`` onto another device
without ``non_blocking=True``, ``torch.tensor(values, device=...)``) and an assignment through a
boolean mask on the device (``x[mask] = y`` finds the mask's elements first).
"""

from __future__ import annotations

import torch

META = torch.device("meta")


def _device_of(args: tuple, kwargs: dict) -> torch.device | None:
    target = kwargs.get("device")
    if target is None:
        target = next((a for a in args if isinstance(a, (torch.device, str))), None)
    return None if target is None else torch.device(target)


def _device_mask(key: object) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, torch.Tensor) and k.dtype == torch.bool and k.device.type != "cpu"
               for k in keys)


class DeviceWaits:
    """Counts what waits for the device, beyond reading values (while ``on``)."""

    def __init__(self, monkeypatch) -> None:
        self.count, self.on = 0, True
        to, tensor, setitem = torch.Tensor.to, torch.tensor, torch.Tensor.__setitem__

        def counted_to(self_: torch.Tensor, *args, **kwargs):
            target = _device_of(args, kwargs)
            if self.on and target is not None and target.type != self_.device.type \
                    and not kwargs.get("non_blocking", False):
                self.count += 1
            return to(self_, *args, **kwargs)

        def counted_tensor(*args, **kwargs):
            target = kwargs.get("device")
            if self.on and target is not None and torch.device(target).type != "cpu":
                self.count += 1
            return tensor(*args, **kwargs)

        def counted_setitem(self_: torch.Tensor, key, value) -> None:
            if self.on and _device_mask(key):
                self.count += 1
            setitem(self_, key, value)

        monkeypatch.setattr(torch.Tensor, "to", counted_to)
        monkeypatch.setattr(torch, "tensor", counted_tensor)
        monkeypatch.setattr(torch.Tensor, "__setitem__", counted_setitem)
