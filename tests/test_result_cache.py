"""The result cache: its key changes with every input that decides the latents and with nothing else; a hit
runs 0 transformer forwards and gives the frames of the run that stored it; entries survive a new cache
object on the same folder (a restart); corrupt, foreign and wrong-shaped entries are removed and sampled
again; the folder stays under its cap, least recently used first; writes are atomic under threads and a
full disk; a pipe without a weights identity runs uncached and says why."""

import copy
import dataclasses
import logging
import os
import threading

import pytest
import torch
from wltest.tiny_wan import tiny_request, tiny_session

from wanlean.errors import WanLeanError
from wanlean.video import result_cache
from wanlean.video.disk_cache import MemoryLRU
from wanlean.video.result_cache import CachedResult, ResultCache, ResultFolder, cached_or_run, make_result_cache, result_key
from wanlean.video.run_report import RunStats
from wanlean.video.speed import SpeedOptions
from wanlean.video.sampler import decode, encode_prompts, generate, resolve_settings
from wanlean.video.text_encoding import EncodedText


@pytest.fixture(scope="module")
def session():
    return tiny_session()


@pytest.fixture(scope="module")
def keyed(session):
    """(settings, encoded prompt and negative) of the tiny request."""
    settings = resolve_settings(session, tiny_request(steps=2))
    stats = RunStats()
    encode_prompts(session, settings, None, stats)
    return settings, stats.text


def fresh(folder=None) -> ResultCache:
    """A cache with its own memory (not the process-wide one), on `folder` when given."""
    return ResultCache(MemoryLRU(result_cache.MEMORY_MAX_BYTES), ResultFolder(str(folder)) if folder else None)


# --- the key -------------------------------------------------------------------------------------------
def test_every_setting_changes_the_key(session, keyed):
    settings, texts = keyed
    changes = dict(width=48, height=48, frames=9, steps=3, cfg_high=5.0, cfg_low=2.0, shift=5.0, boundary=0.9, sampler="euler", seed=8)
    keys = {name: result_key(session, dataclasses.replace(settings, **{name: value})) for name, value in changes.items()}
    base = result_key(session, settings)
    assert len(base) == 64 and base not in keys.values()
    assert len(set(keys.values())) == len(changes), keys


def test_weights_dtype_device_text_encoder_and_texts_change_the_key(session, keyed):
    settings, _ = keyed
    base = result_key(session, settings)
    encoder = copy.copy(session.text_encoder)
    encoder.identity = encoder.identity + " (another file)"
    variants = [
        result_key(dataclasses.replace(session, weights_identity=session.weights_identity + " + LoRA x"), settings),
        result_key(dataclasses.replace(session, dtype=torch.bfloat16), settings),
        result_key(dataclasses.replace(session, device=torch.device("cuda")), settings),
        result_key(dataclasses.replace(session, text_encoder=encoder), settings),
        result_key(session, dataclasses.replace(settings, prompt=settings.prompt + " at dusk")),
        result_key(session, dataclasses.replace(settings, negative=settings.negative + ", grainy")),
    ]
    variants += [result_key(dataclasses.replace(session, speed=SpeedOptions(**option)), settings)
                 for option in ({"step_cache": "first_block"}, {"step_cache": "first_block", "cache_threshold": 0.1},
                                {"compile": "blocks"}, {"fp8_matmul": "on"}, {"attention": "flash"})]
    assert base not in variants and len(set(variants)) == len(variants)
    # auto is keyed as the kernel it picks: on the CPU that is sdpa, the baseline
    assert result_key(dataclasses.replace(session, speed=SpeedOptions(attention="auto")), settings) == base


def test_what_does_not_decide_the_latents_leaves_the_key_alone(session, keyed):
    settings, _ = keyed
    base = result_key(session, settings)
    # notes, memory mode, where the pipe says it came from
    assert result_key(session, dataclasses.replace(settings, notes=("something ignored",))) == base
    other = dataclasses.replace(session, memory_mode="model_offload", source="elsewhere", extras={"note": 1})
    assert result_key(other, settings) == base
    # without CFG the negative decides nothing
    unguided = dataclasses.replace(settings, cfg_high=1.0, cfg_low=1.0)
    assert result_key(session, unguided) == result_key(session, dataclasses.replace(unguided, negative="anything else"))


