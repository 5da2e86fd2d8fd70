"""The out-of-memory fallback of blended predictions, tested without a GPU.

``on_device_or_cpu`` is given a device object (``cuda`` or ``meta``) that stands in for a GPU,
and a network that raises ``torch.cuda.OutOfMemoryError`` there: the retry on the CPU must give
what a CPU prediction gives. ``tests/gpu/test_cuda.py`` repeats this on a real GPU.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from unetkit.infer.placement import on_device_or_cpu
from unetkit.infer.predictor import Predictor

OOM = torch.cuda.OutOfMemoryError


def test_out_of_memory_on_the_device_retries_on_the_cpu(caplog) -> None:
    tried = []

    def compute(device: torch.device) -> str:
        tried.append(device.type)
        if device.type == "cuda":
            raise OOM("CUDA out of memory. Tried to allocate 20.00 GiB\nmore details")
        return f"done on {device.type}"

    with caplog.at_level(logging.WARNING, logger="unetkit.infer.placement"):
        assert on_device_or_cpu(compute, torch.device("cuda", 1)) == "done on cpu"
    assert tried == ["cuda", "cpu"]
    (record,) = caplog.records
    assert "out of memory on cuda:1" in record.getMessage()
    assert "Tried to allocate 20.00 GiB" in record.getMessage()
    assert "more details" not in record.getMessage()  # one line


def test_cpu_runs_once_and_other_errors_are_not_retried() -> None:
    tried = []

    def oom_everywhere(device: torch.device) -> None:
        tried.append(device.type)
        raise OOM("out of memory")

    with pytest.raises(OOM):
        on_device_or_cpu(oom_everywhere, torch.device("cpu"))
    assert tried == ["cpu"]
    tried.clear()
    with pytest.raises(OOM):  # the CPU attempt's own failure is raised as it is
        on_device_or_cpu(oom_everywhere, torch.device("cuda"))
    assert tried == ["cuda", "cpu"]

    def broken(device: torch.device) -> None:
        tried.append(device.type)
        raise RuntimeError("a bug, not a full GPU")

    tried.clear()
    with pytest.raises(RuntimeError, match="a bug"):
        on_device_or_cpu(broken, torch.device("cuda"))
    assert tried == ["cuda"]


def _full_device(predictor: Predictor) -> list[str]:
    """Make ``predictor`` prefer the meta device, where its network runs out of memory."""
    real, seen = predictor.network, []

    def network(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch.device.type)
        if batch.device.type == "meta":
            raise OOM("CUDA out of memory (injected)")
        return real(batch)

    predictor.network = network
    predictor.device = torch.device("meta")
    return seen


@pytest.mark.parametrize("tta", [[], [0, 1]])
def test_a_tiled_prediction_falls_back_to_the_cpu_with_the_same_result(make_checkpoint,
                                                                      tta, caplog) -> None:
    path = make_checkpoint(out_channels=3)
    settings = {"infer.window": [16, 16], "infer.overlap": 0.5, "infer.tta_axes": tta}
    image = np.random.default_rng(0).normal(5, 3, (1, 37, 29)).astype(np.float32)
    expected = Predictor.from_checkpoint(path, settings=settings, device="cpu")
    x, _ = expected.preprocess(image)
    want = expected.predict_logits(x)
    predictor = Predictor.from_checkpoint(path, settings=settings, device="cpu")
    seen = _full_device(predictor)
    with caplog.at_level(logging.WARNING, logger="unetkit.infer.placement"):
        got = predictor.predict_logits(x)
    assert seen[0] == "meta" and set(seen[1:]) == {"cpu"}
    assert got.device.type == "cpu" and torch.equal(got, want)
    assert "retrying with the accumulators and windows on the CPU" in caplog.text
    full = predictor.predict(image)
    assert np.array_equal(full.labels, expected.predict(image).labels)


def test_the_bounded_memory_label_path_falls_back_too(make_checkpoint) -> None:
    path = make_checkpoint(out_channels=3)
    settings = {"infer.window": [16, 16], "infer.overlap": 0.25}
    image = np.random.default_rng(1).normal(5, 3, (1, 40, 33)).astype(np.float32)
    expected = Predictor.from_checkpoint(path, settings=settings, device="cpu")
    x, _ = expected.preprocess(image)
    predictor = Predictor.from_checkpoint(path, settings=settings, device="cpu")
    seen = _full_device(predictor)
    assert np.array_equal(predictor.predict_labels(x), expected.predict_labels(x))
    assert seen[0] == "meta"


def test_without_a_device_the_input_stays_where_it_is(make_checkpoint) -> None:
    from unetkit.config import config_from_dict

    config = config_from_dict({"model": {"out_channels": 2}, "infer": {"precision": "fp32"}})
    predictor = Predictor(lambda x: x.float().repeat(1, 2, *([1] * (x.dim() - 2))),
                          config=config, labels={0: "bg", 1: "fg"})
    assert predictor.device is None
    assert predictor.predict_logits(torch.zeros(1, 8, 8)).device.type == "cpu"
    loaded = Predictor.from_checkpoint(make_checkpoint(), device="cpu")
    assert loaded.device == torch.device("cpu")
