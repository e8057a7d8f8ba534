"""The torch readers against torch itself: names, shapes, dtypes, numel, offsets, sharing."""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Set

import pytest

from gpu_workbench.checkpoints import readers
from gpu_workbench.checkpoints.model import Reading

DTYPES = {
    "torch.float64": "F64",
    "torch.float32": "F32",
    "torch.float16": "F16",
    "torch.bfloat16": "BF16",
    "torch.int64": "I64",
    "torch.int32": "I32",
    "torch.int16": "I16",
    "torch.int8": "I8",
    "torch.uint8": "U8",
    "torch.bool": "BOOL",
    "torch.complex64": "C64",
    "torch.complex128": "C128",
    "torch.qint8": "QINT8",
    "torch.quint8": "QUINT8",
    "numpy.<f4": "F32",
    "numpy.<f8": "F64",
    "numpy.<i8": "I64",
    "numpy.<i4": "I32",
}

FORMATS = {
    "nested.pt": "pytorch-zip",
    "views.pt": "pytorch-zip",
    "views_legacy.pt": "pytorch-legacy",
    "proto4.pt": "pytorch-zip",
    "dtypes.pt": "pytorch-zip",
    "dtypes_legacy.pt": "pytorch-legacy",
    "lightning.ckpt": "pytorch-zip",
    "model_full.pt": "pytorch-zip",
    "root_tensor.pt": "pytorch-zip",
    "numpy_inside.pt": "pytorch-zip",
    "script.pt": "torchscript",
    "plain_p2.pkl": "pickle",
    "plain_p4.pkl": "pickle",
    "numpy_p5.pkl": "pickle",
    "legacy_tar.pt": "pytorch-tar",
}

# Tensors whose bytes are not addressable: numpy data pickled as text (protocol 2).
NO_OFFSET = {
    ("plain_p2.pkl", "n"),
    ("plain_p2.pkl", "w"),
    ("numpy_inside.pt", "arr"),
    ("numpy_inside.pt", "ints"),
    ("numpy_inside.pt", "fortran"),
}


def _inspect(fx: Any, name: str) -> Dict[str, Any]:
    return readers.inspect(fx.path(name))


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_tensors_match_torch_load(torch_fixtures: Any, name: str) -> None:
    summary = _inspect(torch_fixtures, name)
    assert summary["format"] == FORMATS[name]
    got = {t["name"]: t for t in summary["tensors"]}
    truth = torch_fixtures.tensors(name)
    expected = {e["name"] for e in truth}
    names = set(got)
    if name == "script.pt":
        names = {n for n in names if not n.startswith("CONSTANTS.")}
    assert names == expected
    assert summary["tensorCount"] == len(got)
    json.dumps(summary, allow_nan=False)  # strict JSON, as the protocol sends it
    for e in truth:
        t = got[e["name"]]
        assert t["shape"] == e["shape"], e["name"]
        assert t["dtype"] == DTYPES[e["dtype"]], e["name"]
        assert t["numel"] == e["numel"], e["name"]


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_offsets_point_at_the_bytes(torch_fixtures: Any, name: str) -> None:
    summary = _inspect(torch_fixtures, name)
    got = {t["name"]: t for t in summary["tensors"]}
    with open(torch_fixtures.path(name), "rb") as f:
        for e in torch_fixtures.tensors(name):
            t = got[e["name"]]
            if (name, e["name"]) in NO_OFFSET:
                assert t["offset"] is None
                continue
            if e["numel"] == 0:
                continue
            assert t["offset"] is not None, e["name"]
            assert t["member"] is None
            first = bytes.fromhex(e["first"])
            f.seek(t["offset"])
            assert f.read(len(first)) == first, "element 0 of %s" % e["name"]
            if e["bytes"] is not None and t["stride"] is None:
                whole = bytes.fromhex(e["bytes"])
                assert t["nbytes"] == len(whole)
                f.seek(t["offset"])
                assert f.read(len(whole)) == whole, "bytes of %s" % e["name"]


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_shared_storages_match(torch_fixtures: Any, name: str) -> None:
    summary = _inspect(torch_fixtures, name)
    groups: Dict[int, Set[str]] = {}
    for e in torch_fixtures.tensors(name):
        if e["storage"] is not None:
            groups.setdefault(e["storage"], set()).add(e["name"])
    expected = {frozenset(g) for g in groups.values() if len(g) > 1}
    got = {frozenset(s["tensors"]) for s in summary["sharedStorages"]}
    assert got == expected


def test_views_strides_and_offsets(torch_fixtures: Any) -> None:
    for name in ("views.pt", "views_legacy.pt", "proto4.pt"):
        t = {x["name"]: x for x in _inspect(torch_fixtures, name)["tensors"]}
        assert t["row"]["storageOffset"] == 6 and t["row"]["stride"] is None
        assert t["col"]["storageOffset"] == 2 and t["col"]["stride"] == [6]
        assert t["transposed"]["stride"] == [1, 6]
        assert t["slice"]["storageOffset"] == 6 and t["slice"]["stride"] == [6, 2]
        assert t["row"]["offset"] == t["base"]["offset"] + 24
        assert t["embed.weight"]["storage"] == t["head.weight"]["storage"]
        summary = _inspect(torch_fixtures, name)
        # de-duplicated: emb (40 floats) + base (24 floats)
        assert summary["storageBytes"] == (40 + 24) * 4
        assert not summary["warnings"]


