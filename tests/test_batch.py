"""`wanlean batch`: filling workflows (UI and API formats), the ledger, and scheduling over fake servers.

The fake servers (tests/wltest/fake_comfy.py) answer ComfyUI's HTTP API from a thread in this process,
so failover, retries and resume are checked in well under a second each. The real thing, two ComfyUI
servers with the tiny model and one killed mid-run, is tests/test_batch_live.py.
"""

import json
import socket
import time

import pytest
from wltest.fake_comfy import FakeComfy

from wanlean import cli
from wanlean.batch import ledger as ledger_module
from wanlean.batch import workflow as wf
from wanlean.errors import WanLeanError

# An API-format workflow like the example: a template node linked into the sampler's prompt.
API = {
    "1": {"class_type": "WanLeanPromptTemplate", "inputs": {"subject": "a fox"}, "_meta": {"title": "Step 1 - Prompt"}},
    "4": {"class_type": "WanLeanLoadDiffusers", "inputs": {"folder": "tiny"}},
    "5": {"class_type": "WanLeanSampler", "inputs": {"pipe": ["4", 0], "prompt": ["1", 0], "negative": "blurry",
                                                     "width": 64, "height": 64, "frames": 5, "steps": 1, "seed": 42}},
    "7": {"class_type": "SaveVideo", "inputs": {"video": ["5", 0]}},
}
OBJECT_INFO = {
    "WanLeanPromptTemplate": {"input": {"required": {"subject": ["STRING", {}]}}, "input_order": {"required": ["subject"]}},
    "WanLeanLoadDiffusers": {"input": {"required": {"folder": [["tiny", "big"], {}]}}, "input_order": {"required": ["folder"]}},
    "WanLeanSampler": {
        "input": {"required": {"pipe": ["WANLEAN_PIPE", {}], "prompt": ["STRING", {}], "negative": ["STRING", {}],
                               "width": ["INT", {}], "seed": ["INT", {"control_after_generate": True}], "steps": ["INT", {}]}},
        "input_order": {"required": ["pipe", "prompt", "negative", "width", "seed", "steps"]},
    },
    "PrimitiveStringMultiline": {"input": {"required": {"value": ["STRING", {}]}}, "input_order": {"required": ["value"]}},
    "PreviewAny": {"input": {"required": {"source": ["*", {}]}}, "input_order": {"required": ["source"]}},
}
# The same graph saved by the UI: the template reaches the sampler's prompt through a reroute.
UI = {
    "nodes": [
        {"id": 1, "type": "WanLeanPromptTemplate", "title": "Step 1", "mode": 0, "widgets_values": ["a fox"]},
        {"id": 9, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "link": 1}]},
        {"id": 4, "type": "WanLeanLoadDiffusers", "mode": 0, "widgets_values": ["tiny"]},
        {"id": 5, "type": "WanLeanSampler", "mode": 0, "widgets_values": ["", "blurry", 64, 42, "fixed", 1],
         "inputs": [{"name": "pipe", "link": 3}, {"name": "prompt", "link": 2, "widget": {"name": "prompt"}}]},
        {"id": 6, "type": "Note", "mode": 0, "widgets_values": ["a note"]},
        {"id": 8, "type": "WanLeanSampler", "mode": 4, "widgets_values": ["", "", 64, 1, "fixed", 1]},
    ],
    "links": [[1, 1, 0, 9, 0, "*"], [2, 9, 0, 5, 1, "STRING"], [3, 4, 0, 5, 0, "WANLEAN_PIPE"]],
}
# A trivial marked workflow: a string node titled [prompt] into a preview.
MARKED = {
    "1": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "x"}, "_meta": {"title": "Text [Prompt]"}},
    "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
}


# --- filling -------------------------------------------------------------------------------------
def test_api_fill_replaces_the_linked_prompt_and_applies_overrides():
    filled = wf.fill(API, {"prompt": "a cat", "seed": 7, "negative": "dark", "width": 80, "height": 48, "frames": 9, "steps": 2})
    sampler = filled["5"]["inputs"]
    assert sampler["prompt"] == "a cat"  # the link to the template is gone
    assert (sampler["seed"], sampler["negative"], sampler["width"], sampler["height"], sampler["frames"], sampler["steps"]) == (7, "dark", 80, 48, 9, 2)
    assert sampler["pipe"] == ["4", 0]
    assert API["5"]["inputs"]["prompt"] == ["1", 0] and API["5"]["inputs"]["seed"] == 42  # the original is untouched
    assert wf.fill(API, {"prompt": "a cat"})["5"]["inputs"]["seed"] == 42