def test_a_repeat_hits_whatever_its_prompt_was_encoded_beside(session):
    """The same ids give embeddings that differ in the last bits with the batch they were encoded in (beside
    one negative or another). A run whose prompt came from the text cache (encoded beside another negative)
    and a repeat that encodes it afresh must share the entry: a byte hash of the embedding missed this."""
    from wanlean.video.embedding_cache import make_cache

    texts, results = make_cache("memory"), fresh()
    prompt = "a red fox runs through deep snow"
    generate(session, tiny_request(prompt=prompt, negative="blurry, static", steps=1), cache=texts)
    other = "low quality, jpeg artifacts, extra fingers, deformed hands, a static frame, overexposed, grainy"
    first = generate(session, tiny_request(prompt=prompt, negative=other, steps=2), cache=texts, result_cache=results)
    again = generate(session, tiny_request(prompt=prompt, negative=other, steps=2), cache=None, result_cache=results)
    assert first.stats.text[0].cache == "memory" and again.stats.text[0].cache == "off"
    assert "result cache miss" in first.report and "result cache hit (memory)" in again.report
    assert torch.equal(first.latents, again.latents)


def test_texts_that_encode_the_same_share_a_key_and_others_do_not(session):
    """☃ and ☂ are both unknown to the tiny vocabulary: the same ids, the same embeddings, one entry."""
    def key(prompt):
        settings = resolve_settings(session, tiny_request(prompt=prompt))
        return result_key(session, settings)

    assert key("a red fox ☃") == key("a red fox ☂") == key("  a red   fox ☃ ")
    assert key("a red fox") != key("a red fox ☃")


def test_a_pipe_without_weights_identity_has_no_key(session, keyed):
    settings, texts = keyed
    assert result_key(dataclasses.replace(session, weights_identity=""), settings) is None


# --- runs ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stored(session, tmp_path_factory):
    """One uncached run and one run that stores its result on disk: (folder, off result, stored result)."""
    folder = tmp_path_factory.mktemp("results")
    request = tiny_request(steps=3)
    off = generate(session, request)
    first = generate(session, request, result_cache=fresh(folder))
    return folder, off, first


def test_a_hit_runs_no_forward_and_gives_the_stored_frames(session, stored):
    folder, off, first = stored
    assert first.stats.result_cache == "miss" and first.stats.forwards > 0
    assert "result cache miss: sampled, stored in memory and on disk" in first.report
    cache = fresh(folder)
    calls = []
    original = session.transformer.forward
    session.transformer.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        hit = generate(session, tiny_request(steps=3), result_cache=cache)
    finally:
        del session.transformer.forward
    assert calls == [] and hit.stats.forwards == 0 and hit.stats.result_cache == "disk"  # a new cache object: a restart
    assert "result cache hit (disk): denoising skipped, 0 transformer forwards" in hit.report
    assert f"the stored run took {first.stats.forwards} forwards" in hit.report
    assert torch.equal(hit.frames, first.frames) and torch.equal(hit.latents, first.latents)
    # the frames are the VAE's decode of the stored fp16 latents
    key = os.listdir(folder)[0].removesuffix(".safetensors")
    entry = ResultFolder(str(folder)).get(key)
    assert entry.latents.dtype == torch.float16
    assert torch.equal(decode(session, entry.latents.float())[0], hit.frames)
    # and differ from the uncached run only by the fp16 rounding of the latents
    assert 0 < (first.frames - off.frames).abs().max() < 1e-2
    again = generate(session, tiny_request(steps=3), result_cache=cache)
    assert again.stats.result_cache == "memory" and again.stats.forwards == 0


def test_another_seed_misses(session, stored):
    folder, _, _ = stored
    cache = fresh(folder)
    other = generate(session, tiny_request(steps=1, seed=99), result_cache=cache)
    assert other.stats.result_cache == "miss" and other.stats.forwards > 0
    os.remove(ResultFolder(str(folder)).path(result_key(session, other.settings)))


