"""The disk embedding cache never trusts its files: an edited, reshaped or old-format entry is removed and
encoded again, and a folder that cannot be written is skipped for the run, which still succeeds."""

import logging
import os

import torch
from safetensors.torch import load_file, save_file
from wltest.tiny_wan import tiny_folder

from wanlean.video.loaders.diffusers_folder import load_diffusers_folder
from wanlean.video.embedding_cache import FORMAT, CachedEmbedding, DiskCache, EmbeddingCache, MemoryCache, RowSpec, cache_key, rows_checksum
from wanlean.video.text_encoding import encode_texts, padded_batch

PROMPT = "a red fox runs through snow"


def fresh_source():
    return load_diffusers_folder(str(tiny_folder("A14B")), device="cpu").text_encoder


def disk_cache(folder):
    return EmbeddingCache(MemoryCache(), DiskCache(str(folder)))


def encode_once(folder):
    """Encode PROMPT into an empty disk cache; (reference rows, the entry's path)."""
    source = fresh_source()
    encoded, _ = encode_texts(source, [PROMPT], disk_cache(folder))
    return encoded[0].rows, folder / (cache_key(source.identity, PROMPT) + ".safetensors")


def test_the_source_knows_the_rows_its_encoder_makes(tmp_path):
    rows, _ = encode_once(tmp_path)
    spec = fresh_source().row_spec
    assert spec == RowSpec(rows.shape[1], str(rows.dtype).removeprefix("torch."))


def test_edited_bytes_are_caught_by_the_checksum_and_encoded_again(tmp_path, caplog):
    reference, path = encode_once(tmp_path)
    data = bytearray(path.read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"  # the last float of the tensor becomes +inf: same size, same header
    path.write_bytes(bytes(data))

    later = fresh_source()
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        again, stats = encode_texts(later, [PROMPT], disk_cache(tmp_path))
    assert again[0].cache == "miss" and stats.encoder_forwards == 1
    torch.testing.assert_close(again[0].rows, reference, rtol=0, atol=0)
    assert "does not match its checksum" in caplog.text
    assert torch.equal(load_file(str(path))["embeds"], reference)  # the entry was written again, whole


def test_wrong_shape_under_the_right_name_is_removed_not_stacked(tmp_path, caplog):
    reference, path = encode_once(tmp_path)
    wrong = torch.ones(reference.shape[0], reference.shape[1] * 2)  # right name, checksum and count: wrong width
    metadata = {"format": FORMAT, "total_tokens": str(reference.shape[0]), "sha256": rows_checksum(wrong)}
    save_file({"embeds": wrong}, str(path), metadata=metadata)

    with caplog.at_level(logging.WARNING, logger="wanlean"):
        again, _ = encode_texts(fresh_source(), [PROMPT, "blurry"], disk_cache(tmp_path))
    assert again[0].cache == "miss" and "this encoder makes" in caplog.text
    assert padded_batch(again).shape[-1] == reference.shape[1]  # the batch stacks: no "equal size" error


def test_row_count_must_match_the_token_count(tmp_path, caplog):
    reference, path = encode_once(tmp_path)
    short = reference[:-1].clone()
    metadata = {"format": FORMAT, "total_tokens": str(reference.shape[0]), "sha256": rows_checksum(short)}
    save_file({"embeds": short}, str(path), metadata=metadata)
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        again, _ = encode_texts(fresh_source(), [PROMPT], disk_cache(tmp_path))
    assert again[0].cache == "miss" and f"holds {short.shape[0]} rows" in caplog.text


def test_entries_of_the_old_format_are_encoded_again(tmp_path):
    reference, path = encode_once(tmp_path)
    save_file({"embeds": reference}, str(path), metadata={"format": "wanlean-embedding-1", "total_tokens": str(reference.shape[0])})
    again, _ = encode_texts(fresh_source(), [PROMPT], disk_cache(tmp_path))
    assert again[0].cache == "miss"
    second, _ = encode_texts(fresh_source(), [PROMPT], disk_cache(tmp_path))
    assert second[0].cache == "disk"  # the rewritten entry is trusted


def test_a_file_in_the_way_skips_the_disk_cache_for_the_run_with_one_log_line(tmp_path, caplog):
    blocked = tmp_path / "cache"
    blocked.write_text("not a folder")
    cache = disk_cache(blocked)
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        encoded, _ = encode_texts(fresh_source(), [PROMPT, "blurry", "static"], cache)
    assert [e.cache for e in encoded] == ["miss"] * 3
    assert any(kind in (cache.disk.unwritable or "") for kind in ("FileExistsError", "NotADirectoryError"))
    assert caplog.text.count("disk cache is skipped for this run") == 1
    assert blocked.read_text() == "not a folder"


def test_a_write_error_that_is_not_an_oserror_does_not_fail_the_run(tmp_path, monkeypatch, caplog):
    import safetensors.torch

    class SafetensorError(Exception):  # what safetensors raises on "Operation not permitted"
        pass

    def refuse(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 1, kind: PermissionDenied })")

    monkeypatch.setattr(safetensors.torch, "save_file", refuse)
    cache = disk_cache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        encoded, _ = encode_texts(fresh_source(), [PROMPT, "blurry"], cache)
    assert [e.cache for e in encoded] == ["miss", "miss"] and "SafetensorError" in cache.disk.unwritable
    assert caplog.text.count("disk cache is skipped for this run") == 1
    assert [name for name in os.listdir(tmp_path)] == []  # no temporary file left behind


def test_disk_put_then_get_round_trips_bf16(tmp_path):
    rows = torch.randn(5, 8).to(torch.bfloat16)
    disk = DiskCache(str(tmp_path))
    disk.put("k", CachedEmbedding(rows, 5))
    got = disk.get("k", RowSpec(8, "bfloat16"))
    assert got is not None and torch.equal(got.rows, rows)
    assert disk.get("k", RowSpec(8, "float16")) is None and not os.listdir(tmp_path)