def test_quantized_detail(torch_fixtures: Any) -> None:
    for name in ("dtypes.pt", "dtypes_legacy.pt"):
        t = {x["name"]: x for x in _inspect(torch_fixtures, name)["tensors"]}
        assert "per_tensor_affine" in t["qint8"]["detail"]
        assert "scale=0.1" in t["qint8"]["detail"] and "zero_point=10" in t["qint8"]["detail"]
        assert t["scalar"]["shape"] == [] and t["scalar"]["numel"] == 1
        assert t["empty"]["numel"] == 0 and t["empty"]["nbytes"] == 0


def test_lightning_checkpoint(torch_fixtures: Any) -> None:
    s = _inspect(torch_fixtures, "lightning.ckpt")
    assert s["epoch"] == 3 and s["globalStep"] == 120
    meta = s["metadata"]
    assert meta["pytorch-lightning_version"] == "2.1.0"
    opt = meta["optimizer_states"][0]
    assert opt["type"] == "Adam/AdamW"
    assert opt["parameters"] == 4 and opt["paramsWithState"] == 4
    group = opt["paramGroups"][0]
    assert group["lr"] == 0.001 and group["betas"] == [0.9, 0.999]
    assert group["weight_decay"] == 0.01 and group["params"] == 4
    assert meta["lr_schedulers"][0]["type"] == "StepLR"
    assert meta["lr_schedulers"][0]["step_size"] == 10
    hp = meta["hyper_parameters"]
    assert hp["__class__"] == "argparse.Namespace"
    assert hp["lr"] == 0.001 and hp["batch_size"] == 32 and hp["layers"] == [4, 3, 2]
    (cb,) = meta["callbacks"].values()
    assert cb["monitor"] == "val_loss" and cb["best_model_path"] == "/ckpt/epoch=2.ckpt"
    roles = {t["name"]: t["role"] for t in s["tensors"]}
    assert roles["state_dict.model.0.weight"] == "weight"
    assert roles["optimizer_states.0.state.0.exp_avg"] == "state"
    assert all(r == "state" for n, r in roles.items() if n.startswith("callbacks."))
    assert s["parameterCount"] == 4 * 3 + 3 + 3 * 2 + 2
    assert s["structure"]["state_dict"] == "<dict: 4 tensors>"
    safety = s["safety"]
    assert safety["verdict"] == "unknown"
    assert [g["name"] for g in safety["globals"] if g["classification"] != "allowed"] == [
        "Namespace"
    ]
    scan = readers.scan([torch_fixtures.path("lightning.ckpt")], allow=["argparse.Namespace"])
    assert scan["results"][0]["verdict"] == "safe"


def test_plain_state_dicts_are_safe(torch_fixtures: Any) -> None:
    for name in ("views.pt", "views_legacy.pt", "dtypes.pt", "nested.pt", "legacy_tar.pt"):
        safety = _inspect(torch_fixtures, name)["safety"]
        assert safety["verdict"] == "safe", (name, safety)
        assert all(g["classification"] == "allowed" for g in safety["globals"])


def test_metadata_and_formats(torch_fixtures: Any) -> None:
    s = _inspect(torch_fixtures, "views.pt")
    assert s["metadata"]["archive"] == "views"
    assert "PyTorch zip" in s["formatDetail"] and "'views'" in s["formatDetail"]
    nested = _inspect(torch_fixtures, "nested.pt")
    assert nested["globalStep"] == 7
    assert nested["structure"]["note"] == "hello"
    assert nested["structure"]["model"]["encoder"] == "<dict: 2 tensors>"
    root = _inspect(torch_fixtures, "root_tensor.pt")
    assert [t["name"] for t in root["tensors"]] == ["tensor"]
    full = _inspect(torch_fixtures, "model_full.pt")
    assert full["safety"]["verdict"] == "unknown"
    legacy = _inspect(torch_fixtures, "views_legacy.pt")
    assert legacy["metadata"]["sysInfo"]["protocol_version"] == 1001


def test_numpy_arrays(torch_fixtures: Any) -> None:
    s = _inspect(torch_fixtures, "numpy_inside.pt")
    t = {x["name"]: x for x in s["tensors"]}
    assert t["arr"]["detail"] == "numpy array stored in the pickle"
    assert t["fortran"]["stride"] == [1, 2]
    assert t["t"]["detail"] is None