def test_a_pipe_without_identity_runs_uncached_and_says_why(session, caplog):
    result_cache._said_no_identity.clear()
    anonymous = dataclasses.replace(session, weights_identity="")
    cache = fresh()
    with caplog.at_level(logging.INFO, logger="wanlean"):
        for _ in range(2):
            run = generate(anonymous, tiny_request(steps=1), result_cache=cache)
            assert run.stats.forwards > 0 and run.stats.result_cache == "unkeyed"
    assert "result cache not used: this pipe's transformer weights have no file identity" in run.report
    assert caplog.text.count("no file identity") == 1 and len(cache.memory) == 0


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupt_entry_is_removed_logged_and_sampled_again(session, stored, tmp_path, damage, caplog):
    folder, _, first = stored
    (name,) = [n for n in os.listdir(folder) if n.endswith(".safetensors")]
    copy = tmp_path / name
    data = bytearray((folder / name).read_bytes())
    if damage == "flip":
        data[-2:] = bytes(b ^ 0xFF for b in data[-2:])  # the last fp16 value changes: same size, same header
    else:
        data = data[: len(data) - 7]
    copy.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        again = generate(session, tiny_request(steps=3), result_cache=fresh(tmp_path))
    assert again.stats.result_cache == "miss" and again.stats.forwards == first.stats.forwards
    assert caplog.text.count("result cache: removing") == 1 and "the video is sampled again" in caplog.text
    assert torch.equal(again.frames, first.frames)
    key = name.removesuffix(".safetensors")  # written again, whole
    assert torch.equal(ResultFolder(str(tmp_path)).get(key).latents, ResultFolder(str(folder)).get(key).latents)


def test_foreign_wrong_shape_and_wrong_dtype_entries_are_refused(tmp_path, caplog):
    disk = ResultFolder(str(tmp_path))
    latents = torch.randn(1, 16, 2, 4, 4).half()
    disk.put("a" * 64, CachedResult(latents, 8, 1.5))
    os.replace(disk.path("a" * 64), disk.path("b" * 64))  # a valid entry under another key's name
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        assert disk.get("b" * 64) is None
    assert "written for another key" in caplog.text and not os.listdir(tmp_path)
    disk.put("c" * 64, CachedResult(latents, 8, 1.5))
    assert disk.get("c" * 64, shape=(1, 16, 3, 4, 4)) is None and not os.listdir(tmp_path)
    disk.put("d" * 64, CachedResult(latents.float(), 8, 1.5))
    assert disk.get("d" * 64) is None and "not float16" in caplog.text
    disk.put("e" * 64, CachedResult(latents, 8, 1.5))
    got = disk.get("e" * 64, shape=(1, 16, 2, 4, 4))
    assert torch.equal(got.latents, latents) and (got.forwards, got.denoise_seconds) == (8, 1.5)


# --- the folder: cap, concurrency, full disk -------------------------------------------------------------
def small(fill: float = 0.0) -> CachedResult:
    return CachedResult(torch.full((1, 4, 1, 2, 2), fill, dtype=torch.float16), 2, 0.1)


def aged(disk, count):
    """Entries k0, k1, ... written long ago, oldest first."""
    for index in range(count):
        disk.put(f"k{index}", small(index))
        os.utime(disk.path(f"k{index}"), ns=((index + 1) * 10**9,) * 2)


def entry_bytes(tmp_path):
    probe = ResultFolder(str(tmp_path / "probe"))
    probe.put("p", small())
    return os.path.getsize(probe.path("p"))


def test_the_folder_stays_under_its_cap_least_recently_used_first(tmp_path):
    disk = ResultFolder(str(tmp_path / "cache"), max_bytes=3 * entry_bytes(tmp_path) + 10)
    aged(disk, 3)
    disk.put("k3", small())
    assert sorted(os.listdir(disk.folder)) == ["k1.safetensors", "k2.safetensors", "k3.safetensors"]
    assert disk.get("k1") is not None  # a hit makes k1 the most recent: k2 goes next
    disk.put("k4", small())
    assert sorted(os.listdir(disk.folder)) == ["k1.safetensors", "k3.safetensors", "k4.safetensors"]
    assert disk.size_bytes() <= disk.max_bytes


