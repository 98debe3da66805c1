"""Speed levers for the sampler: the attention kernel, compiled blocks, fp8 matmul and step caching.

`SpeedOptions` (node WanLeanSpeed) rides on the session (`with_speed`). The sampler calls `levers(...)`
around its loop: the levers go onto the experts for that run only and come off afterwards, error or not,
so a pipe without options, or one sharing its weights with a pipe that has them, runs exactly as before.
Everything goes through diffusers: the attention dispatcher (`set_attention_backend`), regional
compilation (`compile_repeated_blocks`) and its cache hooks (First Block Cache); fp8 matmul is
`torch._scaled_mm` (`fp8_matmul`). No kernel is written here.

A lever that fails during a run (a compile error, a kernel missing for a shape) must not cost the run:
the forward is repeated with the levers switched off one at a time (compile, fp8 matmul, attention, step
cache) until it runs, the one that was switched off stays off for the rest of the run, and the report
says so in one line. Bad options (a package not installed, a device that cannot run a kernel) are refused
before the run by `check`, with the requirement named.
"""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from ..errors import WanLeanError
from . import fp8_matmul

ATTENTION = ("auto", "sdpa", "sdpa_cudnn", "flash", "sage")
COMPILE = ("off", "blocks")
FP8_MATMUL = ("off", "on")
STEP_CACHE = ("off", "first_block")
LEVER_ORDER = ("compile", "fp8_matmul", "attention", "step_cache")  # switched off in this order on a failure
COMPILE_KWARGS: dict = {}  # torch.compile arguments for compile_repeated_blocks (tests may set a backend)
_HALF = ("torch.bfloat16", "torch.float16")


@dataclass(frozen=True)
class SpeedOptions:
    """How the sampler's transformer runs. The defaults are the baseline (nothing changed).

    Args:
        attention: `sdpa` (PyTorch's scaled_dot_product_attention, the baseline), `sdpa_cudnn` (its cuDNN
            kernel), `flash` (the flash-attn package; FlashAttention-3 when installed on Hopper), `sage`
            (SageAttention: int8 Q·K, not lossless), or `auto`: the fastest lossless one available for the
            device and dtype (`choose_attention`).
        compile: `blocks` compiles the repeated transformer blocks with torch.compile (regional
            compilation), once per model; later runs reuse the compiled code.
        fp8_matmul: `on` multiplies fp8-stored weights in fp8 (needs weight_storage fp8 and CUDA 8.9+).
        step_cache: `first_block` skips the rest of a forward when the first block's output changed less
            than `cache_threshold` (relative mean difference) since the last full forward; it reuses the
            cached residual of the other blocks. Trades quality for speed; 0 never skips.
        cache_threshold: the step cache's threshold.
    """

    attention: str = "sdpa"
    compile: str = "off"
    fp8_matmul: str = "off"
    step_cache: str = "off"
    cache_threshold: float = 0.05

    @property
    def is_baseline(self) -> bool:
        return self == SpeedOptions(cache_threshold=self.cache_threshold)


BASELINE = SpeedOptions()


def options_of(session) -> SpeedOptions:
    return getattr(session, "speed", None) or BASELINE


def with_speed(session, options: SpeedOptions):
    """A shallow copy of `session` carrying `options`: the same modules and the same placement state (no
    weight is copied or moved)."""
    check(session, options)
    copy = dataclasses.replace(session, speed=options)
    copy.__dict__["_memory_state"] = session.memory_state  # the same modules sit where the original put them
    return copy


# --- checks before a run --------------------------------------------------------------------------------
def check(session, options: SpeedOptions) -> None:
    """Raise WanLeanError for options this pipe cannot run, naming the input and what it needs."""
    for name, value, allowed in (("attention", options.attention, ATTENTION), ("compile", options.compile, COMPILE),
                                 ("fp8_matmul", options.fp8_matmul, FP8_MATMUL), ("step_cache", options.step_cache, STEP_CACHE)):
        if value not in allowed:
            raise WanLeanError(f"{name} must be one of {', '.join(allowed)}; got '{value}'.")
    if not options.cache_threshold >= 0:
        raise WanLeanError(f"cache_threshold must be 0 or more (0 never skips a forward); got {options.cache_threshold}.")
    if options.attention not in ("auto", "sdpa"):
        refused = attention_refusal(options.attention, session.device, session.dtype)
        if refused:
            raise WanLeanError(refused)
    if options.fp8_matmul == "on":
        refused = fp8_matmul.refusal(session.device, fp8_matmul.fp8_layers(_experts(session)))
        if refused:
            raise WanLeanError(refused)


