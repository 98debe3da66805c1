"""WanLeanTruncate: fit a prompt into a token budget, keeping its head and its tail."""

from ...wanlean import tokens
from ...wanlean.prompt import truncate
from ...wanlean.prompt_log.row import PromptEntry
from .. import _comfy
from .._shared import TOKENIZER_TOOLTIP, resolve_tokenizer, tokenizer_choices
from ..prompt_log import log_prompt


class WanLeanTruncate:
    """Keeps the head and the tail, cuts the middle at clause boundaries; never over max_tokens."""

    CATEGORY = "WanLean/prompt"
    FUNCTION = "run"
    RETURN_TYPES = ("STRING", "STRING", "STRING")
    RETURN_NAMES = ("text", "dropped", "report")
    OUTPUT_TOOLTIPS = (
        "Head + tail, at most max_tokens umT5 tokens (</s> included); unchanged when it already fits.",
        "The middle that was cut out (empty when nothing was cut).",
        "Tokens before/after, head and tail sizes, where the cuts fell.",
    )
    DESCRIPTION = (
        "Wan runtimes cut prompts at 512 tokens and lose the end, where style and camera words sit. This keeps "
        "the head and the tail and drops the middle, at clause boundaries where possible."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "default": "", "tooltip": "The prompt to fit."}),
                "max_tokens": (
                    "INT",
                    {
                        "default": tokens.WAN_TEXT_LEN,
                        "min": 2,
                        "max": 100000,
                        "tooltip": "Token budget, </s> included. 512 is where diffusers, official Wan and "
                        "WanVideoWrapper cut.",
                    },
                ),
                "tail_tokens": (
                    "INT",
                    {
                        "default": truncate.AUTO_TAIL,
                        "min": -1,
                        "max": 100000,
                        "tooltip": "Tokens kept from the end. -1: 3/8 of max_tokens (192 of 512). 0: keep the head "
                        "only. The head gets the rest of the budget.",
                    },
                ),
                "tokenizer": (
                    tokenizer_choices(),
                    {
                        "default": "estimate",
                        "tooltip": TOKENIZER_TOOLTIP + " The budget is checked with this tokenizer.",
                    },
                ),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def run(self, text, max_tokens, tail_tokens, tokenizer, unique_id=None):
        counter = resolve_tokenizer(tokenizer)
        result = truncate.truncate(text, max_tokens, tail_tokens, counter)
        report = result.report()
        log_prompt(PromptEntry("WanLeanTruncate", text, result.tokens_after, counter.exact, max_tokens,
                               tokens_before=result.tokens_before if result.tokens_after != result.tokens_before else None))
        _comfy.show_text(unique_id, result.headline)
        return {"ui": {"text": [report]}, "result": (result.text, result.dropped, report)}


NODE_CLASS_MAPPINGS = {"WanLeanTruncate": WanLeanTruncate}
NODE_DISPLAY_NAME_MAPPINGS = {"WanLeanTruncate": "WanLean Truncate Prompt (head + tail)"}