def test_an_entry_made_before_the_disk_was_turned_on_goes_to_disk_on_its_next_hit(tmp_path):
    memory = MemoryLRU(result_cache.MEMORY_MAX_BYTES)
    ResultCache(memory).put("k", small(0.5))  # result_cache "memory"
    folder = ResultFolder(str(tmp_path))
    entry, where = ResultCache(memory, folder).get("k")  # then "memory + disk"
    assert where == "memory" and torch.equal(entry.latents, small(0.5).latents)
    assert os.path.isfile(folder.path("k"))
    entry, where = ResultCache(MemoryLRU(result_cache.MEMORY_MAX_BYTES), ResultFolder(str(tmp_path))).get("k", (1, 4, 1, 2, 2))
    assert where == "disk" and torch.equal(entry.latents, small(0.5).latents)  # as after a restart


def test_memory_entries_are_bounded_by_bytes():
    cache = ResultCache(MemoryLRU(max_bytes=2 * small().nbytes))
    for name in "abc":
        cache.put(name, small())
    assert "a" not in cache.memory and cache.memory.nbytes <= 2 * small().nbytes
    cache.get("b")
    cache.put("d", small())
    assert "b" in cache.memory and "c" not in cache.memory


def test_concurrent_writers_of_one_key_never_leave_a_partial_file(tmp_path, caplog):
    disk = ResultFolder(str(tmp_path))
    candidates = [small(float(index)) for index in range(8)]
    seen, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            got = disk.get("same")
            if got is not None:
                seen.append(got.latents)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=lambda e=entry: [disk.put("same", e) for _ in range(5)]) for entry in candidates]
    writers += [threading.Thread(target=disk.put, args=(f"other{index}", small())) for index in range(4)]
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        reader.start()
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
        stop.set()
        reader.join()
    names = sorted(os.listdir(tmp_path))
    assert names == ["other0.safetensors", "other1.safetensors", "other2.safetensors", "other3.safetensors", "same.safetensors"]
    final = disk.get("same").latents
    assert any(torch.equal(final, c.latents) for c in candidates)
    assert all(any(torch.equal(s, c.latents) for c in candidates) for s in seen)
    assert "removing" not in caplog.text and disk.unwritable is None


def test_a_full_disk_leaves_no_partial_entry_and_the_run_goes_on(session, tmp_path, monkeypatch, caplog):
    import errno

    import safetensors.torch

    def full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    cache = fresh(tmp_path)
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        run = generate(session, tiny_request(steps=1, seed=5), result_cache=cache)
        cache.put("more", small())  # a second write in the same run: no second log line
    assert run.stats.forwards > 0 and os.listdir(tmp_path) == []
    assert "stored in memory only: the disk folder cannot be written (OSError" in run.report
    assert caplog.text.count("disk cache is skipped for this run") == 1


def test_a_file_in_the_way_of_the_folder_skips_the_disk(tmp_path):
    blocked = tmp_path / "result_cache"
    blocked.write_text("not a folder")
    cache = fresh(blocked)
    assert cache.put("k", small()).startswith("stored in memory only")
    assert cache.get("k")[1] == "memory" and blocked.read_text() == "not a folder"


def test_latents_beyond_fp16_are_returned_but_not_stored(session, keyed):
    settings, texts = keyed
    stats = RunStats(text=texts)
    huge = torch.full((1, 16, 2, 4, 4), 1e6)
    cache = fresh()
    got = cached_or_run(cache, session, settings, stats, lambda: huge)
    assert got is huge and len(cache.memory) == 0 and "exceed the fp16 range" in stats.result_cache_note


def test_make_result_cache_modes(tmp_path):
    assert make_result_cache("off") is None
    memory = make_result_cache("memory", str(tmp_path))
    assert memory.memory is result_cache.SHARED_MEMORY and memory.disk is None
    both = make_result_cache("memory + disk", str(tmp_path), 2)
    assert both.disk.folder == str(tmp_path) and both.disk.max_bytes == 2 * 1024**3
    with pytest.raises(WanLeanError, match="result_cache must be one of"):
        make_result_cache("sometimes")
    with pytest.raises(WanLeanError, match="result_cache_gb must be at least 1"):
        make_result_cache("memory + disk", str(tmp_path), 0)