def attention_refusal(name: str, device, dtype) -> str | None:
    """Why attention `name` cannot run on this device and dtype (naming the package or the requirement)."""
    import torch
    from diffusers.models import attention_dispatch as dispatch

    device = torch.device(device)
    on_cuda = device.type == "cuda" and torch.cuda.is_available()
    half = str(dtype) in _HALF
    if name == "sage" and not dispatch._CAN_USE_SAGE_ATTN:
        return (f"attention sage: the `sageattention` package (>= {dispatch._REQUIRED_SAGE_VERSION}) is not installed: "
                "pip install sageattention (needs CUDA and an NVIDIA GPU). Or choose auto, sdpa or sdpa_cudnn.")
    if name == "flash" and not (dispatch._CAN_USE_FLASH_ATTN or dispatch._CAN_USE_FLASH_ATTN_3):
        return (f"attention flash: the `flash-attn` package (>= {dispatch._REQUIRED_FLASH_VERSION}) is not installed: "
                "pip install flash-attn --no-build-isolation (needs CUDA and an NVIDIA GPU, Ampere or newer). Or choose auto or sdpa.")
    what = {"sdpa_cudnn": "cuDNN attention", "flash": "flash attention", "sage": "Sage attention"}[name]
    if not on_cuda:
        return f"attention {name}: {what} needs a CUDA GPU; this pipe runs on {device.type}. Choose auto or sdpa."
    if not half:
        return f"attention {name}: {what} needs bf16 or fp16; this pipe computes in {str(dtype).removeprefix('torch.')}. Choose auto or sdpa, or load in bf16."
    if name in ("sdpa_cudnn", "flash") and tuple(torch.cuda.get_device_capability(device)) < (8, 0):
        return f"attention {name}: {what} needs compute capability 8.0 or newer (Ampere); choose auto or sdpa."
    return None


def choose_attention(device, dtype) -> tuple[str, str]:
    """(option, why) for `auto`: FlashAttention-3 on Hopper when installed, else flash-attn 2 when installed,
    else cuDNN attention (bf16/fp16 on Ampere or newer), else sdpa. Sage is never chosen by itself: it
    quantizes Q and K to int8, so it is not lossless."""
    import torch
    from diffusers.models import attention_dispatch as dispatch

    device = torch.device(device)
    if device.type != "cuda":
        return "sdpa", f"{device.type}: PyTorch sdpa is the only kernel"
    if str(dtype) not in _HALF:
        return "sdpa", f"{str(dtype).removeprefix('torch.')}: the fast kernels need bf16 or fp16"
    capability = tuple(torch.cuda.get_device_capability(device))
    if dispatch._CAN_USE_FLASH_ATTN_3 and capability[0] == 9:
        return "flash", "FlashAttention-3 installed on a Hopper GPU"
    if dispatch._CAN_USE_FLASH_ATTN and capability >= (8, 0):
        return "flash", "flash-attn installed"
    if capability >= (8, 0):
        return "sdpa_cudnn", f"cuDNN attention on compute capability {capability[0]}.{capability[1]}"
    return "sdpa", f"compute capability {capability[0]}.{capability[1]} is older than Ampere"


def diffusers_backend(option: str, device) -> str:
    """The attention dispatcher's backend name for an option."""
    import torch
    from diffusers.models import attention_dispatch as dispatch

    if option == "flash":
        device = torch.device(device)
        hopper = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9
        return "_flash_3" if dispatch._CAN_USE_FLASH_ATTN_3 and hopper else "flash"
    return {"sdpa": "native", "sdpa_cudnn": "_native_cudnn", "sage": "sage"}[option]


def _experts(session) -> list:
    return [expert for expert in (session.transformer, session.transformer_2) if expert is not None]


