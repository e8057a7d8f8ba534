"""The XID catalog and the kernel-log parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_workbench.gpu import xid

CRITICAL = {46, 48, 62, 64, 74, 79, 95, 119, 120, 140, 143}
WARN = {13, 31, 43, 45, 61, 63, 92, 94, 154}


@pytest.mark.parametrize("number", sorted(CRITICAL | WARN))
def test_catalog_severity(number):
    meaning, severity, action = xid.describe(number)
    assert severity == ("critical" if number in CRITICAL else "warn")
    assert meaning and action
    assert "XID %d (see" % number not in meaning


def test_known_meanings():
    assert xid.describe(79)[0] == "GPU has fallen off the bus"
    assert "double-bit" in xid.describe(48)[0]
    assert "remap" in xid.describe(63)[0]
    assert "failed" in xid.describe(64)[0]
    assert "reboot" in xid.describe(63)[2]
    assert "NVLink" in xid.describe(74)[0]


@given(st.integers(min_value=0, max_value=100000).filter(lambda n: n not in xid.CATALOG))
def test_unknown_xids_warn(number):
    meaning, severity, action = xid.describe(number)
    assert meaning == "XID %d (see NVIDIA's XID catalog)" % number
    assert severity == "warn"
    assert action


KERNEL_LOG = """\
[Sat Nov 21 04:12:09 2026] nvidia-nvlink: Nvlink Core is being initialized, major device number 234
[Sat Nov 21 04:12:33 2026] NVRM: Xid (PCI:0000:10:1c): 63, pid=2211, name=python, Row Remapper: New row (0x0000000000aa0010) was marked for remapping, reset gpu to activate.
[Sat Nov 21 05:40:01 2026] NVRM: GPU at PCI:0000:86:00: GPU-f4219f85-0134-455f-8e6a-6374c5f86846
[Sat Nov 21 05:40:01 2026] NVRM: Xid (PCI:0000:86:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.
Nov 21 06:01:17 node-7 kernel: NVRM: Xid (PCI:0000:3b:00): 48, pid=991, name=torchrun, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.
2026-11-21T06:05:44,123456+00:00 NVRM: Xid (PCI:0000:00:01.0): 13, pid=4411, name=python3, Graphics SM Warp Exception on (GPC 0, TPC 1, SM 0): Out Of Range Address
[ 1399.140323] NVRM: Xid (0000:01:00): 31, Ch 00000010, engmask 00000101, intr 10000000
[ 1400.000000] NVRM: Xid seen but malformed
"""


def test_parse_kernel_log():
    found = xid.parse_kernel_log(KERNEL_LOG)
    assert [(bus, number) for bus, number, _ in found] == [
        ("0000:10:1c", 63),
        ("0000:86:00", 79),
        ("0000:3b:00", 48),
        ("0000:00:01.0", 13),
        ("0000:01:00", 31),
    ]
    assert found[1][2].endswith("GPU has fallen off the bus.")
    assert found[1][2].startswith("[Sat Nov 21 05:40:01 2026] NVRM: Xid")
    assert xid.parse_kernel_log("") == []


def test_bus_id_key():
    assert xid.bus_id_key("00000000:86:00.0") == "0000:86:00"
    assert xid.bus_id_key("0000:86:00") == "0000:86:00"
    assert xid.bus_id_key("PCI:0000:3B:00") == "0000:3b:00"
    assert xid.bus_id_key("0000:00:01.0") == "0000:00:01"
    assert xid.bus_id_key("3b:00.0") == "0000:3b:00"
    assert xid.bus_id_key("") is None
    assert xid.bus_id_key(None) is None
    assert xid.bus_id_key("garbage") is None


@given(st.text(max_size=300))
def test_parse_kernel_log_never_fails(text):
    for bus, number, line in xid.parse_kernel_log(text):
        assert isinstance(number, int) and bus and line
