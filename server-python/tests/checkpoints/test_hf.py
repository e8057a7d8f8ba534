"""Hugging Face layouts: *.index.json with shards, and model folders."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import pytest
from spec_fixtures import (
    GGML_ID,
    LLAMA_CONFIG,
    gguf_bytes,
    hf_folder,
    need_torch_files,
    pattern,
    safetensors_bytes,
    write,
)

from gpu_workbench.checkpoints import hf, readers
from gpu_workbench.checkpoints.errors import CheckpointFormatError

SHARDS = {
    "model-00001-of-00002.safetensors": [
        ("model.embed_tokens.weight", "BF16", [16, 8]),
        ("model.layers.0.self_attn.q_proj.weight", "BF16", [8, 8]),
    ],
    "model-00002-of-00002.safetensors": [
        ("model.layers.0.mlp.up_proj.weight", "BF16", [8, 8]),
        ("model.norm.weight", "F32", [8]),
        ("lm_head.weight", "BF16", [16, 8]),
    ],
}
ALL_NAMES = [name for tensors in SHARDS.values() for name, _, _ in tensors]
INDEX = "model.safetensors.index.json"


def _folder(tmp_path, name: str = "model", **kwargs) -> str:
    folder = str(tmp_path / name)
    kwargs.setdefault("config", LLAMA_CONFIG)
    hf_folder(folder, SHARDS, **kwargs)
    return folder


def _weight_map() -> dict:
    return {name: shard for shard, tensors in SHARDS.items() for name, _, _ in tensors}


def test_index_aggregates_shards(tmp_path):
    folder = _folder(tmp_path)
    index = os.path.join(folder, INDEX)
    reading = readers.read(index)
    assert reading.format == "hf-index"
    assert reading.path == index
    assert sorted(t.name for t in reading.tensors) == sorted(ALL_NAMES)
    assert reading.warnings == []
    assert [os.path.basename(f["path"]) for f in reading.files] == sorted(SHARDS)
    assert all(f["format"] == "safetensors" for f in reading.files)
    for shard, tensors in SHARDS.items():
        shard_path = os.path.join(folder, shard)
        with open(shard_path, "rb") as f:
            data = f.read()
        for i, (name, _, _) in enumerate(tensors):
            (t,) = [t for t in reading.tensors if t.name == name]
            assert t.file == shard_path  # absolute shard path
            assert t.offset is not None and t.nbytes is not None
            assert data[t.offset : t.offset + t.nbytes] == pattern(i + 1, t.nbytes)
    assert reading.format_detail == (
        "Hugging Face index, LlamaForCausalLM (llama, bfloat16), 2 safetensors shards, 5 tensors"
    )
    assert reading.metadata["index"]["metadata"]["total_size"] > 0
    assert reading.metadata["index"]["shards"] == 2
    assert reading.metadata["safetensors"] == {"format": "pt"}
    assert reading.metadata["config"]["model_type"] == "llama"
    assert reading.safety.verdict == "safe"


def test_folder_uses_its_index(tmp_path):
    folder = _folder(tmp_path)
    summary = readers.inspect(folder)
    assert summary["format"] == "hf-folder"
    assert summary["path"] == folder
    assert summary["tensorCount"] == 5
    assert summary["formatDetail"].startswith(
        "Hugging Face folder, LlamaForCausalLM (llama, bfloat16), 2 safetensors shards"
    )
    assert summary["fileSize"] == sum(os.path.getsize(os.path.join(folder, s)) for s in SHARDS)
    json.dumps(summary, allow_nan=False)


def test_folder_without_index_reads_every_safetensors(tmp_path):
    folder = _folder(tmp_path, index=None)
    write(os.path.join(folder, "training_args.bin"), b"\x80\x04N.")
    write(os.path.join(folder, "README.md"), b"# hi")
    reading = readers.read(folder)
    assert reading.format == "hf-folder"
    assert len(reading.tensors) == 5
    assert any("training_args.bin" in w and "Not included" in w for w in reading.warnings)


def test_folder_of_gguf_without_config(tmp_path):
    folder = str(tmp_path / "g")
    write(os.path.join(folder, "m.gguf"), gguf_bytes([], [("w", GGML_ID["Q8_0"], [2, 32])]))
    write(os.path.join(folder, "notes.bin"), b"not a checkpoint at all")
    reading = readers.read(folder)
    assert [t.dtype for t in reading.tensors] == ["Q8_0"]
    assert reading.format_detail == "folder, 1 gguf shard, 1 tensors"
    assert reading.tensors[0].file == os.path.join(folder, "m.gguf")


def test_empty_folder_is_an_error(tmp_path):
    folder = str(tmp_path / "empty")
    os.makedirs(folder)
    write(os.path.join(folder, "config.json"), b"{}")
    with pytest.raises(CheckpointFormatError, match="No checkpoint files"):
        readers.read(folder)


def test_safetensors_index_preferred_over_bin_index(tmp_path):
    folder = _folder(tmp_path)
    write(
        os.path.join(folder, "pytorch_model.bin.index.json"),
        json.dumps({"weight_map": {"x": "pytorch_model.bin"}}).encode(),
    )
    reading = readers.read(folder)
    assert len(reading.tensors) == 5
    assert any("pytorch_model.bin.index.json" in w for w in reading.warnings)


# ---- index validation ----


def test_total_size_mismatch_warns(tmp_path):
    folder = _folder(tmp_path, total_size=123)
    reading = readers.read(os.path.join(folder, INDEX))
    assert any("total_size is 123" in w for w in reading.warnings)


def test_names_missing_moved_and_unindexed(tmp_path):
    wm = _weight_map()
    del wm["lm_head.weight"]  # in a shard but not in the index
    wm["model.ghost.weight"] = "model-00001-of-00002.safetensors"  # in the index only
    wm["model.norm.weight"] = "model-00001-of-00002.safetensors"  # actually in shard 2
    folder = _folder(tmp_path, weight_map=wm)
    reading = readers.read(os.path.join(folder, INDEX))
    text = "\n".join(reading.warnings)
    assert "1 tensor named by the index is missing from its shard: 'model.ghost.weight'" in text
    assert "model.norm.weight (in model-00002-of-00002.safetensors" in text
    assert "not in the index: 'lm_head.weight'" in text
    assert len(reading.tensors) == 5


@pytest.mark.parametrize(
    "bad_value",
    [{"file": "x.safetensors"}, "../model-00001-of-00002.safetensors", "/etc/passwd", "a/b", "", 3],
)
def test_malformed_weight_map_values_are_skipped(tmp_path, bad_value):
    wm = _weight_map()
    wm["model.bad.weight"] = bad_value
    folder = _folder(tmp_path, weight_map=wm)
    reading = readers.read(os.path.join(folder, INDEX))
    assert any("1 weight_map entry was skipped" in w for w in reading.warnings)
    assert len(reading.tensors) == 5


def test_all_entries_malformed_is_an_error(tmp_path):
    folder = _folder(tmp_path, weight_map={"a": "../../x", "b": {"nested": 1}})
    with pytest.raises(CheckpointFormatError, match="no usable shard"):
        readers.read(os.path.join(folder, INDEX))


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ([1, 2], "not a JSON object"),
        ({"metadata": {}}, "no weight_map"),
        ({"weight_map": ["a"]}, "no weight_map"),
        ({"weight_map": {}}, "no usable shard"),
    ],
)
def test_index_shape_errors(tmp_path, doc, fragment):
    path = write(str(tmp_path / "x.index.json"), json.dumps(doc).encode())
    with pytest.raises(CheckpointFormatError, match=fragment):
        hf.read_index(path)


def test_index_not_json(tmp_path):
    path = write(str(tmp_path / "x.index.json"), b"{not json")
    with pytest.raises(CheckpointFormatError, match="not valid JSON"):
        readers.read(path)


def test_missing_shard_warns_and_marks_safety_unknown(tmp_path):
    folder = _folder(tmp_path)
    os.remove(os.path.join(folder, "model-00002-of-00002.safetensors"))
    reading = readers.read(os.path.join(folder, INDEX))
    assert len(reading.tensors) == 2
    assert any("is missing" in w for w in reading.warnings)
    assert reading.safety.verdict == "unknown"
    assert not any("total_size" in w for w in reading.warnings)


def test_corrupt_shard_warns(tmp_path):
    folder = _folder(tmp_path)
    shard = os.path.join(folder, "model-00001-of-00002.safetensors")
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) - 5)
    reading = readers.read(os.path.join(folder, INDEX))
    assert len(reading.tensors) == 3
    assert any("could not be read" in w and "truncated" in w for w in reading.warnings)
    assert reading.safety.verdict == "unknown"


def test_all_shards_missing_is_an_error(tmp_path):
    folder = _folder(tmp_path)
    for shard in SHARDS:
        os.remove(os.path.join(folder, shard))
    with pytest.raises(CheckpointFormatError, match="None of the 2 shards"):
        readers.read(os.path.join(folder, INDEX))


def test_index_naming_itself_does_not_recurse(tmp_path):
    folder = _folder(tmp_path)
    wm = _weight_map()
    wm["x"] = INDEX
    write(os.path.join(folder, INDEX), json.dumps({"weight_map": wm}).encode())
    reading = readers.read(os.path.join(folder, INDEX))
    assert len(reading.tensors) == 5
    assert any("not a checkpoint file" in w for w in reading.warnings)


def test_duplicate_names_across_shards_warn(tmp_path):
    folder = str(tmp_path / "dup")
    write(os.path.join(folder, "a.safetensors"), safetensors_bytes([("w", "F32", [2])]))
    write(os.path.join(folder, "b.safetensors"), safetensors_bytes([("w", "F32", [2])]))
    reading = readers.read(folder)
    assert any("more than one shard" in w for w in reading.warnings)


def test_shard_warnings_are_prefixed(tmp_path):
    folder = str(tmp_path / "trail")
    write(os.path.join(folder, "a.safetensors"), safetensors_bytes([("w", "F32", [2])]) + b"xx")
    reading = readers.read(folder)
    assert any(w.startswith("a.safetensors: 2 bytes follow") for w in reading.warnings)


def test_config_is_bounded_and_optional(tmp_path):
    config = dict(LLAMA_CONFIG)
    config["id2label"] = {str(i): "label %d" % i for i in range(5000)}
    config["note"] = "x" * 100_000
    config["nan"] = float("nan")
    folder = _folder(tmp_path, config=config)
    reading = readers.read(folder)
    shown = reading.metadata["config"]
    assert len(shown["id2label"]) <= 257
    assert len(shown["note"]) < 5000
    assert shown["nan"] == "nan"
    json.dumps(reading.metadata, allow_nan=False)
    assert len(json.dumps(reading.metadata)) < 100_000


def test_bad_config_warns(tmp_path):
    folder = _folder(tmp_path, config=None)
    write(os.path.join(folder, "config.json"), b"[1, 2")
    reading = readers.read(folder)
    assert any("config.json could not be read" in w for w in reading.warnings)
    assert "config" not in reading.metadata


def test_check_is_called_between_shards(tmp_path):
    folder = _folder(tmp_path)
    calls = []

    class Stop(Exception):
        pass

    def check() -> None:
        calls.append(1)
        if len(calls) > 3:
            raise Stop()

    with pytest.raises(Stop):
        hf.read_index(os.path.join(folder, INDEX), check)
    calls.clear()
    hf.read_index(os.path.join(folder, INDEX), lambda: calls.append(1))
    assert len(calls) >= 2


def test_symlinked_shards_are_followed(tmp_path):
    """The Hugging Face cache links snapshot files to blobs; names stay plain."""
    folder = _folder(tmp_path)
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    for shard in SHARDS:
        target = blobs / shard
        shutil.move(os.path.join(folder, shard), target)
        os.symlink(target, os.path.join(folder, shard))
    reading = readers.read(folder)
    assert len(reading.tensors) == 5


# ---- PyTorch .bin shards (written by torch) ----


@pytest.mark.skipif(
    importlib.util.find_spec("gpu_workbench.checkpoints.torch_zip") is None,
    reason="the torch zip reader is not there yet",
)
def test_pytorch_bin_shards(tmp_path):
    source = need_torch_files()
    folder = str(tmp_path / "bin")
    os.makedirs(folder)
    wm = {}
    for shard, names in (
        ("pytorch_model-00001-of-00002.bin", ["a.weight"]),
        ("pytorch_model-00002-of-00002.bin", ["b.weight", "b.bias"]),
    ):
        shutil.copy(os.path.join(source, shard), os.path.join(folder, shard))
        wm.update({n: shard for n in names})
    index = write(
        os.path.join(folder, "pytorch_model.bin.index.json"),
        json.dumps({"metadata": {"total_size": 16 + 24}, "weight_map": wm}).encode(),
    )
    write(os.path.join(folder, "optimizer.pt"), b"\x80\x02N.")
    reading = readers.read(index)
    assert sorted(t.name for t in reading.tensors) == ["a.weight", "b.bias", "b.weight"]
    assert reading.warnings == []
    assert {f["format"] for f in reading.files} == {"pytorch-zip"}
    assert all(t.file and t.file.endswith(".bin") for t in reading.tensors)
    assert reading.safety.verdict == "safe"
    assert "2 pytorch-zip shards" in reading.format_detail
    # the folder, without the index: pytorch_model*.bin only (optimizer.pt is listed apart)
    os.remove(index)
    folder_reading = readers.read(folder)
    assert len(folder_reading.tensors) == 3
    assert any("optimizer.pt" in w for w in folder_reading.warnings)
