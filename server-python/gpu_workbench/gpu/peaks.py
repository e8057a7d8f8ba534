"""Datasheet peaks per GPU model, matched on the NVML name, for the throughput checks.

`tensorTflops` is the dense (no 2:4 sparsity) BF16 tensor-core rate with FP32 accumulate,
or FP16 where the model has no BF16 (T4, V100): the rate a plain `torch.matmul` in that
dtype can approach. NVIDIA's datasheets print the sparse figure with an asterisk; the
dense one is half of it. GeForce cards run FP16/BF16 with FP32 accumulate at half their
FP16-accumulate rate, so their figures here are the FP32-accumulate ones.
`bandwidthGBs` is the datasheet memory bandwidth in GB/s (10^9 bytes).

Matching: the name is lower-cased, "-" and "_" become spaces and it is padded with a space
on each side; a rule matches when every one of its fragments occurs in it (and none of
those written with a leading "!", e.g. "!3090 ti"). Rules are tried
in order, most specific first ("h100 nvl" before "h100", "l40s" before "l40" before "l4").

Sources (checked with a web search on 2026-11-23 unless marked otherwise):
  [H100]  NVIDIA H100 datasheet (SXM / PCIe columns), as reproduced by
          archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html and
          glennklockwood.com/garden/processors/h100: BF16 1,979* / 1,513* TFLOPS sparse,
          3,350 / 2,000 GB/s.
  [H100NVL] NVIDIA H100 datasheet, NVL column: BF16 1,671* TFLOPS, 3.9 TB/s, 94 GB.
          The 3.9 TB/s matches grokipedia's "3.93 TB/s"; the TFLOPS figure is not
          confirmed by the search (unconfirmed).
  [H200]  NVIDIA H200 datasheet: BF16 1,979* TFLOPS (SXM), 1,671* (NVL), 4.8 TB/s; the SXM
          numbers confirmed via itkb.uw.cz (dense 989) and lzwjava.github.io; the NVL
          TFLOPS unconfirmed.
  [GH200] NVIDIA GH200 Grace Hopper datasheet: same Hopper GPU as H100 SXM (989 dense);
          96 GB HBM3 at 4 TB/s, 144 GB HBM3e at 4.9 TB/s (unconfirmed by the search).
  [B200]  NVIDIA HGX B200 (1,000 W) per GPU: FP16/BF16 4.5 PFLOPS sparse = 2,250 dense,
          8 TB/s; GB200 (1,200 W) 5,000 sparse = 2,500 dense (glennklockwood.com/garden/
          processors/B200, citing NVIDIA's Blackwell datasheet; hmc-tech.com agrees).
  [A100]  NVIDIA A100 datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf, via
          glennklockwood.com/garden/processors/A100): BF16 312 dense; SXM4 80 GB 2,039 GB/s,
          PCIe 80 GB 1,935 GB/s, 40 GB (SXM4 and PCIe) 1,555 GB/s.
  [A10]   NVIDIA A10 datasheet: BF16 125 dense (250* sparse), 600 GB/s (the 600 GB/s
          confirmed via sysrqmts.com; the 125 TFLOPS = 72 SMs x 1,695 MHz x 1,024 FLOP/clk,
          datasheet figure not seen in the search).
  [A10G]  AWS-only variant; NVIDIA publishes no datasheet. baseten.co ("NVIDIA A10 vs
          A10G") says the A10G has less tensor compute than the A10 and the same
          600 GB/s; the 70 TFLOPS used here is the figure commonly quoted (unconfirmed).
  [L40]   NVIDIA L40 / L40S datasheets (via mullet.se): BF16 181.05 / 362.05 dense,
          864 GB/s.
  [L4]    NVIDIA L4 datasheet: BF16 242* TFLOPS sparse = 121 dense, 300 GB/s (300 GB/s
          and ~121-125 dense confirmed via hmc-tech.com / fpsbench.com).
  [T4]    NVIDIA T4 datasheet: mixed-precision (FP16/FP32) 65 TFLOPS, 320 GB/s
          (confirmed via hmc-tech.com and pcpartcomparison.com).
  [V100]  NVIDIA V100 datasheet: tensor 125 (SXM2) / 112 (PCIe) / 130 (V100S) TFLOPS,
          900 GB/s (1,134 GB/s V100S). 900 GB/s confirmed via datacrunch.io; the TFLOPS
          figures are from the datasheet as remembered (unconfirmed).
  [ADA]   NVIDIA Ada GPU architecture whitepaper, appendix: RTX 4090 FP16/BF16 tensor with
          FP32 accumulate 165.2 dense, 1,008 GB/s; RTX 6000 Ada 364.2 dense, 960 GB/s
          (unconfirmed by the search).
  [GA102] NVIDIA Ampere GA102 whitepaper v2: RTX 3090 FP16 tensor with FP32 accumulate 71
          dense, 936 GB/s; RTX A6000 154.8 dense (309.7* sparse), 768 GB/s (the 768 GB/s
          confirmed via sysrqmts.com; the TFLOPS unconfirmed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class Peak:
    model: str  # a readable model name, e.g. "H100 SXM"
    tensorTflops: float  # dense BF16 (FP16 where no BF16) tensor TFLOPS, FP32 accumulate
    bandwidthGBs: float  # datasheet memory bandwidth, GB/s
    bf16: bool  # the model has BF16 tensor cores (compute capability >= 8.0)
    source: str  # key of the source in the module docstring


# (fragments that must all occur in the normalized name, peak); most specific first.
RULES: Tuple[Tuple[Tuple[str, ...], Peak], ...] = (
    # Hopper
    (("gh200", "hbm3e"), Peak("GH200 (HBM3e)", 989.5, 4900.0, True, "GH200")),
    ((" gh200 ", " 144g"), Peak("GH200 (HBM3e)", 989.5, 4900.0, True, "GH200")),
    ((" gh200 ",), Peak("GH200", 989.5, 4000.0, True, "GH200")),
    ((" h200 ", " nvl "), Peak("H200 NVL", 835.5, 4800.0, True, "H200")),
    ((" h200 ",), Peak("H200 SXM", 989.5, 4800.0, True, "H200")),
    ((" h100 ", " nvl "), Peak("H100 NVL", 835.5, 3900.0, True, "H100NVL")),
    ((" h100 ", "pcie"), Peak("H100 PCIe", 756.5, 2000.0, True, "H100")),
    ((" h100 ",), Peak("H100 SXM", 989.5, 3350.0, True, "H100")),
    # Blackwell
    ((" gb200 ",), Peak("GB200", 2500.0, 8000.0, True, "B200")),
    ((" b200 ",), Peak("B200", 2250.0, 8000.0, True, "B200")),
    # Ampere data center
    ((" a100 ", "pcie", "80gb"), Peak("A100 PCIe 80GB", 312.0, 1935.0, True, "A100")),
    ((" a100 ", "pcie"), Peak("A100 PCIe 40GB", 312.0, 1555.0, True, "A100")),
    ((" a100 ", "40gb"), Peak("A100 SXM4 40GB", 312.0, 1555.0, True, "A100")),
    ((" a100 ",), Peak("A100 SXM4 80GB", 312.0, 2039.0, True, "A100")),
    ((" a10g ",), Peak("A10G", 70.0, 600.0, True, "A10G")),
    ((" a10 ",), Peak("A10", 125.0, 600.0, True, "A10")),
    # Ada data center
    ((" l40s ",), Peak("L40S", 362.05, 864.0, True, "L40")),
    ((" l40 ",), Peak("L40", 181.05, 864.0, True, "L40")),
    ((" l4 ",), Peak("L4", 121.0, 300.0, True, "L4")),
    # Turing / Volta
    ((" t4 ",), Peak("T4", 65.0, 320.0, False, "T4")),
    ((" v100s",), Peak("V100S", 130.0, 1134.0, False, "V100")),
    ((" v100", "pcie"), Peak("V100 PCIe", 112.0, 900.0, False, "V100")),
    ((" v100",), Peak("V100 SXM2", 125.0, 900.0, False, "V100")),
    # Workstation and GeForce
    ((" rtx 6000 ada",), Peak("RTX 6000 Ada", 364.2, 960.0, True, "ADA")),
    ((" rtx a6000",), Peak("RTX A6000", 154.8, 768.0, True, "GA102")),
    ((" rtx 4090",), Peak("GeForce RTX 4090", 165.2, 1008.0, True, "ADA")),
    ((" rtx 3090", "!3090 ti"), Peak("GeForce RTX 3090", 71.0, 936.0, True, "GA102")),
)


def normalize(name: str) -> str:
    """Lower case, "-"/"_" as spaces, single spaces, one space of padding each side."""
    text = name.lower().replace("-", " ").replace("_", " ")
    return " %s " % " ".join(text.split())


def peak(name: Optional[str]) -> Optional[Peak]:
    """The datasheet peak for an NVML device name, or None for an unknown model."""
    if not name:
        return None
    text = normalize(name)
    for fragments, found in RULES:
        if all((f[1:] not in text) if f.startswith("!") else (f in text) for f in fragments):
            return found
    return None