def test_ui_format_converts_through_reroutes_and_fills_like_the_api_format():
    api = wf.ui_to_api(UI, OBJECT_INFO)
    assert set(api) == {"1", "4", "5"}  # note, reroute and the bypassed sampler left out
    assert api["5"]["inputs"] == {"pipe": ["4", 0], "prompt": ["1", 0], "negative": "blurry", "width": 64, "seed": 42, "steps": 1}
    filled = wf.fill(api, {"prompt": "a cat", "seed": 3})
    assert filled["5"]["inputs"]["prompt"] == "a cat" and filled["5"]["inputs"]["seed"] == 3
    assert wf.workflow_format(UI) == "ui" and wf.workflow_format(API) == "api" and wf.workflow_format({"a": 1}) is None


def test_unknown_node_type_in_a_ui_workflow_is_named():
    with pytest.raises(WanLeanError, match=r"node 4 \('WanLeanLoadDiffusers'\) is unknown to the server"):
        wf.ui_to_api(UI, {k: v for k, v in OBJECT_INFO.items() if k != "WanLeanLoadDiffusers"})


def test_prompt_marker_wins_and_fills_the_marked_text_node():
    both = {**API, **{"20": {"class_type": "PrimitiveString", "inputs": {"value": "x"}, "_meta": {"title": "my [prompt]"}}}}
    filled = wf.fill(both, {"prompt": "a cat"})
    assert filled["20"]["inputs"]["value"] == "a cat"
    assert filled["5"]["inputs"]["prompt"] == ["1", 0]  # the marked node feeds it (or not): the user decided
    assert wf.fill(MARKED, {"prompt": "hi"})["1"]["inputs"]["value"] == "hi"
    with pytest.raises(WanLeanError, match=r"node 2 \('PreviewAny'\) is titled \[prompt\] but has no text input"):
        wf.prompt_targets({"2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}, "_meta": {"title": "[prompt]"}}})


def test_workflow_hash_follows_what_runs_not_titles():
    a = wf.fill(API, {"prompt": "a cat"})
    b = json.loads(json.dumps(a))
    b["5"]["_meta"] = {"title": "renamed"}
    assert wf.workflow_hash(a) == wf.workflow_hash(b)
    assert wf.workflow_hash(a) != wf.workflow_hash(wf.fill(API, {"prompt": "a dog"}))


# --- bad input: exit code 2 and a message naming it --------------------------------------------
@pytest.fixture
def fake():
    servers = []

    def make(**kw):
        server = FakeComfy(**kw)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def batch(tmp_path, prompts, servers, workflow=API, extra=(), capsys=None):
    wpath = tmp_path / "w.json"
    if not wpath.exists():
        wpath.write_text(json.dumps(workflow))
    argv = ["batch", str(prompts), "--workflow", str(wpath), "--no-progress-bar", *extra]
    for server in servers:
        argv += ["--server", server if isinstance(server, str) else server.url]
    return cli.main(argv)


def test_bad_input_stops_with_exit_2_and_names_it(tmp_path, fake, capsys):
    server = fake()
    prompts = write(tmp_path / "p.jsonl", '{"prompt": "a"}\n{"prompt": "b", "seed": "x"}\nnot json\n')
    assert batch(tmp_path, prompts, [server]) == 2
    assert "line 3 of" in capsys.readouterr().err  # the JSON error comes first
    prompts = write(tmp_path / "p.jsonl", '{"prompt": "a"}\n{"prompt": "b", "seed": "x"}\n{"prompt": "c", "width": -5}\n')
    assert batch(tmp_path, prompts, [server]) == 2
    err = capsys.readouterr().err
    assert "line 2: 'seed' must be a whole number" in err and "line 3: 'width'" in err
    assert server.posted == []  # nothing queued on bad input

    bad_workflow = write(tmp_path / "bad.json", "{not json")
    assert cli.main(["batch", prompts, "--workflow", bad_workflow, "--server", server.url]) == 2
    assert f"--workflow: '{bad_workflow}' is not valid JSON" in capsys.readouterr().err
    no_target = write(tmp_path / "nosampler.json", json.dumps({"1": {"class_type": "SaveVideo", "inputs": {}}}))
    ok_prompts = write(tmp_path / "ok.txt", "a\nb\n")
    assert cli.main(["batch", ok_prompts, "--workflow", no_target, "--server", server.url]) == 2
    assert "no WanLeanSampler and no node titled with '[prompt]'" in capsys.readouterr().err
    assert server.posted == []


def test_a_server_that_never_answers_is_named_quickly(tmp_path, capsys):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel does) but never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    started = time.monotonic()
    try:
        code = batch(tmp_path, write(tmp_path / "p.txt", "a\n"), [url], extra=["--timeout", "0.5"])
    finally:
        silent.close()
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - started < 3
    assert f"--server {url} does not answer" in err and "no server answered GET /system_stats within 0.5 s" in err


# --- running, resuming, the ledger -------------------------------------------------------------
def ledger_events(path):
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def done_jobs(path):
    return [e["job"] for e in ledger_events(path) if e["event"] == "done"]


def test_runs_every_prompt_once_lists_outputs_and_a_rerun_does_nothing(tmp_path, fake, capsys):
    server = fake()
    prompts = write(tmp_path / "p.jsonl", "".join(json.dumps({"prompt": f"p{i}", "seed": i}) + "\n" for i in range(4)))
    download = tmp_path / "dl"
    assert batch(tmp_path, prompts, [server], extra=["--download", str(download)]) == 0
    assert sorted(server.texts()) == ["p0", "p1", "p2", "p3"]
    assert [w["5"]["inputs"]["seed"] for _, w in server.posted] == [0, 1, 2, 3]
    out = capsys.readouterr().out
    assert "4 done, 0 failed, 0 not run, of 4" in out and "line 2: done on" in out and "video/p1.mp4" in out
    assert (download / "line0002_p1.mp4").read_bytes() == b"video bytes of p1.mp4"
    ledger = tmp_path / "p.batch.jsonl"
    assert len(done_jobs(ledger)) == 4 and len(set(done_jobs(ledger))) == 4

    assert batch(tmp_path, prompts, [server]) == 0  # resume: all done, nothing queued again
    assert len(server.posted) == 4
    assert "4 already done" in capsys.readouterr().err
    # A new line and a changed line are new jobs; the others stay done.
    write(tmp_path / "p.jsonl", "".join(json.dumps({"prompt": f"p{i}", "seed": i}) + "\n" for i in range(4)).replace('"p3", "seed": 3', '"p3", "seed": 30') + '{"prompt": "p4"}\n')
    assert batch(tmp_path, prompts, [server]) == 0
    assert server.texts()[4:] == ["p3", "p4"]


def test_a_job_queued_before_a_crash_is_polled_not_queued_again(tmp_path, fake):
    server = fake(job_seconds=0.01)
    prompts = write(tmp_path / "p.txt", "a\nb\n")
    ledger_path = tmp_path / "p.batch.jsonl"
    job_ids = {}
    # Run once, then drop the "done" events and tear the last line, as if it crashed mid-write.
    assert batch(tmp_path, prompts, [server]) == 0
    events = ledger_events(ledger_path)
    kept = [e for e in events if e["event"] != "done"]
    job_ids = {e["job"] for e in kept}
    text = "".join(json.dumps(e) + "\n" for e in kept) + '{"event": "done", "job": "1-'
    ledger_path.write_text(text)
    assert batch(tmp_path, prompts, [server]) == 0
    assert len(server.posted) == 2  # found finished on the server: not run twice
    ledger = ledger_module.Ledger(str(ledger_path))
    ledger.close()
    assert ledger.skipped_lines == [3]  # only the torn line; the next append began on a new line
    assert sorted(e["job"] for e in ledger.events if e["event"] == "done") == sorted(job_ids)


def test_a_job_the_server_lost_is_queued_again(tmp_path, fake, monkeypatch):
    from wanlean.batch import runner

    monkeypatch.setattr(runner, "QUEUE_CHECK_S", 0.0)
    server = fake()
    prompts = write(tmp_path / "p.txt", "a\n")
    ledger_path = tmp_path / "p.batch.jsonl"
    api = API
    job_hash = wf.workflow_hash(wf.fill(api, {"prompt": "a"}))
    ledger = ledger_module.Ledger(str(ledger_path))
    ledger.append("queued", f"1-{job_hash}", line=1, hash=job_hash, server=server.url, prompt_id="gone-id")
    ledger.close()
    assert batch(tmp_path, prompts, [server]) == 0
    assert server.texts() == ["a"]
    assert [e["event"] for e in ledger_events(ledger_path)] == ["queued", "moved", "queued", "done"]


def test_ctrl_c_leaves_a_ledger_that_resumes(tmp_path, fake, monkeypatch):
    from wanlean.batch import runner

    server = fake(job_seconds=0.02)
    prompts = write(tmp_path / "p.txt", "a\nb\nc\nd\n")
    real_done = runner.Runner._done
    calls = []

    def interrupt_after_first(self, *args):
        real_done(self, *args)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner.Runner, "_done", interrupt_after_first)
    assert batch(tmp_path, prompts, [server]) == 130
    monkeypatch.setattr(runner.Runner, "_done", real_done)
    assert batch(tmp_path, prompts, [server]) == 0
    ledger_path = tmp_path / "p.batch.jsonl"
    assert len(done_jobs(ledger_path)) == 4 == len(set(done_jobs(ledger_path)))
    assert sorted(server.texts()) == ["a", "b", "c", "d"]  # the two queued at Ctrl-C were polled, not re-run


