"""Write PyTorch checkpoint fixtures with torch itself, plus truth.json from torch.load.

Run with a Python that has torch (1.13+) and numpy: `python torch_fixtures.py OUT_DIR`.
truth.json maps each fixture file to the tensors torch.load finds in it: name (the path in
the loaded object, joined with "."), shape, dtype, numel, a storage id (equal ids share
bytes), the bytes of element 0 and, for small tensors, all bytes in row-major order.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import struct
import sys
import tarfile
from collections import OrderedDict
from typing import Any, Dict, List

import numpy as np
import torch  # pyright: ignore[reportMissingImports]

torch.manual_seed(0)
OUT = sys.argv[1]
TRUTH: Dict[str, Any] = {}


def raw(t: Any) -> bytes:
    """Row-major bytes of a tensor or array as stored (quantized: the integer values)."""
    if isinstance(t, np.ndarray):
        return np.ascontiguousarray(t).tobytes()
    t = t.detach()
    if t.is_quantized:
        t = t.int_repr()
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def entry(name: str, t: Any) -> Dict[str, Any]:
    if isinstance(t, np.ndarray):
        first = raw(t.reshape(-1)[:1]) if t.size else b""
        return {
            "name": name,
            "kind": "ndarray",
            "shape": list(t.shape),
            "dtype": "numpy." + t.dtype.str,
            "numel": int(t.size),
            "storage": None,
            "first": first.hex(),
            "bytes": raw(t).hex() if t.nbytes <= 256 else None,
        }
    numel = t.numel()
    first = raw(t.reshape(-1)[:1]) if numel else b""
    nbytes = numel * t.element_size()
    return {
        "name": name,
        "kind": "tensor",
        "shape": list(t.shape),
        "dtype": str(t.dtype),
        "numel": numel,
        "storage": t.storage().data_ptr() if numel else None,
        "first": first.hex(),
        "bytes": raw(t).hex() if nbytes <= 256 else None,
    }


def walk(obj: Any, prefix: str, out: List[Dict[str, Any]]) -> None:
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        out.append(entry(prefix or "tensor", obj))
        return
    if isinstance(obj, dict):
        items = list(obj.items())
    elif isinstance(obj, (list, tuple)):
        items = list(enumerate(obj))
    elif isinstance(obj, argparse.Namespace):
        items = list(vars(obj).items())
    else:
        return
    for k, v in items:
        walk(v, "%s.%s" % (prefix, k) if prefix else str(k), out)


def record(fname: str, loaded: Any, **extra: Any) -> None:
    out: List[Dict[str, Any]] = []
    walk(loaded, "", out)
    TRUTH[fname] = dict(tensors=out, **extra)


def path(fname: str) -> str:
    return os.path.join(OUT, fname)


def save(fname: str, obj: Any, **kw: Any) -> None:
    torch.save(obj, path(fname), **kw)
    record(fname, torch.load(path(fname)))


# ---- plain, nested, tied, views ----

save(
    "nested.pt",
    {
        "model": {
            "encoder": OrderedDict(weight=torch.randn(4, 3), bias=torch.randn(4)),
            "decoder": {"weight": torch.randn(2, 4)},
        },
        "scalars": [torch.randn(2), torch.randn(3)],
        "note": "hello",
        "step": 7,
    },
)

base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
emb = torch.randn(10, 4)
views = OrderedDict(
    [
        ("embed.weight", emb),
        ("head.weight", emb),
        ("base", base),
        ("row", base[1]),
        ("col", base[:, 2]),
        ("transposed", base.t()),
        ("slice", base[1:3, ::2]),
    ]
)
save("views.pt", views)
save("views_legacy.pt", views, _use_new_zipfile_serialization=False)
save("proto4.pt", views, pickle_protocol=4)

# ---- every dtype torch 1.13 can save ----

dtypes = OrderedDict(
    [
        ("f64", torch.randn(3, dtype=torch.float64)),
        ("f32", torch.randn(2, 3)),
        ("f16", torch.randn(5).half()),
        ("bf16", torch.randn(5).bfloat16()),
        ("i64", torch.arange(4)),
        ("i32", torch.arange(4, dtype=torch.int32)),
        ("i16", torch.arange(4, dtype=torch.int16)),
        ("i8", torch.arange(-2, 2, dtype=torch.int8)),
        ("u8", torch.arange(4, dtype=torch.uint8)),
        ("bool", torch.tensor([True, False, True])),
        ("c64", torch.randn(2, dtype=torch.complex64)),
        ("c128", torch.randn(2, dtype=torch.complex128)),
        ("qint8", torch.quantize_per_tensor(torch.randn(4), 0.1, 10, torch.qint8)),
        ("quint8", torch.quantize_per_tensor(torch.rand(3), 0.05, 2, torch.quint8)),
        ("scalar", torch.tensor(3.5)),
        ("empty", torch.zeros(0, 3)),
    ]
)
save("dtypes.pt", dtypes)
save("dtypes_legacy.pt", dtypes, _use_new_zipfile_serialization=False)

# ---- a Lightning-style checkpoint ----

net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=0.01)
net(torch.randn(5, 4)).sum().backward()
opt.step()
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
ckpt_key = (
    "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0, "
    "'every_n_epochs': 1, 'train_time_interval': None}"
)
lightning = {
    "epoch": 3,
    "global_step": 120,
    "pytorch-lightning_version": "2.1.0",
    "state_dict": OrderedDict(("model." + k, v) for k, v in net.state_dict().items()),
    "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 4}}}},
    "callbacks": {
        ckpt_key: {
            "monitor": "val_loss",
            "best_model_score": torch.tensor(0.25),
            "best_model_path": "/ckpt/epoch=2.ckpt",
            "current_score": torch.tensor(0.3),
            "dirpath": "/ckpt",
        }
    },
    "optimizer_states": [opt.state_dict()],
    "lr_schedulers": [sched.state_dict()],
    "hparams_name": "kwargs",
    "hyper_parameters": argparse.Namespace(lr=1e-3, batch_size=32, layers=[4, 3, 2], name="mlp"),
}
save("lightning.ckpt", lightning)

# ---- a whole module, a bare tensor, numpy inside ----

torch.save(net, path("model_full.pt"))
record("model_full.pt", torch.load(path("model_full.pt")).state_dict())
save("root_tensor.pt", torch.randn(3, 2))
save(
    "numpy_inside.pt",
    {
        "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
        "ints": np.array([1, 2, 3], dtype=np.int64),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
        "t": torch.randn(2),
    },
)

# ---- TorchScript ----


class Scripted(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.register_buffer("steps", torch.arange(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * 2.0


torch.jit.save(torch.jit.script(Scripted()), path("script.pt"))
record("script.pt", dict(torch.jit.load(path("script.pt")).state_dict()))

captured = torch.arange(3, dtype=torch.float32)


class Traced(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + captured  # becomes a TorchScript constant (constants.pkl)


torch.jit.save(torch.jit.trace(Traced(), torch.ones(3)), path("traced_const.pt"))
TRUTH["traced_const.pt"] = {"tensors": [], "constant": entry("CONSTANTS.c0", captured)}

# ---- bare pickles (tensors pickled via torch.storage._load_from_bytes) ----

plain = {"w": torch.arange(4.0), "n": np.arange(3, dtype=np.int32), "label": "x"}
for proto in (2, 4):
    with open(path("plain_p%d.pkl" % proto), "wb") as f:
        pickle.dump(plain, f, protocol=proto)
    with open(path("plain_p%d.pkl" % proto), "rb") as f:
        record("plain_p%d.pkl" % proto, pickle.load(f))
with open(path("numpy_p5.pkl"), "wb") as f:
    pickle.dump({"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": [1, 2]}, f, protocol=5)
with open(path("numpy_p5.pkl"), "rb") as f:
    record("numpy_p5.pkl", pickle.load(f))

# ---- the tar format (torch < 0.1.10), written by hand as legacy_load reads it ----


def save_tar(fname: str, named: "OrderedDict[str, torch.Tensor]") -> None:
    storages: Dict[int, torch.Tensor] = {}  # storage key -> contiguous base tensor
    keys: Dict[int, int] = {}  # data_ptr -> storage key
    for t in named.values():
        ptr = t.storage().data_ptr()
        if ptr not in keys:
            keys[ptr] = len(keys)
            storages[keys[ptr]] = torch.tensor(t.storage().tolist(), dtype=t.dtype)
    buf = io.BytesIO()
    pickle.dump(len(storages), buf, protocol=2)
    for key, b in storages.items():
        stype = {torch.float32: torch.FloatStorage, torch.float64: torch.DoubleStorage}[b.dtype]
        pickle.dump((key, "cpu", stype), buf, protocol=2)
        buf.write(struct.pack("<q", b.numel()))
        buf.write(raw(b))
    pickle.dump([], buf, protocol=2)
    storages_blob = buf.getvalue()
    buf = io.BytesIO()
    pickle.dump(len(named), buf, protocol=2)
    tensor_keys: Dict[str, int] = {}
    for i, (name, t) in enumerate(named.items()):
        key = 1000 + i
        tensor_keys[name] = key
        pickle.dump((key, keys[t.storage().data_ptr()], torch.FloatTensor), buf, protocol=2)
        buf.write(struct.pack("<i", t.dim()) + b"\0\0\0\0")
        buf.write(struct.pack("<%dq" % t.dim(), *t.shape))
        buf.write(struct.pack("<%dq" % t.dim(), *t.stride()))
        buf.write(struct.pack("<q", t.storage_offset()))
    tensors_blob = buf.getvalue()

    class P(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            for name, t in named.items():
                if obj is t:
                    return str(tensor_keys[name])
            return None

    buf = io.BytesIO()
    P(buf, protocol=2).dump(dict(named))
    pickle_blob = buf.getvalue()
    sys_info = pickle.dumps({"protocol_version": 1000, "little_endian": True}, protocol=2)
    with tarfile.open(path(fname), "w", format=tarfile.PAX_FORMAT) as tar:
        for name, blob in (
            ("sys_info", sys_info),
            ("pickle", pickle_blob),
            ("storages", storages_blob),
            ("tensors", tensors_blob),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    record(fname, torch.load(path(fname)))


tbase = torch.arange(12, dtype=torch.float32).reshape(3, 4)
save_tar(
    "legacy_tar.pt",
    OrderedDict(
        [
            ("w", tbase),
            ("row", tbase[1]),
            ("col", tbase[:, 1]),
            ("d", torch.arange(3.0, dtype=torch.float64)),
        ]
    ),
)

# ---- a 1,000-tensor state dict (timing) ----

big = OrderedDict(
    ("layers.%d.%s" % (i // 2, "weight" if i % 2 else "bias"), torch.zeros(4)) for i in range(1000)
)
torch.save(big, path("big_1000.pt"))
TRUTH["big_1000.pt"] = {"count": 1000}

with open(os.path.join(OUT, "truth.json"), "w") as f:
    json.dump({"torch": torch.__version__, "files": TRUTH}, f, indent=1)
