"""WanLeanTokenCount: exact umT5 token counts from the text-encoder file the user already has."""

from ...wanlean import token_report, tokens
from ...wanlean.prompt_log.row import PromptEntry
from .. import _comfy
from .._shared import resolve_tokenizer, tokenizer_choices
from ..prompt_log import log_prompt


class WanLeanTokenCount:
    """Counts umT5 tokens exactly as Wan's text encoder sees them, and says what each runtime keeps."""

    CATEGORY = "WanLean/prompt"
    FUNCTION = "run"
    OUTPUT_NODE = True  # shows its report, so it runs even when nothing uses its outputs
    RETURN_TYPES = ("INT", "BOOLEAN", "STRING")
    RETURN_NAMES = ("tokens", "over_budget", "report")
    OUTPUT_TOOLTIPS = (
        "umT5 tokens of the prompt, </s> included (an estimate when tokenizer is 'estimate').",
        "True when the prompt or the negative has more tokens than budget.",
        "What each runtime does with these texts: diffusers/official Wan/WanVideoWrapper cut at 512 tokens, "
        "ComfyUI native keeps all, hosted APIs limit characters.",
    )
    DESCRIPTION = (
        "Exact umT5 token counts from the tokenizer stored inside your text-encoder file (nothing is "
        "downloaded), and what diffusers, official Wan, WanVideoWrapper, ComfyUI and hosted APIs do with them."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "default": "", "tooltip": "The prompt to count."}),
                "tokenizer": (
                    tokenizer_choices(),
                    {
                        "default": tokens.ESTIMATE,
                        "tooltip": "Your umT5 text-encoder file from models/text_encoders (e.g. "
                        "umt5_xxl_fp8_e4m3fn_scaled.safetensors): its built-in tokenizer gives exact counts, "
                        "reading a few MB, never the weights. 'estimate' counts by script and says so.",
                    },
                ),
                "budget": (
                    "INT",
                    {
                        "default": tokens.WAN_TEXT_LEN,
                        "min": 1,
                        "max": 100000,
                        "tooltip": "Token budget for over_budget and the editor's readout. 512 is where "
                        "diffusers, official Wan and WanVideoWrapper cut the prompt.",
                    },
                ),
            },
            "optional": {
                "negative": (
                    "STRING",
                    {"multiline": True, "default": "", "tooltip": "The negative prompt, counted separately (it is cut at 512 tokens too)."},
                ),
            },
        }

    @classmethod
    def IS_CHANGED(cls, tokenizer, **_):
        # Re-run when the chosen file is replaced under the same name.
        if tokens.is_estimate_name(tokenizer) or tokenizer not in _comfy.model_files("text_encoders"):
            return tokenizer
        try:
            return tokens.file_identity(_comfy.model_path("text_encoders", tokenizer, "tokenizer"))
        except Exception:
            return tokenizer

    def run(self, text, tokenizer, budget, negative=""):
        report = token_report.analyze(resolve_tokenizer(tokenizer), text, negative if negative else None, budget)
        summary = report.summary()
        log_prompt(PromptEntry("WanLeanTokenCount", text, report.prompt.tokens, report.exact, budget,
                               anomalies=report.anomalies))
        return {"ui": {"text": [summary]}, "result": (report.prompt.tokens, report.over_budget, summary)}


NODE_CLASS_MAPPINGS = {"WanLeanTokenCount": WanLeanTokenCount}
NODE_DISPLAY_NAME_MAPPINGS = {"WanLeanTokenCount": "WanLean Token Count (umT5)"}
