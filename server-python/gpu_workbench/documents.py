"""Open Python documents, kept in sync with the client (LSP full text sync).

Only documents the client opened with languageId ``python`` are kept. Each change replaces
the whole text (``TextDocumentSyncKind.Full``); an entry is a new immutable `Document`, so a
reader holding one never sees it change underneath it. Malformed notifications are logged
and ignored: a confused client must not take the backend down.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)

LANGUAGE_ID = "python"


class Document:
    """One version of an open document; `cache` holds values derived from this text."""

    __slots__ = ("cache", "text", "uri", "version")

    def __init__(self, uri: str, version: Optional[int], text: str) -> None:
        self.uri = uri
        self.version = version
        self.text = text
        # Derived data for exactly this text (e.g. parsed cells per marker set). Replacing
        # the document drops it, so it is keyed per (uri, version) without further effort.
        self.cache: Dict[Any, Any] = {}


def _version(value: Any) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def text_document_uri(params: Any) -> Optional[str]:
    """``params.textDocument.uri`` when present and a string, else None."""
    if not isinstance(params, dict):
        return None
    doc = params.get("textDocument")
    if not isinstance(doc, dict):
        return None
    uri = doc.get("uri")
    return uri if isinstance(uri, str) else None


class DocumentStore:
    """Thread-safe map of URI to the current `Document`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docs: Dict[str, Document] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._docs)

    def get(self, uri: str) -> Optional[Document]:
        with self._lock:
            return self._docs.get(uri)

    # ---- notifications ----

    def did_open(self, params: Any) -> None:
        doc = params.get("textDocument") if isinstance(params, dict) else None
        if not isinstance(doc, dict):
            log.warning("ignoring textDocument/didOpen without a textDocument")
            return
        uri, language, text = doc.get("uri"), doc.get("languageId"), doc.get("text")
        if not isinstance(uri, str) or not isinstance(text, str):
            log.warning("ignoring textDocument/didOpen without a string uri and text")
            return
        if language != LANGUAGE_ID:
            log.debug("not tracking %s (language %r)", uri, language)
            return
        with self._lock:
            self._docs[uri] = Document(uri, _version(doc.get("version")), text)
        log.debug("opened %s (%d characters)", uri, len(text))

    def did_change(self, params: Any) -> None:
        uri = text_document_uri(params)
        changes = params.get("contentChanges") if isinstance(params, dict) else None
        if uri is None or not isinstance(changes, list):
            log.warning("ignoring textDocument/didChange without a uri and contentChanges")
            return
        # Full sync: every change carries the whole text; the last one wins.
        text: Optional[str] = None
        for change in changes:
            if not isinstance(change, dict) or not isinstance(change.get("text"), str):
                log.warning("ignoring textDocument/didChange for %s: malformed change", uri)
                return
            if "range" in change and change["range"] is not None:
                log.warning("ignoring textDocument/didChange for %s: incremental change", uri)
                return
            text = change["text"]
        if text is None:
            return
        version = _version(params["textDocument"].get("version"))
        with self._lock:
            if uri not in self._docs:
                log.debug("change for a document that is not open: %s", uri)
                return
            self._docs[uri] = Document(uri, version, text)

    def did_close(self, params: Any) -> None:
        uri = text_document_uri(params)
        if uri is None:
            log.warning("ignoring textDocument/didClose without a uri")
            return
        with self._lock:
            self._docs.pop(uri, None)