def test_torchscript(torch_fixtures: Any) -> None:
    s = _inspect(torch_fixtures, "script.pt")
    assert s["format"] == "torchscript"
    assert "TorchScript" in s["formatDetail"]
    assert s["safety"]["verdict"] == "unsafe"
    assert any("TorchScript archives run code" in f for f in s["safety"]["findings"])
    assert any(c.startswith("__torch__") for c in s["metadata"]["code"])


def test_torchscript_constants(torch_fixtures: Any) -> None:
    s = _inspect(torch_fixtures, "traced_const.pt")
    assert s["format"] == "torchscript"
    (t,) = s["tensors"]
    want = torch_fixtures.truth["files"]["traced_const.pt"]["constant"]
    assert t["name"] == want["name"] and t["shape"] == want["shape"] and t["dtype"] == "F32"
    with open(torch_fixtures.path("traced_const.pt"), "rb") as f:
        f.seek(t["offset"])
        assert f.read(12) == bytes.fromhex(want["bytes"])


def test_bare_pickles_scan_embedded_blobs(torch_fixtures: Any) -> None:
    for name in ("plain_p2.pkl", "plain_p4.pkl"):
        s = _inspect(torch_fixtures, name)
        names = {(g["module"], g["name"]) for g in s["safety"]["globals"]}
        assert ("torch.storage", "_load_from_bytes") in names
        assert ("torch", "FloatStorage") in names  # from the embedded torch.save blob
        assert s["safety"]["verdict"] == "unknown"
        assert s["structure"]["label"] == "x"


def test_thousand_tensor_file_is_fast(torch_fixtures: Any) -> None:
    path = torch_fixtures.path("big_1000.pt")
    readers.read(path)  # warm imports
    best = float("inf")
    reading = Reading(path, "", "")
    for _ in range(3):
        started = time.perf_counter()
        reading: Reading = readers.read(path)
        best = min(best, time.perf_counter() - started)
    assert len(reading.tensors) == 1000
    # well under 50 ms on an idle machine; generous here for loaded CI runners
    assert best < 0.5, "inspecting 1,000 tensors took %.0f ms" % (best * 1000)


def test_cancel_check_is_called(torch_fixtures: Any) -> None:
    from gpu_workbench.checkpoints.errors import Cancelled

    calls: List[int] = []

    def check() -> None:
        calls.append(1)
        raise Cancelled()

    with pytest.raises(Cancelled):
        readers.read(torch_fixtures.path("big_1000.pt"), check)
    assert calls


def test_compressed_storages_are_addressed_in_their_member(
    torch_fixtures: Any, tmp_path: Any
) -> None:
    import zipfile

    src = torch_fixtures.path("views.pt")
    dst = str(tmp_path / "deflated.pt")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    s = readers.inspect(dst)
    assert any("compressed" in f for f in s["safety"]["findings"])
    got = {t["name"]: t for t in s["tensors"]}
    with zipfile.ZipFile(dst) as z:
        for e in torch_fixtures.tensors("views.pt"):
            t = got[e["name"]]
            assert t["member"] is not None and t["member"].startswith("views/data/")
            first = bytes.fromhex(e["first"])
            blob = z.read(t["member"])
            assert blob[t["offset"] : t["offset"] + len(first)] == first


def test_truncated_legacy_file_still_lists_tensors(torch_fixtures: Any, tmp_path: Any) -> None:
    with open(torch_fixtures.path("views_legacy.pt"), "rb") as f:
        data = f.read()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) - 40])
    s = readers.inspect(str(cut))
    assert s["format"] == "pytorch-legacy"
    assert {t["name"] for t in s["tensors"]} == {
        e["name"] for e in torch_fixtures.tensors("views_legacy.pt")
    }
    assert any("truncated" in w for w in s["warnings"])


def test_legacy_magic_number_bypass_is_scanned(tmp_path: Any) -> None:
    from gpu_workbench.checkpoints import torch_legacy

    # the "magic number" is computed by eval(...) before torch.load checks it
    evil = b"\x80\x02cbuiltins\neval\nX\x16\x00\x00\x000x1950a86a20f9469cfc6c\x85R."
    rest = b"\x80\x02M\xe9\x03.\x80\x02}.\x80\x02}.\x80\x02]."
    path = tmp_path / "bypass.pt"
    path.write_bytes(evil + rest)
    reading = torch_legacy.read(str(path), lambda: None)
    assert reading.safety.verdict == "unsafe"
    assert any("magic" in text for _, text in reading.safety.findings)
    assert readers.inspect(str(path))["safety"]["verdict"] == "unsafe"


def test_torchscript_code_is_never_executed(torch_fixtures: Any, tmp_path: Any) -> None:
    import zipfile

    marker = tmp_path / "ran"
    src = torch_fixtures.path("script.pt")
    dst = str(tmp_path / "evil_script.pt")
    payload = "import os\nopen(%r, 'w').write('x')\n" % str(marker)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("code/__torch__.py"):
                data = payload.encode() + data
            zout.writestr(info, data)
    s = readers.inspect(dst)
    assert s["format"] == "torchscript" and s["safety"]["verdict"] == "unsafe"
    assert not marker.exists()
