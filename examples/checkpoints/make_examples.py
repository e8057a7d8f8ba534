"""Writes the example checkpoints in this folder. Run with a Python that has torch and numpy:

    /usr/bin/python3 examples/checkpoints/make_examples.py

The files are committed (they are small), so opening the examples needs no torch; this
script documents how each was made and re-creates them. Values come from fixed seeds.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))


def tiny_model() -> nn.Module:
    torch.manual_seed(0)

    class TinyLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(256, 32)
            self.blocks = nn.ModuleList(
                nn.ModuleDict(
                    {
                        "norm": nn.LayerNorm(32),
                        "mlp": nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32)),
                    }
                )
                for _ in range(2)
            )
            self.head = nn.Linear(32, 256, bias=False)
            self.head.weight = self.embed.weight  # tied weights: one storage, two names

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = self.embed(ids)
            for block in self.blocks:
                x = x + block["mlp"](block["norm"](x))
            return self.head(x)

    return TinyLM()


def safetensors_bytes(tensors: "OrderedDict[str, torch.Tensor]", metadata: dict) -> bytes:
    """The safetensors layout, from its specification (no safetensors library here)."""
    names = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64"}
    header: dict = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        raw = (
            t.view(torch.int16).numpy().tobytes()
            if t.dtype == torch.bfloat16
            else t.numpy().tobytes()
        )
        header[name] = {
            "dtype": names[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def state_for_safetensors(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    sd = model.state_dict()
    sd.pop("head.weight")  # tied to embed.weight; safetensors stores it once
    return OrderedDict((k, v) for k, v in sd.items())


def write(name: str, data: bytes) -> None:
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def main() -> None:
    model = tiny_model()
    write(
        "tiny-lm.safetensors",
        safetensors_bytes(state_for_safetensors(model), {"format": "pt", "step": "1000"}),
    )
    torch.save(model.state_dict(), os.path.join(HERE, "tiny-lm.pt"))

    # The same model after "training": two tensors changed, one added, one in bf16.
    with torch.no_grad():
        model.blocks[0]["mlp"][0].weight.add_(0.01)
        model.blocks[1]["norm"].bias.fill_(0.5)
    later = state_for_safetensors(model)
    later["blocks.1.mlp.2.weight"] = later["blocks.1.mlp.2.weight"].to(torch.bfloat16)
    later["lm_scale"] = torch.ones(1)
    write(
        "tiny-lm-step2000.safetensors", safetensors_bytes(later, {"format": "pt", "step": "2000"})
    )

    # A Lightning-style checkpoint: epoch, step, optimizer and scheduler state, callbacks.
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1000, gamma=0.5)
    loss = model(torch.arange(8)).pow(2).mean()
    loss.backward()
    opt.step()
    sched.step()
    ckpt = {
        "epoch": 3,
        "global_step": 1200,
        "pytorch-lightning_version": "2.1.0",
        "state_dict": OrderedDict(("model." + k, v) for k, v in model.state_dict().items()),
        "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 3}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min'}": {
                "monitor": "val_loss",
                "best_model_score": torch.tensor(0.4213),
                "best_model_path": "checkpoints/epoch=2-step=900.ckpt",
            }
        },
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [sched.state_dict()],
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 3e-4, "d_model": 32, "n_layers": 2, "vocab": 256},
    }
    torch.save(ckpt, os.path.join(HERE, "lightning-epoch3.ckpt"))

    # A checkpoint that runs a (harmless) shell command when torch.load unpickles it.
    torch.save(model.state_dict(), os.path.join(HERE, "unsafe-pickle.pt"))
    plant_payload(os.path.join(HERE, "unsafe-pickle.pt"))

    # numpy arrays.
    rng = np.random.default_rng(0)
    np.savez(
        os.path.join(HERE, "arrays.npz"),
        embeddings=rng.standard_normal((128, 16)).astype(np.float32),
        labels=rng.integers(0, 10, size=128),
        mask=rng.random(128) > 0.5,
    )

    write("tiny-llama.gguf", gguf_bytes())
    sharded(tiny_model())


def plant_payload(path: str) -> None:
    """Wrap data.pkl's state dict in a REDUCE of os.system, as a malicious upload would."""
    with zipfile.ZipFile(path) as zf:
        entries = [(i, zf.read(i.filename)) for i in zf.infolist()]
    out = path + ".tmp"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for info, data in entries:
            if info.filename.endswith("/data.pkl"):
                # PROTO 2 ... payload: os.system("echo ...") then POP, then the original body.
                cmd = b"echo 'unsafe-pickle.pt ran a shell command when it was loaded'"
                payload = b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd + b"\x85R0"
                data = payload + data[2:]
            zf.writestr(info, data)
    os.replace(out, path)


