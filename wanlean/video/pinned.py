"""Fast expert swaps for `model_offload`: the resting expert waits in pinned (page-locked) host memory.

A copy from pinned memory runs at the bus's full speed and can be queued without waiting (non-blocking);
a copy from ordinary (pageable) memory goes through a staging buffer, several times slower (the
`model_offload` swap of a 28.6 GB bf16 expert took about 24 s on the H200 benchmark machine).

How host memory stays at one copy of each weight:
- the first time a parameter leaves for the device, its host tensor is pinned *in place*: a pinned copy
  replaces it and the pageable one is dropped, one tensor at a time (never two copies of a whole expert);
- the pinned tensor is kept on the parameter (allocated once, reused by every later swap);
- weights do not change while a video is made, so sending an expert back to the host copies nothing: the
  parameter points at its pinned tensor again and the device copy is freed. A parameter changed on the
  device (its storage or version counter moved) is copied back into its pinned tensor.
Buffers (rotary tables, fp8 scales) are small and move the ordinary way.

Pinning can fail (not enough lockable memory, a container's memlock limit): `move` then raises
`PinningFailed` and the caller moves the rest the ordinary way (`pin=False`) and says so in the report.
`onload` and `offload` name the direction: on a CPU-only machine (the tests) the "device" may be the CPU.
"""

from __future__ import annotations

PINNED = "_wanlean_pinned_host"  # attribute on a parameter: its pinned host tensor
ON_DEVICE = "_wanlean_device_copy"  # attribute on a parameter: (data_ptr, version) of the copy sent to the device


class PinningFailed(RuntimeError):
    """Host memory could not be pinned; the message says why."""


def can_pin(device) -> bool:
    """Pinned memory helps copies to a CUDA device (and needs CUDA)."""
    import torch

    return str(getattr(device, "type", device)).startswith("cuda") and torch.cuda.is_available()


def _pin(tensor):
    """A pinned copy of a host tensor (a seam for tests: this machine may have no CUDA)."""
    return tensor.pin_memory()


def _synchronize(device) -> None:
    """Wait for queued copies, so the move's time is its real time."""
    import torch

    if str(getattr(device, "type", device)).startswith("cuda"):
        torch.cuda.synchronize(device)


def holds_buffers(module) -> bool:
    return any(getattr(p, PINNED, None) is not None for p in module.parameters())


def pinned_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in (getattr(p, PINNED, None) for p in module.parameters()) if t is not None)


def onload(module, device, pin: bool = True) -> None:
    """Move `module` to `device` from its pinned tensors (non-blocking copies). With `pin`, a host tensor
    without a pinned copy is pinned first; raises PinningFailed when that fails (the parameters done so
    far stay on the device: call again with pin=False to move the rest the ordinary way)."""
    import torch

    device = torch.device(device)
    _onload(module, device, pin)
    _move_buffers(module, device)
    _synchronize(device)


def offload(module) -> None:
    """Send `module` back to the host: into its pinned tensors where it has them (no copy unless a weight
    changed on the device), the ordinary way otherwise."""
    import torch

    came_from = {p.device for p in module.parameters()}
    _offload(module)
    _move_buffers(module, torch.device("cpu"))
    for used in came_from:  # copies back into pinned tensors are queued on the source device
        _synchronize(used)


def _move_buffers(module, device) -> None:
    for sub in module.modules():
        for name, buffer in list(sub._buffers.items()):
            if buffer is not None and buffer.device != device:
                sub._buffers[name] = buffer.to(device)


def _to_device(tensor, device, non_blocking: bool):
    return tensor.to(device, non_blocking=non_blocking)


def _onload(module, device, pin: bool) -> None:
    for parameter in module.parameters():
        if parameter.device == device and device.type != "cpu":  # (a "cpu" device: tests on CPU-only machines)
            continue
        host = getattr(parameter, PINNED, None)
        if host is None and pin and parameter.device.type == "cpu":
            try:
                host = _pin(parameter.data)
            except RuntimeError as exc:
                raise PinningFailed(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from None
            setattr(parameter, PINNED, host)
            parameter.data = host  # the pageable tensor is dropped here: one host copy
        source = host if host is not None else parameter.data
        parameter.data = _to_device(source, device, non_blocking=host is not None)
        if host is not None:
            setattr(parameter, ON_DEVICE, (parameter.data_ptr(), parameter._version))


def _offload(module) -> None:
    for parameter in module.parameters():
        host = getattr(parameter, PINNED, None)
        if parameter.device.type == "cpu" and (host is None or parameter.data_ptr() == host.data_ptr()):
            continue  # already resting
        if host is None:
            parameter.data = parameter.data.to("cpu")
            continue
        if getattr(parameter, ON_DEVICE, None) != (parameter.data_ptr(), parameter._version):
            host.copy_(parameter.data, non_blocking=True)  # changed on the device: keep the change
        parameter.data = host
