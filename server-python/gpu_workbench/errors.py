"""JSON-RPC / LSP error codes and the exceptions handlers raise to produce error replies."""

from __future__ import annotations

from typing import Any, Dict, Optional

from .protocol import ERROR_KINDS

# JSON-RPC 2.0 reserved codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# LSP-specific codes; application kinds (ERROR_KINDS) are chosen not to collide with these.
SERVER_NOT_INITIALIZED = -32002
UNKNOWN_ERROR_CODE = -32001
REQUEST_FAILED = -32803
SERVER_CANCELLED = -32802
CONTENT_MODIFIED = -32801
REQUEST_CANCELLED = -32800


class RpcError(Exception):
    """An error that becomes a JSON-RPC error object in the reply."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_dict(self) -> Dict[str, Any]:
        """Return the JSON-RPC `error` member for this error."""
        error: Dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class RequestCancelled(RpcError):
    """Raised by a handler that noticed its request was cancelled."""

    def __init__(self, message: str = "request cancelled") -> None:
        super().__init__(REQUEST_CANCELLED, message)


class ApplicationError(RpcError):
    """A domain failure with a stable `kind` the client can switch on.

    Serialized as ``{code, message, data: {kind, detail, hint}}`` where the code comes
    from ERROR_KINDS in protocol.py.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        detail: Optional[str] = None,
        hint: Optional[str] = None,
    ) -> None:
        if kind not in ERROR_KINDS:
            # A typo in a kind is a programming error; fail loudly rather than send a bogus code.
            raise ValueError("unknown application error kind: %r" % (kind,))
        super().__init__(ERROR_KINDS[kind], message, {"kind": kind, "detail": detail, "hint": hint})
        self.kind = kind
        self.detail = detail
        self.hint = hint


def error_response(request_id: Any, error: RpcError) -> Dict[str, Any]:
    """Build a complete JSON-RPC error response message."""
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_dict()}