def gguf_bytes() -> bytes:
    """A small GGUF v3 file (llama layout) from the specification: F32, F16, Q8_0, Q4_0."""

    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    kv = []
    kv.append(s("general.architecture") + struct.pack("<I", 8) + s("llama"))
    kv.append(s("general.name") + struct.pack("<I", 8) + s("tiny-llama-example"))
    kv.append(s("general.file_type") + struct.pack("<I", 4) + struct.pack("<I", 7))
    kv.append(s("general.quantization_version") + struct.pack("<I", 4) + struct.pack("<I", 2))
    kv.append(s("llama.block_count") + struct.pack("<I", 4) + struct.pack("<I", 1))
    kv.append(s("llama.context_length") + struct.pack("<I", 4) + struct.pack("<I", 128))
    kv.append(s("llama.embedding_length") + struct.pack("<I", 4) + struct.pack("<I", 64))
    tokens = ["<unk>", "<s>", "</s>"] + ["tok%d" % i for i in range(61)]
    kv.append(
        s("tokenizer.ggml.tokens")
        + struct.pack("<I", 9)
        + struct.pack("<IQ", 8, len(tokens))
        + b"".join(s(t) for t in tokens)
    )
    # (name, ggml type, dims innermost first, bytes)
    rng = np.random.default_rng(1)
    tensors = []

    def q8_0(n: int) -> bytes:
        out = b""
        for _ in range(n // 32):
            out += np.float16(0.01).tobytes() + rng.integers(-127, 127, 32, dtype=np.int8).tobytes()
        return out

    def q4_0(n: int) -> bytes:
        out = b""
        for _ in range(n // 32):
            out += np.float16(0.02).tobytes() + rng.integers(0, 255, 16, dtype=np.uint8).tobytes()
        return out

    tensors.append(
        (
            "token_embd.weight",
            1,
            [64, 64],
            rng.standard_normal(64 * 64).astype(np.float16).tobytes(),
        )
    )
    tensors.append(("blk.0.attn_norm.weight", 0, [64], np.ones(64, np.float32).tobytes()))
    tensors.append(("blk.0.attn_q.weight", 8, [64, 64], q8_0(64 * 64)))
    tensors.append(("blk.0.ffn_up.weight", 2, [64, 128], q4_0(64 * 128)))
    tensors.append(("output_norm.weight", 0, [64], np.ones(64, np.float32).tobytes()))
    infos = b""
    data = b""
    for name, ggml_type, dims, raw in tensors:
        data += b"\x00" * (-len(data) % 32)
        infos += (
            s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        )
        infos += struct.pack("<IQ", ggml_type, len(data))
        data += raw
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv) + infos
    head += b"\x00" * (-len(head) % 32)
    return head + data


def sharded(model: nn.Module) -> None:
    folder = os.path.join(HERE, "sharded-tiny-lm")
    os.makedirs(folder, exist_ok=True)
    sd = state_for_safetensors(model)
    names = list(sd)
    half = len(names) // 2
    shards = [
        OrderedDict((n, sd[n]) for n in names[:half]),
        OrderedDict((n, sd[n]) for n in names[half:]),
    ]
    weight_map = {}
    total = 0
    for i, shard in enumerate(shards, 1):
        fname = "model-%05d-of-%05d.safetensors" % (i, len(shards))
        write(os.path.join(folder, fname), safetensors_bytes(shard, {"format": "pt"}))
        for n, t in shard.items():
            weight_map[n] = fname
            total += t.numel() * t.element_size()
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(
            {
                "architectures": ["TinyLM"],
                "model_type": "tiny-lm",
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "vocab_size": 256,
                "torch_dtype": "float32",
            },
            f,
            indent=2,
        )


if __name__ == "__main__":
    main()