# --- one run ------------------------------------------------------------------------------------------
class Levers:
    """The levers of one run. `wrap(expert)` gives the callable the loop uses for that expert's forwards:
    it enters the cache context (cond / uncond, told apart by the text embeddings; anything else, such as a
    batched pair, gets its own context), counts skipped forwards and falls back on a failure."""

    def __init__(self, session, options: SpeedOptions, prompt_embeds=None, negative_embeds=None):
        self.session = session
        self.options = options
        self.prompt_embeds = prompt_embeds
        self.negative_embeds = negative_embeds
        self.active: set[str] = set()
        self.lines: list[str] = []  # for the report
        self.skipped: dict[str, int] = {}  # forwards skipped by the step cache, per stage
        self.cached_forwards: dict[str, int] = {}  # forwards run under the step cache, per stage
        self.cancel_error = None
        self._stage_of = {id(expert): stage for expert, stage in zip(_experts(session), ("high", "low"))}
        self._undo: dict[str, list] = {name: [] for name in LEVER_ORDER}

    # putting levers on and taking them off
    def apply(self) -> None:
        options, experts = self.options, _experts(self.session)
        if options.attention != "sdpa":
            self._apply_attention(experts)
        if options.fp8_matmul == "on":
            self._apply_fp8(experts)
        if options.step_cache != "off":
            self._apply_cache(experts)
        if options.compile == "blocks":
            self._apply_compile(experts)

    def remove(self, lever: str | None = None) -> None:
        for name in [lever] if lever else LEVER_ORDER:
            while self._undo[name]:
                self._undo[name].pop()()
            self.active.discard(name)

    def _apply_attention(self, experts) -> None:
        from diffusers.models.attention_dispatch import _AttentionBackendRegistry

        option, why = self.options.attention, ""
        if option == "auto":
            option, why = choose_attention(self.session.device, self.session.dtype)
        backend = diffusers_backend(option, self.session.device)
        active_before = _AttentionBackendRegistry._active_backend  # set_attention_backend also sets it process-wide
        self._undo["attention"].append(lambda: _AttentionBackendRegistry.set_active_backend(active_before))
        for expert in experts:
            processors = [(p, p._attention_backend) for p in _attention_processors(expert)]
            self._undo["attention"].append(lambda saved=processors: [setattr(p, "_attention_backend", b) for p, b in saved])
            try:
                with _quiet("diffusers.models.modeling_utils"):  # "experimental feature" on every call
                    expert.set_attention_backend(backend)
            except (RuntimeError, ValueError, ImportError) as exc:
                self.remove("attention")
                raise WanLeanError(f"attention {self.options.attention}: diffusers refused backend '{backend}': {exc}") from None
        self.active.add("attention")
        chosen = f"auto → {option} ({why})" if self.options.attention == "auto" else option
        self.lines.append(f"attention: {chosen}, diffusers backend '{backend}'")

    def _apply_fp8(self, experts) -> None:
        layers = fp8_matmul.fp8_layers(experts)
        granularity = fp8_matmul.granularity_for(self.session.device)
        for layer in layers:
            fp8_matmul.enable(layer, granularity)
            self._undo["fp8_matmul"].append(lambda layer=layer: fp8_matmul.disable(layer))
        self.active.add("fp8_matmul")
        on_cuda = str(self.session.device).startswith("cuda")
        kept = sum(1 for layer in layers if on_cuda and not fp8_matmul.shape_fits(layer))
        rest = f"; {kept} keep the dequantized path (dimensions not multiples of 16)" if kept else ""
        self.lines.append(f"fp8 matmul: {len(layers)} fp8 layers multiply in fp8, activation scales per {granularity}{rest}")

    def _apply_cache(self, experts) -> None:
        from diffusers.hooks import FirstBlockCacheConfig

        for expert in experts:
            if expert.is_cache_enabled:  # left by an earlier run that died hard: start clean
                expert.disable_cache()
            expert.enable_cache(FirstBlockCacheConfig(threshold=float(self.options.cache_threshold)))
            self._undo["step_cache"].append(expert.disable_cache)
            stage = self._stage_of[id(expert)]
            self.skipped[stage] = 0
            self.cached_forwards[stage] = 0
        self.active.add("step_cache")

    def _apply_compile(self, experts) -> None:
        graphs_before = _compiled_graphs()
        fresh = 0
        for expert in experts:
            blocks = [m for m in expert.modules() if m.__class__.__name__ in (getattr(expert, "_repeated_blocks", None) or ())]
            if not blocks:
                raise WanLeanError(f"compile blocks: {type(expert).__name__} names no repeated blocks to compile.")
            if not all("_wanlean_compiled_call" in block.__dict__ for block in blocks):
                expert.compile_repeated_blocks(**COMPILE_KWARGS)  # compiles lazily, at the first forward
                for block in blocks:
                    block._wanlean_compiled_call = block._compiled_call_impl
                fresh += 1
            for block in blocks:  # attached for this run only: other pipes sharing the blocks run them uncompiled
                block._compiled_call_impl = block._wanlean_compiled_call
                self._undo["compile"].append(lambda block=block: setattr(block, "_compiled_call_impl", None))
        self.active.add("compile")
        self._graphs_before = graphs_before
        self._compile_fresh = fresh

    def compile_line(self) -> str | None:
        if self.options.compile != "blocks":
            return None
        graphs = _compiled_graphs() - getattr(self, "_graphs_before", 0)
        if getattr(self, "_compile_fresh", 0):
            return f"compile: blocks compiled in this run ({graphs} graphs; the first steps were slower), reused by later runs"
        if graphs:
            return f"compile: compiled blocks reused; {graphs} graphs compiled again for new shapes"
        return "compile: compiled blocks reused (no new compilation)"

    # the loop's forwards
    def wrap(self, expert):
        if not self.active and not self.lines:
            return expert
        return lambda **kwargs: self.forward(expert, **kwargs)

    def forward(self, expert, **kwargs):
        stage = self._stage_of.get(id(expert), "high")
        while True:
            try:
                return self._forward(expert, stage, kwargs)
            except Exception as exc:
                lever = self._lever_to_drop(exc)
                if lever is None:
                    raise
                self.remove(lever)
                for model in _experts(self.session):  # a failed forward may have left the cache half-updated
                    if getattr(model, "is_cache_enabled", False):
                        model._reset_stateful_cache()
                message = " ".join(str(exc).split())[:160]
                self.lines.append(f"{lever} failed during the run ({type(exc).__name__}: {message}); "
                                  "switched off, the run went on without it")

    def _forward(self, expert, stage, kwargs):
        if "step_cache" not in self.active:
            return expert(**kwargs)
        context = self._context_name(kwargs.get("encoder_hidden_states"))
        samples = len(kwargs["hidden_states"])  # forwards count samples: a batched CFG pair (guidance) is 2
        with expert.cache_context(context):
            output = expert(**kwargs)
            self.cached_forwards[stage] += samples
            self.skipped[stage] += samples * int(_skipped_last_forward(expert))
        return output

    def _context_name(self, text) -> str:
        if text is self.prompt_embeds:
            return "cond"
        if text is self.negative_embeds:
            return "uncond"
        return f"batch{tuple(getattr(text, 'shape', ()))}"

    def _lever_to_drop(self, exc) -> str | None:
        """The next lever to switch off after `exc`, or None when `exc` is not the levers' doing."""
        from . import request_memory

        if exc is self.cancel_error or isinstance(exc, WanLeanError) or request_memory.is_out_of_memory(exc):
            return None
        return next((lever for lever in LEVER_ORDER if lever in self.active), None)

    def watch_cancel(self, cancel_check):
        """`cancel_check`, remembering what it raised: a cancel is never mistaken for a failed lever."""
        if cancel_check is None:
            return None

        def check():
            try:
                cancel_check()
            except BaseException as exc:
                self.cancel_error = exc
                raise

        return check

    def report_lines(self, stage_names: dict) -> list[str]:
        lines = list(self.lines)
        if line := self.compile_line():
            lines.append(line)
        if self.options.step_cache != "off":
            parts = [f"{self.skipped.get(stage, 0)} of {self.cached_forwards.get(stage, 0)} forwards of the {name}"
                     for stage, name in stage_names.items() if stage in self.cached_forwards]
            lines.append(f"step cache {self.options.step_cache} (threshold {self.options.cache_threshold:g}): skipped "
                         + ", ".join(parts) + " (caching trades quality for speed)")
        return lines


@contextmanager
def levers(session, prompt_embeds=None, negative_embeds=None):
    """The session's speed options on its experts for one run (nothing at all for the baseline)."""
    options = options_of(session)
    run = Levers(session, options, prompt_embeds, negative_embeds)
    if options.is_baseline:
        yield run
        return
    check(session, options)
    with ExitStack() as stack:
        stack.callback(run.remove)
        run.apply()
        yield run


@contextmanager
def _quiet(logger_name: str):
    import logging

    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _attention_processors(expert) -> list:
    return [module.processor for module in expert.modules()
            if hasattr(getattr(module, "processor", None), "_attention_backend")]


def _skipped_last_forward(expert) -> bool:
    """Whether the First Block Cache skipped the forward that just ran (read inside its cache context)."""
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.first_block_cache import _FBC_LEADER_BLOCK_HOOK

    hook = HookRegistry.check_if_exists_or_initialize(expert.blocks[0]).get_hook(_FBC_LEADER_BLOCK_HOOK)
    return hook is not None and not hook.state_manager.get_state().should_compute


def _compiled_graphs() -> int:
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return 0
    return int(counters["stats"]["unique_graphs"])