# --- scheduling and failover -------------------------------------------------------------------
def test_jobs_spread_over_servers_with_short_queues(tmp_path, fake):
    a, b = fake(job_seconds=0.03), fake(job_seconds=0.03)
    prompts = write(tmp_path / "p.txt", "".join(f"p{i}\n" for i in range(8)))
    assert batch(tmp_path, prompts, [a, b], extra=["--max-pending", "1"]) == 0
    assert len(a.posted) >= 3 and len(b.posted) >= 3 and len(a.posted) + len(b.posted) == 8
    assert a.max_in_flight == 1 and b.max_in_flight == 1


def test_a_server_that_goes_away_has_its_jobs_moved(tmp_path, fake):
    a, b = fake(job_seconds=0.05), fake(job_seconds=0.05)
    original = b._history

    def die_on_first_poll(prompt_id):
        b.stop()
        raise ConnectionResetError  # the handler dies with the server

    b._history = die_on_first_poll
    prompts = write(tmp_path / "p.txt", "".join(f"p{i}\n" for i in range(6)))
    assert batch(tmp_path, prompts, [a, b]) == 0
    assert sorted(a.texts()) == [f"p{i}" for i in range(6)] and len(b.posted) >= 1
    ledger_path = tmp_path / "p.batch.jsonl"
    assert len(done_jobs(ledger_path)) == 6 == len(set(done_jobs(ledger_path)))
    assert any(e["event"] == "moved" for e in ledger_events(ledger_path))
    del original


def test_a_failed_job_is_retried_once_elsewhere_then_reported(tmp_path, fake, capsys):
    a = fake(fail=lambda text: text in ("flaky", "broken"))
    b = fake(fail=lambda text: text == "broken")
    prompts = write(tmp_path / "p.txt", "flaky\nbroken\nfine\nREFUSE\n")
    assert batch(tmp_path, prompts, [a, b], extra=["--max-pending", "1"]) == 1
    assert "flaky" in b.texts() and b.texts().count("broken") == 1
    assert a.texts().count("flaky") == 1 and a.texts().count("broken") == 1  # never twice on one server
    out = capsys.readouterr().out
    assert "2 done, 2 failed" in out
    assert "line 2: FAILED" in out and "planted failure for broken" in out
    assert "line 4: FAILED" in out and "planted refusal" in out
