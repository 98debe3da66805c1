"""Fast swaps in model_offload: the resting expert waits in pinned host memory, allocated once and reused,
one host copy per weight; a failed pin falls back to ordinary memory with a line in the report.

This machine has no CUDA, so pinning is faked (`pinned._pin` returns a recorded copy) and the "device"
is the meta device (unit tests) or the CPU made to look like another device (end-to-end runs)."""

import pytest
import torch
from wltest.tiny_wan import tiny_folder, tiny_request, tiny_transformer

from wanlean.video import memory, pinned
from wanlean.video.loaders.diffusers_folder import load_diffusers_folder
from wanlean.video.sampler import generate


class FakePin:
    """Stands in for `Tensor.pin_memory()`: a copy, recorded; raises from the `fail_at`-th call on."""

    def __init__(self, fail_at=None):
        self.made, self.fail_at = [], fail_at

    def __call__(self, tensor):
        if self.fail_at is not None and len(self.made) >= self.fail_at:
            raise RuntimeError("CUDA error: out of memory (cudaHostAlloc failed: locked memory limit)\nmore")
        copy = tensor.clone()
        self.made.append(copy.data_ptr())
        return copy


def request(**overrides):
    return tiny_request(**{"negative": "blurry", **overrides})


class FakeDevice:
    """Stands in for the copy to the GPU: a distinct tensor (a clone), with the non_blocking flag recorded."""

    def __init__(self):
        self.non_blocking = []

    def __call__(self, tensor, device, non_blocking):
        self.non_blocking.append(non_blocking)
        return tensor.clone()


CPU = torch.device("cpu")


def holders(storage) -> int:
    """How many tensors (and storage objects) hold this storage."""
    return torch._C._storage_Use_Count(storage._cdata)


def test_weights_are_pinned_once_and_the_pinned_tensors_are_reused(monkeypatch):
    fake, copies = FakePin(), FakeDevice()
    monkeypatch.setattr(pinned, "_pin", fake)
    monkeypatch.setattr(pinned, "_to_device", copies)
    expert = tiny_transformer(seed=3)
    values = {name: p.detach().clone() for name, p in expert.named_parameters()}
    originals = [p.untyped_storage() for p in expert.parameters()]  # the pageable host storages
    assert all(holders(storage) == 2 for storage in originals)  # the module's parameter and this list
    parameters = list(expert.parameters())

    pinned.onload(expert, CPU)  # to the "GPU"
    assert len(fake.made) == len(parameters) and copies.non_blocking == [True] * len(parameters)
    on_device = {p.data_ptr() for p in expert.parameters()}
    assert not on_device & set(fake.made)  # the module computes on the device copies
    pinned.offload(expert)  # back: nothing copied, the pinned tensors are used again
    resting = {name: p.data_ptr() for name, p in expert.named_parameters()}
    assert set(resting.values()) == set(fake.made)  # every weight rests in its pinned tensor ...
    assert all(holders(storage) == 1 for storage in originals)  # ... and nothing but this list holds the pageable ones
    for name, p in expert.named_parameters():
        torch.testing.assert_close(p.data, values[name], rtol=0, atol=0)

    for _ in range(2):  # later swaps allocate nothing
        pinned.onload(expert, CPU)
        pinned.offload(expert)
    assert len(fake.made) == len(parameters)
    assert {name: p.data_ptr() for name, p in expert.named_parameters()} == resting
    assert pinned.pinned_bytes(expert) == sum(p.numel() * p.element_size() for p in parameters)


def test_a_weight_changed_on_the_device_is_copied_back(monkeypatch):
    monkeypatch.setattr(pinned, "_pin", FakePin())
    monkeypatch.setattr(pinned, "_to_device", FakeDevice())
    expert = tiny_transformer(seed=3)
    pinned.onload(expert, CPU)
    weight = expert.proj_out.weight
    host = getattr(weight, pinned.PINNED)
    with torch.no_grad():
        weight.add_(1.0)  # changed in place on the device
    expected = weight.data.clone()
    pinned.offload(expert)
    assert weight.data_ptr() == host.data_ptr()
    torch.testing.assert_close(weight.data, expected, rtol=0, atol=0)


