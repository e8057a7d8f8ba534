"""The XID catalog: what an NVIDIA XID error means, how bad it is and what to do about it.

XIDs are error reports the NVIDIA kernel driver writes to the kernel log
(`NVRM: Xid (PCI:0000:10:1c): 63, pid=..., ...`) and, for the critical ones, delivers
through NVML's event API. The meanings and actions follow NVIDIA's XID catalog
(https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html) and its memory-error
pages for A100/H100; see /work/shared/reference/gpu-and-clouds.md section 1.3.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

# xid -> (meaning, severity, action). Severity: "critical" means the GPU (or the machine)
# needs a reset, a reboot or service; "warn" means a job may have failed but the GPU is
# usually fine.
CATALOG: Dict[int, Tuple[str, str, str]] = {
    13: (
        "graphics engine exception",
        "warn",
        "usually a bug in the application (an out-of-bounds access); fix or restart the job",
    ),
    31: (
        "GPU memory page fault",
        "warn",
        "usually a bug in the application (an illegal address); fix or restart the job",
    ),
    43: (
        "GPU stopped processing (a channel was reset)",
        "warn",
        "the affected application was stopped; restart it, the GPU itself is fine",
    ),
    45: (
        "preemptive cleanup after earlier errors",
        "warn",
        "follow the other XIDs reported with it",
    ),
    46: (
        "GPU stopped processing (timeout)",
        "critical",
        "reset the GPU (nvidia-smi -r) or reboot the machine",
    ),
    48: (
        "double-bit (uncorrectable) ECC memory error",
        "critical",
        "restart the job and reset the GPU; if it repeats, the GPU needs replacing",
    ),
    61: (
        "internal micro-controller breakpoint",
        "warn",
        "watch for further XIDs; reset the GPU if it stops responding",
    ),
    62: (
        "internal micro-controller halt",
        "critical",
        "reset the GPU (nvidia-smi -r) or reboot the machine",
    ),
    63: (
        "a memory row remap or page retirement was recorded",
        "warn",
        "reset the GPU or reboot at a convenient time so the remap takes effect",
    ),
    64: (
        "a memory row remap or page retirement failed",
        "critical",
        "reset the GPU; if it repeats after a reboot, the GPU needs replacing (RMA)",
    ),
    74: (
        "NVLink error",
        "critical",
        "check `nvidia-smi nvlink -e`; reset the GPUs or reboot, and replace the machine if it repeats",
    ),
    79: (
        "GPU has fallen off the bus",
        "critical",
        "stop using this machine; a reboot or a replacement is needed",
    ),
    92: (
        "high single-bit ECC error rate",
        "warn",
        "keep an eye on it; contact the provider if it keeps happening",
    ),
    94: (
        "contained uncorrectable memory error",
        "warn",
        "restart the affected job; the other jobs and the GPU are fine",
    ),
    95: (
        "uncontained uncorrectable memory error",
        "critical",
        "stop the jobs on this GPU and reset it (or reboot the machine)",
    ),
    119: (
        "GSP RPC timeout",
        "critical",
        "reset the GPU or reboot the machine",
    ),
    120: (
        "GSP error",
        "critical",
        "reset the GPU or reboot the machine",
    ),
    140: (
        "unrecovered ECC error",
        "critical",
        "reset the GPU or reboot the machine",
    ),
    143: (
        "GPU initialization error",
        "critical",
        "reset the GPU or reboot the machine; replace it if it repeats",
    ),
    154: (
        "the driver changed the GPU's recovery action",
        "warn",
        "follow the other XIDs reported with it (`nvidia-smi -q` shows the action needed)",
    ),
}

UNKNOWN_ACTION = "look it up in NVIDIA's XID catalog; restart the job if it failed"


def describe(xid: int) -> Tuple[str, str, str]:
    """(meaning, severity "warn"|"critical", action) for an XID."""
    known = CATALOG.get(int(xid))
    if known is not None:
        return known
    return ("XID %d (see NVIDIA's XID catalog)" % int(xid), "warn", UNKNOWN_ACTION)


# `NVRM: Xid (PCI:0000:10:1c): 63, pid=...`; older drivers omit "PCI:", newer ones may add
# the function (`0000:10:1c.0`). dmesg -T, journalctl -k and syslog prefixes come before it.
_XID_LINE = re.compile(
    r"NVRM: Xid \((?:PCI:)?([0-9A-Fa-f]{1,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f.]+)\):\s*(\d+)"
)


def parse_kernel_log(text: str) -> List[Tuple[str, int, str]]:
    """(PCI bus id as the log writes it, e.g. "0000:10:1c"; xid; the whole line) for every
    XID line in kernel-log text (dmesg, dmesg -T, journalctl -k, /var/log/syslog)."""
    found: List[Tuple[str, int, str]] = []
    for line in text.splitlines():
        match = _XID_LINE.search(line)
        if match is None:
            continue
        found.append((match.group(1), int(match.group(2)), line.strip()))
    return found


def bus_id_key(bus_id: Optional[str]) -> Optional[str]:
    """A PCI bus id reduced to "dddd:bb:dd" (lower case, no function) so the kernel log's
    "0000:10:1c" and nvidia-smi's / NVML's "00000000:10:1C.0" compare equal."""
    if not bus_id:
        return None
    text = bus_id.strip().lower()
    if text.startswith("pci:"):
        text = text[4:]
    parts = text.split(":")
    if len(parts) == 2:  # "bb:dd.f" without a domain
        parts = ["0", *parts]
    if len(parts) != 3:
        return None
    domain, bus, device = parts
    device = device.split(".")[0]
    try:
        return "%04x:%02x:%02x" % (int(domain, 16), int(bus, 16), int(device, 16))
    except ValueError:
        return None
