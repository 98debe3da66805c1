"""Every text input has one documented size cap (tokens.MAX_TEXT_CHARS, 200,000 characters): above it the
tools and the sampler stop with a message naming the input, the route answers 400, nothing runs for
seconds on the server."""

import json

import pytest
from wltest.tiny_wan import tiny_folder

from wanlean import token_report, tokens
from wanlean.errors import WanLeanError
from wanlean.prompt import compress, truncate
from wanlean.video.loaders.diffusers_folder import load_diffusers_folder
from wanlean.video.sampler import VideoRequest, resolve_settings

ESTIMATE = tokens.load_tokenizer(None)
LONG = "a red fox " * 20_001  # 200,010 characters
MESSAGE = r"200,010 characters is over the 200,000-character limit"


def test_prompt_tools_refuse_over_long_text_naming_the_input():
    with pytest.raises(WanLeanError, match=f"text: {MESSAGE}"):
        truncate.truncate(LONG, 512, tokenizer=ESTIMATE)
    with pytest.raises(WanLeanError, match=f"text: {MESSAGE}"):
        compress.compress(LONG, tokenizer=ESTIMATE)
    with pytest.raises(WanLeanError, match=f"text: {MESSAGE}"):
        token_report.analyze(ESTIMATE, LONG)
    with pytest.raises(WanLeanError, match=f"negative: {MESSAGE}"):
        token_report.analyze(ESTIMATE, "a red fox", LONG)


def test_text_at_the_cap_still_works():
    at_cap = ("a red fox " * 20_000)[: tokens.MAX_TEXT_CHARS]
    assert truncate.truncate(at_cap, 512, tokenizer=ESTIMATE).tokens_after <= 512
    assert token_report.analyze(ESTIMATE, at_cap).prompt.tokens > 512


@pytest.mark.parametrize("field", ["prompt", "negative"])
def test_the_sampler_refuses_an_over_long_prompt_or_negative(field):
    session = load_diffusers_folder(str(tiny_folder("A14B")), device="cpu")
    request = VideoRequest(**{"prompt": "a red fox", "negative": "blurry", field: LONG})
    with pytest.raises(WanLeanError, match=f"{field}: {MESSAGE}"):
        resolve_settings(session, request)


def test_the_route_answers_400_over_the_cap(pack):
    import sys

    routes = sys.modules[f"{pack.__name__}.nodes.routes"]
    status, answer = routes.answer_tokens(json.dumps({"text": LONG, "tokenizer": "estimate"}).encode())
    assert status == 400 and "200,000-character limit" in answer["error"]