def test_pinning_that_fails_raises_and_leaves_the_module_usable(monkeypatch):
    monkeypatch.setattr(pinned, "_pin", FakePin(fail_at=3))
    monkeypatch.setattr(pinned, "_to_device", FakeDevice())
    expert = tiny_transformer(seed=3)
    values = {name: p.detach().clone() for name, p in expert.named_parameters()}
    with pytest.raises(pinned.PinningFailed, match=r"RuntimeError: CUDA error: out of memory \(cudaHostAlloc"):
        pinned.onload(expert, CPU)
    pinned.onload(expert, CPU, pin=False)  # the caller finishes the ordinary way
    pinned.offload(expert)
    for name, p in expert.named_parameters():
        torch.testing.assert_close(p.data, values[name], rtol=0, atol=0)


@pytest.fixture()
def cpu_as_gpu(monkeypatch):
    """Every move really happens (the CPU plays the GPU; "cpu:0" is the host), and pinning is 'available'."""
    monkeypatch.setattr(memory, "_same_device", lambda a, b: False)
    monkeypatch.setattr(memory, "OFFLOAD_DEVICE", "cpu:0")
    monkeypatch.setattr(pinned, "can_pin", lambda device: True)


@pytest.fixture(scope="module")
def expected_frames():
    return generate(load_diffusers_folder(str(tiny_folder("A14B")), device="cpu"), request()).frames


def test_model_offload_swaps_from_pinned_memory(monkeypatch, cpu_as_gpu, expected_frames):
    fake = FakePin()
    monkeypatch.setattr(pinned, "_pin", fake)
    session = load_diffusers_folder(str(tiny_folder("A14B")), device="cpu", memory_mode="model_offload")
    experts = (session.transformer, session.transformer_2)
    result = generate(session, request())
    torch.testing.assert_close(result.frames, expected_frames, rtol=0, atol=1e-6)
    assert len(fake.made) == sum(len(list(e.parameters())) for e in experts)  # both experts pinned, once
    # Here every activation moves (the harness cannot tell its host from its device): one swap per step.
    assert session.memory_state.swaps == session.memory_state.pinned_swaps == 4
    assert "expert swaps: 4 onto the GPU from pinned memory" in result.report and "unavailable" not in result.report
    generate(session, request(seed=8))
    assert len(fake.made) == sum(len(list(e.parameters())) for e in experts)  # reused by the next run


def test_a_failed_pin_falls_back_to_ordinary_memory_with_a_report_line(monkeypatch, cpu_as_gpu, expected_frames):
    monkeypatch.setattr(pinned, "_pin", FakePin(fail_at=5))
    session = load_diffusers_folder(str(tiny_folder("A14B")), device="cpu", memory_mode="model_offload")
    result = generate(session, request())
    torch.testing.assert_close(result.frames, expected_frames, rtol=0, atol=1e-6)
    assert "pinned memory unavailable (RuntimeError: CUDA error: out of memory (cudaHostAlloc failed: locked memory limit)): " \
           "the resting expert waits in ordinary host memory; swaps are slower" in result.report
    assert "from ordinary memory" in result.report and session.memory_state.pinned_swaps == 0
    monkeypatch.setattr(pinned, "_pin", lambda t: pytest.fail("pinning is not retried after it failed"))
    generate(session, request(seed=8))


def test_other_modes_and_the_cpu_do_not_pin(monkeypatch, expected_frames):
    monkeypatch.setattr(pinned, "_pin", lambda t: pytest.fail("pinned without a GPU / outside model_offload"))
    assert not pinned.can_pin(torch.device("cpu"))
    session = load_diffusers_folder(str(tiny_folder("A14B")), device="cpu", memory_mode="model_offload")
    generate(session, request())
    monkeypatch.setattr(memory, "_same_device", lambda a, b: False)
    monkeypatch.setattr(memory, "OFFLOAD_DEVICE", "cpu:0")
    monkeypatch.setattr(pinned, "can_pin", lambda device: True)
    generate(load_diffusers_folder(str(tiny_folder("A14B")), device="cpu", memory_mode="gpu"), request())
