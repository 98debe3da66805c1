"""WanLeanCompress: shorten a prompt in umT5 tokens, faithfully by default."""

from ...wanlean.prompt import compress, text_models
from ...wanlean.prompt_log.row import PromptEntry
from .. import _comfy
from .._shared import NONE, TOKENIZER_TOOLTIP, resolve_tokenizer, tokenizer_choices
from ..prompt_log import log_prompt

_comfy.register_model_folder(text_models.FOLDER_KIND)  # models/prompt_compressors/<model folder>


class WanLeanCompress:
    """Drops filler, then low-value clauses, never the protected spans; or uses a model you choose."""

    CATEGORY = "WanLean/prompt"
    FUNCTION = "run"
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("text", "report")
    OUTPUT_TOOLTIPS = (
        "The shortened prompt. With 'extractive' and 'token-classifier' it holds only words of the input, in their order.",
        "Tokens before/after, the ratio reached, protected spans kept, words added, and what was dropped.",
    )
    DESCRIPTION = (
        "Shortens a prompt to a share of its umT5 tokens. 'extractive' (no model) never adds or moves a word and "
        "keeps negations, numbers, colours, camera and lighting terms, quotes, (word:1.2) weights and your keep list."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "default": "", "tooltip": "The prompt to shorten."}),
                "method": (
                    list(compress.METHODS),
                    {
                        "default": "extractive",
                        "tooltip": "extractive: no model, English and Chinese, only drops words (filler first, then "
                        "low-value clauses). token-classifier: an LLMLingua-2 style model scores each word; only drops "
                        "words. summarize: a seq2seq model rewrites the prompt and may add words (the report lists them).",
                    },
                ),
                "target_ratio": (
                    "FLOAT",
                    {
                        "default": compress.RATIO_DEFAULT,
                        "min": compress.RATIO_MIN,
                        "max": compress.RATIO_MAX,
                        "step": 0.05,
                        "tooltip": "Share of the umT5 tokens to keep (</s> included): 0.7 keeps about 70%, 1.0 keeps "
                        "everything. If the protected spans alone are longer, the report says so.",
                    },
                ),
                "keep": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Words or phrases never to drop, separated by commas (, or ，). Connect "
                        "WanLeanPromptTemplate's 'keywords' output here. Terms not found are listed in the report.",
                    },
                ),
                "tokenizer": (
                    tokenizer_choices(),
                    {
                        "default": "estimate",
                        "tooltip": TOKENIZER_TOOLTIP,
                    },
                ),
            },
            "optional": {
                "model": (
                    [NONE] + _comfy.model_subfolders(text_models.FOLDER_KIND),
                    {
                        "default": NONE,
                        "tooltip": "For token-classifier and summarize: a model folder (with its config.json) in "
                        "models/prompt_compressors. Not used by extractive.",
                    },
                ),
                "model_id": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Or a Hugging Face id (e.g. microsoft/llmlingua-2-xlm-roberta-large-meetingbank). "
                        "Taken from the local cache; downloaded only because you typed it, never when offline. "
                        "Overrides 'model'.",
                    },
                ),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def run(self, text, method, target_ratio, keep, tokenizer, model=NONE, model_id="", unique_id=None):
        chosen = None
        if method != "extractive":
            if model_id and model_id.strip():
                chosen = _model_from_id(model_id.strip())
            elif model and model != NONE:
                chosen = _comfy.model_subfolder_path(text_models.FOLDER_KIND, model, "model")
        counter = resolve_tokenizer(tokenizer)
        result = compress.compress(text, method, target_ratio, keep, counter, chosen)
        report = result.report()
        log_prompt(PromptEntry("WanLeanCompress", text, result.tokens_after, counter.exact, tokens_before=_changed(result)))
        _comfy.show_text(unique_id, result.headline)
        return {"ui": {"text": [report]}, "result": (result.text, report)}


def _changed(result) -> int | None:
    """tokens_before for the log, only when the node changed the count."""
    return result.tokens_before if result.tokens_before != result.tokens_after else None


def _model_from_id(value: str) -> str:
    """A name listed in models/prompt_compressors, or a Hugging Face id (owner/name), nothing else: no path
    typed here is ever opened or listed."""
    if value in _comfy.model_subfolders(text_models.FOLDER_KIND):
        return _comfy.model_subfolder_path(text_models.FOLDER_KIND, value, "model_id")
    return text_models.hub_id(value)


NODE_CLASS_MAPPINGS = {"WanLeanCompress": WanLeanCompress}
NODE_DISPLAY_NAME_MAPPINGS = {"WanLeanCompress": "WanLean Compress Prompt"}
