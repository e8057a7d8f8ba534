"""Property test: no sequence of malformed frames can kill or permanently desync the backend."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import backend_env, encode, spawn
from gpu_workbench.framing import MAX_CONTENT_LENGTH

PADDING = b"\n" * (16 * 1024)  # uses up a declared length that is up to 8 KiB too large
MAX_OVERSHOOT = 8 * 1024
_ids = itertools.count()

# Generation cost dominates the runtime, so values are kept shallow.

# Methods a fuzzed message may name. exit/shutdown are excluded: they end the session by design.
METHOD_NAMES = st.sampled_from(
    [
        "workbench/ping",
        "workbench/status",
        "initialize",
        "initialized",
        "$/cancelRequest",
        "$/setTrace",
        "textDocument/didOpen",
        "nope",
        "",
    ]
) | st.text(max_size=10).filter(lambda m: m not in ("exit", "shutdown"))

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=5,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2.0]) | scalars,
        "id": scalars | json_values,
        "method": METHOD_NAMES | scalars,
        "params": json_values,
        "result": scalars,
        "error": scalars,
    },
)
messages = request_like | json_values | st.lists(request_like | scalars, max_size=3)


def _body(value) -> bytes:
    return json.dumps(value).encode("utf-8")


@st.composite
def bad_length_frame(draw) -> bytes:
    body = draw(st.binary(max_size=200) | messages.map(_body))
    choice = draw(st.sampled_from(["nonnumeric", "negative", "small", "large", "huge", "missing"]))
    if choice == "nonnumeric":
        text = draw(
            st.text(max_size=12).filter(
                lambda t: "\r" not in t and "\n" not in t and not t.strip(" \t").isdigit()
            )
        )
        header = "Content-Length: " + text
    elif choice == "negative":
        header = "Content-Length: %d" % draw(st.integers(max_value=-1))
    elif choice == "small":
        header = "Content-Length: %d" % draw(st.integers(0, max(0, len(body) - 1)))
    elif choice == "large":
        header = "Content-Length: %d" % (len(body) + draw(st.integers(1, MAX_OVERSHOOT)))
    elif choice == "huge":
        header = "Content-Length: %d" % draw(st.integers(MAX_CONTENT_LENGTH + 1, 10**15))
    else:
        header = "Content-Type: application/json"
    extra = draw(st.sampled_from(["", "\r\nContent-Type: x", "\r\nbroken", "\r\nX: y\r\n"]))
    terminator = draw(st.sampled_from(["\r\n\r\n", "\r\n", "\n\n", ""]))
    return (header + extra + terminator).encode("utf-8", "surrogatepass") + body


frames = st.one_of(
    st.binary(max_size=300),
    bad_length_frame(),
    messages.map(encode),
    st.binary(max_size=100).map(lambda b: b"Content-Length: %d\r\n\r\n" % len(b) + b),
)


@pytest.fixture(scope="module")
def fuzz_backend(tmp_path_factory):
    env = backend_env(
        {"GPUWB_DATA_DIR": str(tmp_path_factory.mktemp("fuzz")), "GPUWB_LOG_LEVEL": "error"}
    )
    env.pop("GPUWB_DEBUG_METHODS")
    s = spawn(env)
    s.initialize()
    yield s
    s.close()


@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(st.lists(frames, min_size=1, max_size=3))
def test_backend_survives_malformed_frames(fuzz_backend, chunks):
    ping_id = "fuzz-ping-%d" % next(_ids)
    fuzz_backend.send_raw(b"".join(chunks) + PADDING)
    fuzz_backend.send_request("workbench/ping", {"payload": ping_id}, request_id=ping_id)
    response = fuzz_backend.response(ping_id, timeout=10)
    assert response["result"]["payload"] == ping_id
    fuzz_backend.drain()


def test_fuzz_backend_still_alive(fuzz_backend):
    # Runs after the property test (same module, file order).
    assert fuzz_backend.proc.poll() is None
    assert "result" in fuzz_backend.ping()
