"""GET/DELETE /wanlean/stats and GET /wanlean/stats.csv as the handlers answer them (in-process; the live
test runs them in a real ComfyUI): 400 naming the parameter, 503 without a log, counts after logging."""

import csv
import io

import pytest

JUNK = "dog dog dog dog dog dog in a park"


@pytest.fixture()
def routes(pack, tmp_path):
    pack.nodes.prompt_log.use(str(tmp_path / "prompt_log.sqlite3"), str(tmp_path / "comfy.settings.json"))
    yield pack.nodes.stats_routes
    pack.nodes.prompt_log.use(None)


@pytest.mark.parametrize("query, parameter", [
    ({"since": "last week"}, "since"),
    ({"since": "-10"}, "since"),
    ({"source": "Wan LeanTokenCount"}, "source"),
    ({"sauce": "prep"}, "sauce"),
])
def test_bad_parameters_get_400_naming_them(routes, query, parameter):
    for answer in (routes.answer_stats, routes.answer_csv):
        status, body = answer(query)
        assert status == 400 and body["error"].startswith(f"{parameter}: ")


def test_without_a_log_the_answer_is_503(pack):
    status, body = pack.nodes.stats_routes.answer_stats({})
    assert status == 503 and "not set up" in body["error"]


def test_stats_count_the_logged_prompts_and_clear_empties_them(pack, routes):
    count = pack.NODE_CLASS_MAPPINGS["WanLeanTokenCount"]()
    for text in ("a red fox runs through snow", JUNK, "a heron stands in a misty river at dawn"):
        count.run(text, "estimate", 512)
    status, body = routes.answer_stats({})  # no flush needed by the caller: the route waits for the writer
    assert status == 200 and body["prompts"] == 3
    assert sum(b["count"] for b in body["tokens"]["histogram"]) == 3
    assert body["anomalies"]["repetition"] == 1 and body["recent_anomalies"][0]["text"] == JUNK
    assert body["sources"] == ["WanLeanTokenCount"] and body["enabled"] is True
    assert routes.answer_stats({"source": "prep"})[1]["prompts"] == 0
    assert routes.answer_stats({"since": "3600"})[1]["prompts"] == 3

    status, text = routes.answer_csv({"source": "WanLeanTokenCount"})
    rows = list(csv.DictReader(io.StringIO(text)))
    assert status == 200 and [r["text"] for r in rows][1] == JUNK and rows[1]["flags"] == "repetition"

    assert routes.answer_clear() == (200, {"cleared": 3})
    assert routes.answer_stats({})[1]["prompts"] == 0


def test_routes_are_listed_for_registration(pack):
    listed = {(method, path) for method, path, _ in pack.nodes.stats_routes.ROUTES}
    assert listed == {("GET", "/wanlean/stats"), ("GET", "/wanlean/stats.csv"), ("DELETE", "/wanlean/stats")}
