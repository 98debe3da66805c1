"""The embedding cache: hits skip the encoder entirely (not even loaded), disk writes are atomic and capped."""

import os
import time

import pytest
import torch
from wltest.tiny_wan import tiny_folder

from wanlean.video import embedding_cache
from wanlean.video.loaders.diffusers_folder import load_diffusers_folder
from wanlean.video.embedding_cache import CachedEmbedding, DiskCache, EmbeddingCache, MemoryCache, cache_key, make_cache
from wanlean.errors import WanLeanError
from wanlean.video.text_encoding import encode_texts, padded_batch


def fresh_source():
    """A new lazily-loading encoder source for the tiny A14B folder (same identity every time)."""
    return load_diffusers_folder(str(tiny_folder("A14B")), device="cpu").text_encoder


def entry(tokens=4, dim=8, fill=1.0):
    return CachedEmbedding(torch.full((tokens, dim), fill), tokens)


def test_memory_hit_runs_no_forward_and_never_loads_the_encoder():
    cache = EmbeddingCache(MemoryCache())
    first = fresh_source()
    encoded, stats = encode_texts(first, ["a red fox", "blurry"], cache)
    assert [e.cache for e in encoded] == ["miss", "miss"] and stats.encoder_forwards == 1 and first.loaded

    second = fresh_source()  # a new session: same identity, encoder not loaded
    assert second.identity == first.identity and not second.loaded
    again, stats = encode_texts(second, ["a red fox", "blurry"], cache)
    assert [e.cache for e in again] == ["memory", "memory"]
    assert stats.encoder_forwards == 0 and not second.loaded
    torch.testing.assert_close(padded_batch(again), padded_batch(encoded), rtol=0, atol=0)


def test_partial_hit_encodes_only_the_missing_text():
    cache = EmbeddingCache(MemoryCache())
    source = fresh_source()
    encode_texts(source, ["a red fox"], cache)
    shapes = []
    handle = source.encoder().register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    try:
        encoded, stats = encode_texts(source, ["a red fox", "static, blurry"], cache)
    finally:
        handle.remove()
    assert [e.cache for e in encoded] == ["memory", "miss"] and shapes == [(1, encoded[1].kept_tokens)]


def test_cached_encode_takes_under_a_millisecond():
    cache = EmbeddingCache(MemoryCache())
    source = fresh_source()
    encode_texts(source, ["a red fox", "blurry"], cache)
    best = min(_timed(lambda: encode_texts(source, ["a red fox", "blurry"], cache)) for _ in range(20))
    assert best < 0.001


def _timed(fn):
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def test_disk_hit_in_a_new_process_view(tmp_path):
    folder = tmp_path / "cache"
    source = fresh_source()
    encoded, _ = encode_texts(source, ["a red fox"], EmbeddingCache(MemoryCache(), DiskCache(str(folder))))
    files = os.listdir(folder)
    assert files == [cache_key(source.identity, "a red fox") + ".safetensors"]

    later = fresh_source()  # empty memory: as after a restart
    again, stats = encode_texts(later, ["a red fox"], EmbeddingCache(MemoryCache(), DiskCache(str(folder))))
    assert again[0].cache == "disk" and stats.encoder_forwards == 0 and not later.loaded
    assert again[0].total_tokens == encoded[0].total_tokens
    torch.testing.assert_close(again[0].rows, encoded[0].rows, rtol=0, atol=0)


def test_key_depends_on_encoder_identity_and_text():
    keys = {cache_key("a", "x"), cache_key("b", "x"), cache_key("a", "y"), cache_key("a", "x ")}
    assert len(keys) == 4  # every pair differs: identity, text, even one space
    assert cache_key("a", "x") == cache_key("a", "x") and len(cache_key("a", "x")) == 64
    assert cache_key("a\0x", "y") != cache_key("a", "x\0y")  # the parts cannot run into each other


def test_disk_write_is_atomic(tmp_path, monkeypatch):
    disk = DiskCache(str(tmp_path))
    disk.put("k", entry(fill=1.0))
    import safetensors.torch

    def crash_midway(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash_midway)
    disk.put("k", entry(fill=2.0))  # fails: the old entry must stay whole, no temporary left behind
    assert os.listdir(tmp_path) == ["k.safetensors"]
    monkeypatch.undo()
    assert disk.get("k").rows[0, 0].item() == 1.0


def _aged(disk, count):
    """`count` entries k0, k1, ... written long ago, oldest first (clear order on coarse clocks)."""
    for index in range(count):
        disk.put(f"k{index}", entry())
        os.utime(disk.path(f"k{index}"), ns=((index + 1) * 10**9,) * 2)


def test_disk_cache_stays_under_its_size_cap_dropping_least_recent(tmp_path):
    one = os.path.getsize(_write_one(tmp_path / "probe"))
    disk = DiskCache(str(tmp_path / "cache"), max_bytes=3 * one + 10)
    _aged(disk, 3)
    disk.put("k3", entry())
    disk.put("k4", entry())
    assert disk.size_bytes() <= disk.max_bytes
    assert sorted(os.listdir(tmp_path / "cache")) == ["k2.safetensors", "k3.safetensors", "k4.safetensors"]


def test_a_disk_hit_refreshes_the_lru_order(tmp_path):
    """The entry just read is the one in use: the next eviction takes the least recent other one."""
    one = os.path.getsize(_write_one(tmp_path / "probe"))
    disk = DiskCache(str(tmp_path / "cache"), max_bytes=3 * one + 10)
    _aged(disk, 3)
    assert disk.get("k0") is not None  # k0, the oldest, is read
    disk.put("k3", entry())
    assert sorted(os.listdir(tmp_path / "cache")) == ["k0.safetensors", "k2.safetensors", "k3.safetensors"]


def test_a_disk_hit_through_the_embedding_cache_refreshes_both_orders(tmp_path):
    one = os.path.getsize(_write_one(tmp_path / "probe"))
    disk = DiskCache(str(tmp_path / "cache"), max_bytes=3 * one + 10)
    _aged(disk, 3)
    cache = EmbeddingCache(MemoryCache(max_bytes=2 * entry().nbytes), disk)
    assert cache.get("k0")[1] == "disk" and cache.get("k1")[1] == "disk"  # both now in memory, k1 most recent
    cache.get("k0")  # a memory hit: k0 most recent in memory
    cache.put("k3", entry())
    assert "k0" in cache.memory and "k1" not in cache.memory and "k3" in cache.memory
    assert sorted(os.listdir(tmp_path / "cache")) == ["k0.safetensors", "k1.safetensors", "k3.safetensors"]


def _write_one(folder):
    DiskCache(str(folder)).put("probe", entry())
    return folder / "probe.safetensors"


def test_damaged_disk_file_is_a_miss_and_removed(tmp_path):
    disk = DiskCache(str(tmp_path))
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    assert disk.get("bad") is None and not (tmp_path / "bad.safetensors").exists()


def test_memory_cache_is_lru_by_bytes():
    memory = MemoryCache(max_bytes=3 * entry().nbytes)
    for name in "abc":
        memory.put(name, entry())
    memory.get("a")
    memory.put("d", entry())
    assert "b" not in memory and all(name in memory for name in "acd")


def test_make_cache_modes(tmp_path):
    assert make_cache("off") is None
    assert make_cache("memory").memory is embedding_cache.SHARED_MEMORY and make_cache("memory").disk is None
    assert make_cache("memory + disk", str(tmp_path)).disk.folder == str(tmp_path)
    with pytest.raises(WanLeanError, match="text_cache"):
        make_cache("sometimes")
