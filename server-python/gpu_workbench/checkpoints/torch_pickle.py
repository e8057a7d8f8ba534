"""Tensors, framework metadata and a structure sketch from a symbolically decoded torch pickle.

The readers (torch_zip, torch_legacy, pickle_file) run `pickle_vm` with a persistent-id hook
that returns `StorageRef`s; `extract` then walks the object graph: calls of torch's rebuild
functions become `model.Tensor` records named by their path in the graph ("fc.weight",
"state_dict.model.fc.weight", "optimizer_states.0.state.0.exp_avg"), numpy arrays pickled
inline become tensors too, and Lightning / optimizer / scheduler layouts become metadata.
Nothing here reads tensor data.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from .dtypes import DTYPES, TORCH_DTYPES
from .model import Check, Reading, Tensor, contiguous_strides, no_check, product
from .pickle_vm import Blob, ByteArrayAt, BytesAt, Call, Global, Key, PersistentId, Unresolved

# ---- storages and tensor descriptions ----


class StorageRef:
    """A storage named by a persistent id: where its bytes are and how many."""

    __slots__ = ("dtype", "key", "location", "member", "nbytes", "numel", "offset", "untyped")

    def __init__(
        self,
        key: str,
        dtype: str,
        numel: Optional[int],
        *,
        untyped: bool = False,
        location: str = "cpu",
        offset: Optional[int] = None,
        member: Optional[str] = None,
    ) -> None:
        self.key = key
        self.dtype = dtype  # canonical dtype of the storage class (U8 for UntypedStorage)
        self.untyped = untyped
        self.numel = numel  # elements of `dtype` (bytes for UntypedStorage)
        dt = DTYPES.get(dtype)
        self.nbytes = None if numel is None or dt is None else dt.nbytes(numel)
        self.location = location
        self.offset = offset  # absolute byte offset of the storage's first byte; None: unknown
        self.member = member  # zip member holding the bytes when they are compressed

    def __repr__(self) -> str:
        return "StorageRef(%s, %s, %s)" % (self.key, self.dtype, self.numel)


class StorageView:
    """A legacy storage view: `base` elements into the root storage `root`."""

    __slots__ = ("base", "root")

    def __init__(self, root: StorageRef, base: int) -> None:
        self.root = root
        self.base = base


class TensorInfo:
    """A tensor found in the graph, before it has a name."""

    __slots__ = (
        "byte_order",
        "detail",
        "dtype",
        "kind",
        "nbytes",
        "offset",
        "shape",
        "storage",
        "storage_offset",
        "stride",
    )

    def __init__(
        self,
        kind: str,
        dtype: str,
        shape: List[int],
        *,
        stride: Optional[List[int]] = None,
        storage: Optional[StorageRef] = None,
        storage_offset: int = 0,
        detail: Optional[str] = None,
        offset: Optional[int] = None,
        nbytes: Any = "auto",
        byte_order: Optional[str] = None,
    ) -> None:
        self.kind = kind  # tensor | parameter | qtensor | ndarray | sparse | meta | ...
        self.dtype = dtype
        self.shape = shape
        self.stride = stride
        self.storage = storage
        self.storage_offset = storage_offset
        self.detail = detail
        self.offset = offset  # explicit offset (numpy arrays inline in the pickle)
        self.nbytes = nbytes  # "auto": numel x element size
        self.byte_order = byte_order

    def describe(self) -> str:
        return "<%s %s %s>" % (self.kind, self.dtype, _shape_text(self.shape))


def _shape_text(shape: List[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


REBUILD_MODULES = frozenset(("torch._utils", "torch._tensor", "torch"))

# Path components whose tensors are training state rather than model weights.
STATE_KEYS = frozenset(
    (
        "optimizer",
        "optimizers",
        "optimizer_states",
        "optimizer_state",
        "optimizer_state_dict",
        "optim",
        "optim_state",
        "optim_state_dict",
        "opt",
        "opt_state",
        "lr_schedulers",
        "lr_scheduler",
        "lr_scheduler_state_dict",
        "scheduler",
        "schedulers",
        "scheduler_state_dict",
        "loops",
        "callbacks",
        "scaler",
        "grad_scaler",
        "amp",
        "amp_scaling_state",
        "native_amp_scaling_state",
    )
)

_LEAVES = (str, int, float, bool, bytes, bytearray, type(None), Global, Blob)

_NUMPY_RECONSTRUCT = frozenset(
    ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct")
)
_NUMPY_FROMBUFFER = frozenset(("numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer"))
_NUMPY_SCALAR = frozenset(("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"))
_NUMPY_KINDS = {"f": "F", "i": "I", "u": "U", "c": "C", "b": "BOOL", "O": "OBJECT"}


def numpy_dtype(code: str) -> Tuple[Optional[str], str]:
    """(canonical dtype, byte order) for a numpy dtype string like '<f4', 'i8', '|b1'."""
    order = "little"
    if code[:1] in ("<", ">", "|", "=", "!"):
        if code[0] in (">", "!"):
            order = "big"
        code = code[1:]
    named = {
        "float64": "F64",
        "float32": "F32",
        "float16": "F16",
        "int64": "I64",
        "int32": "I32",
        "int16": "I16",
        "int8": "I8",
        "uint8": "U8",
        "uint16": "U16",
        "uint32": "U32",
        "uint64": "U64",
        "bool": "BOOL",
        "complex64": "C64",
        "complex128": "C128",
        "object": "OBJECT",
        "d": "F64",
        "f": "F32",
        "e": "F16",
        "q": "I64",
        "l": "I64",
        "i": "I32",
        "h": "I16",
        "b": "I8",
        "B": "U8",
        "H": "U16",
        "I": "U32",
        "Q": "U64",
        "L": "U64",
        "?": "BOOL",
        "F": "C64",
        "D": "C128",
        "O": "OBJECT",
    }
    if code in named:
        return named[code], order
    kind = _NUMPY_KINDS.get(code[:1])
    if kind is None or not code[1:].isdigit():
        return None, order
    size = int(code[1:])
    if kind == "BOOL":
        return ("BOOL" if size == 1 else None), order
    if kind == "OBJECT":
        return "OBJECT", order
    name = "%s%d" % (kind, size * 8)
    return (name if name in DTYPES else None), order


def int_list(value: Any) -> Optional[List[int]]:
    """A shape/stride: a tuple or list of ints, or torch.Size((...))."""
    if type(value) is Call and type(value.func) is Global and value.func.name == "Size":
        args = value.args
        value = args[0] if isinstance(args, tuple) and args else None
    if not isinstance(value, (tuple, list)):
        return None
    out = []
    for v in value:
        if type(v) is not int or v < 0:
            return None
        out.append(v)
    return out


def as_bytes(value: Any) -> Optional[bytes]:
    """bytes for BINBYTES values and protocol-2 `_codecs.encode(text, 'latin1')` calls."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if type(value) is Call and type(value.func) is Global:
        if value.func.module == "_codecs" and value.func.name == "encode":
            args: Any = value.args
            text = args[0] if isinstance(args, tuple) and len(args) > 0 else None
            if isinstance(text, str):
                enc = args[1] if len(args) > 1 and isinstance(args[1], str) else "utf-8"
                try:
                    return text.encode(enc if enc in ("latin1", "latin-1") else "utf-8")
                except UnicodeEncodeError:
                    return None
        if value.func.name in ("bytearray", "bytes") and isinstance(value.args, tuple):
            if value.args:
                return as_bytes(value.args[0])
            return b""
    return None


def dict_items(value: Any) -> Optional[Dict[Any, Any]]:
    """The entries of a dict, an OrderedDict/dict-subclass call, or None."""
    if type(value) is dict:
        return value
    if type(value) is Call:
        if value.items is not None:
            return value.items
        if type(value.func) is Global and value.func.name in ("OrderedDict", "dict", "Counter"):
            args = value.args
            if isinstance(args, tuple) and args and isinstance(args[0], (list, tuple)):
                out: Dict[Any, Any] = {}
                for pair in args[0]:
                    if isinstance(pair, (list, tuple)) and len(pair) == 2:
                        out[pair[0] if not isinstance(pair[0], list) else Key(pair[0])] = pair[1]
                return out
            return {}
    return None


# ---- the extractor ----


class Extractor:
    """Fills a Reading from the decoded object graph of one pickle."""

    MAX_DEPTH = 64
    MAX_NODES = 5_000_000
    MAX_EXPANSIONS = 8  # a shared container is listed under at most this many names

    def __init__(
        self,
        reading: Reading,
        *,
        byte_order: str = "little",
        pickle_base: Optional[int] = None,
        where: str = "",
        check: Check = no_check,
        blob_reader: Optional[Callable[[bytes, Optional[int]], Optional[StorageRef]]] = None,
    ) -> None:
        self.reading = reading
        self.byte_order = byte_order
        self.pickle_base = pickle_base  # file offset of the pickle's byte 0 when stored plainly
        self.where = where
        self.check = check
        self.blob_reader = blob_reader  # torch.storage._load_from_bytes blobs
        self._infos: Dict[int, Optional[TensorInfo]] = {}
        self._keep: List[Any] = []  # keeps nodes alive so their ids stay unique
        self._blobs: Dict[int, Optional[StorageRef]] = {}

    # ---- tensors ----

    def tensor_of(self, node: Any) -> Optional[TensorInfo]:
        """The TensorInfo for a rebuild call / numpy array node, else None (memoized)."""
        if type(node) is TensorInfo:
            return node
        if type(node) is not Call:
            return None
        key = id(node)
        try:
            return self._infos[key]
        except KeyError:
            pass
        self._infos[key] = None  # guards against cycles through args
        self._keep.append(node)
        info = None
        try:
            info = self._build(node)
        except (
            IndexError,
            TypeError,
            ValueError,
            AttributeError,
            KeyError,
            OverflowError,
            RecursionError,
        ) as exc:
            self.reading.warn("%s: a tensor could not be decoded (%s)" % (self.where, exc))
        self._infos[key] = info
        return info

    def _build(self, node: Call) -> Optional[TensorInfo]:
        func = node.func
        if type(func) is not Global:
            return None
        name = func.name
        full = func.module + "." + name
        args = node.args
        if not isinstance(args, tuple):
            return None
        if func.module in REBUILD_MODULES and name.startswith("_rebuild_"):
            return self._rebuild(name, args, node)
        if full in _NUMPY_RECONSTRUCT:
            return self._numpy(node.state)
        if full in _NUMPY_FROMBUFFER:
            return self._numpy_frombuffer(args)
        if name == "Parameter" and func.module.startswith("torch") and args:
            inner = self.tensor_of(args[0])
            return None if inner is None else self._with(inner, "parameter", "parameter")
        return None

    def _with(self, inner: TensorInfo, kind: str, detail: Optional[str]) -> TensorInfo:
        out = TensorInfo(
            kind,
            inner.dtype,
            inner.shape,
            stride=inner.stride,
            storage=inner.storage,
            storage_offset=inner.storage_offset,
            detail=_join(detail, inner.detail),
            offset=inner.offset,
            nbytes=inner.nbytes,
            byte_order=inner.byte_order,
        )
        return out

    def _storage(self, value: Any) -> Tuple[Optional[StorageRef], int]:
        """(storage, element offset of a legacy view) for a rebuild call's storage argument."""
        if type(value) is StorageRef:
            return value, 0
        if type(value) is StorageView:
            return value.root, value.base
        if (
            type(value) is Call
            and type(value.func) is Global
            and value.func.name == "_load_from_bytes"
            and isinstance(value.args, tuple)
            and value.args
            and self.blob_reader is not None
        ):
            if id(value) in self._blobs:
                return self._blobs[id(value)], 0
            self._keep.append(value)
            self._blobs[id(value)] = None
            blob = value.args[0]
            raw = as_bytes(blob)
            if raw is None:
                return None, 0
            at = None
            if isinstance(blob, BytesAt) and blob.at >= 0 and self.pickle_base is not None:
                at = self.pickle_base + blob.at
            ref = self.blob_reader(raw, at)
            self._blobs[id(value)] = ref
            return ref, 0
        return None, 0

    def _rebuild(self, name: str, args: Tuple[Any, ...], node: Call) -> Optional[TensorInfo]:
        if name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3"):
            storage, base = self._storage(args[0])
            shape = int_list(args[2])
            stride = int_list(args[3])
            offset = args[1]
            if shape is None or type(offset) is not int:
                self.reading.warn("%s: %s with an unreadable size or offset" % (self.where, name))
                return None
            if storage is None:
                self.reading.warn(
                    "%s: %s on a storage that is not in the file (%s)"
                    % (self.where, name, type(args[0]).__name__)
                )
                return TensorInfo("tensor", "U8", shape, stride=stride, detail="storage missing")
            dtype = storage.dtype
            if name == "_rebuild_tensor_v3":
                dtype = self._dtype(args[6]) or dtype
            detail = None
            if len(args) > 6 and name == "_rebuild_tensor_v2" and dict_items(args[6]):
                detail = "metadata %s" % ", ".join(str(k) for k in dict_items(args[6]) or {})
            return TensorInfo(
                "tensor",
                dtype,
                shape,
                stride=stride,
                storage=storage,
                storage_offset=base + offset,
                detail=detail,
            )
        if name == "_rebuild_parameter" or name == "_rebuild_parameter_with_state":
            inner = self.tensor_of(args[0])
            if inner is None:
                return None
            return self._with(inner, "parameter", "parameter")
        if name == "_rebuild_qtensor":
            storage, base = self._storage(args[0])
            shape = int_list(args[2])
            stride = int_list(args[3])
            if shape is None or storage is None or type(args[1]) is not int:
                self.reading.warn("%s: an unreadable quantized tensor" % self.where)
                return None
            return TensorInfo(
                "qtensor",
                storage.dtype,
                shape,
                stride=stride,
                storage=storage,
                storage_offset=base + args[1],
                detail=self._qparams(args[4]),
            )
        if name == "_rebuild_from_type_v2":
            func, new_type, inner_args = args[0], args[1], args[2]
            if isinstance(inner_args, tuple):
                inner = self.tensor_of(Call(func, inner_args, "reduce"))
                if inner is not None:
                    cls = new_type.full if type(new_type) is Global else "subclass"
                    if cls in ("torch.Tensor", "torch.nn.parameter.Parameter"):
                        kind = "parameter" if cls.endswith("Parameter") else inner.kind
                        return self._with(inner, kind, "parameter" if kind == "parameter" else None)
                    return self._with(inner, inner.kind, "subclass %s" % cls)
            return None
        if name == "_rebuild_meta_tensor_no_storage":
            dtype = self._dtype(args[0]) or "F32"
            shape = int_list(args[1]) or []
            return TensorInfo(
                "meta",
                dtype,
                shape,
                stride=int_list(args[2]),
                detail="meta tensor (no data)",
                nbytes=None,
            )
        if name == "_rebuild_wrapper_subclass":
            dtype = self._dtype(args[1]) or "F32"
            shape = int_list(args[2]) or []
            cls = args[0].full if type(args[0]) is Global else "subclass"
            return TensorInfo(
                "tensor",
                dtype,
                shape,
                stride=int_list(args[3]),
                detail="wrapper subclass %s (data not in the pickle)" % cls,
                nbytes=None,
            )
        if name == "_rebuild_sparse_tensor":
            return self._sparse(args)
        if name in ("_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor"):
            inner = self.tensor_of(args[0])
            if inner is None:
                return None
            out = self._with(inner, "tensor", "device %s" % _device(args[2]))
            out.dtype = self._dtype(args[1]) or out.dtype
            return out
        if name == "_rebuild_nested_tensor":
            inner = self.tensor_of(args[0])
            self.reading.warn("%s: a nested tensor is listed by its flat buffer" % self.where)
            return None if inner is None else self._with(inner, "tensor", "nested tensor buffer")
        self.reading.warn("%s: unsupported rebuild function torch._utils.%s" % (self.where, name))
        return None

    def _dtype(self, value: Any) -> Optional[str]:
        if type(value) is Global and value.module == "torch":
            return TORCH_DTYPES.get(value.name)
        return None

    def _qparams(self, params: Any) -> str:
        if not isinstance(params, tuple) or not params:
            return "quantized"
        scheme = params[0].name if type(params[0]) is Global else str(params[0])
        if len(params) == 3:
            return "quantized %s scale=%s zero_point=%s" % (
                scheme,
                _number(params[1]),
                _number(params[2]),
            )
        if len(params) == 4:
            scales = self.tensor_of(params[1])
            return "quantized %s axis=%s%s" % (
                scheme,
                _number(params[3]),
                " scales %s" % scales.describe() if scales is not None else "",
            )
        return "quantized %s" % scheme

    def _sparse(self, args: Tuple[Any, ...]) -> Optional[TensorInfo]:
        layout = args[0]
        data = args[1]
        layout_name = layout.name if type(layout) is Global else str(layout)
        if not isinstance(data, tuple) or len(data) < 3:
            return None
        if layout_name == "sparse_coo":
            indices, values, size = data[0], data[1], data[2]
            parts = [("indices", indices), ("values", values)]
        else:
            values, size = data[2], data[3] if len(data) > 3 else None
            parts = [
                ("compressed indices", data[0]),
                ("plain indices", data[1]),
                ("values", values),
            ]
        vinfo = self.tensor_of(values)
        shape = int_list(size) or []
        described = ", ".join(
            "%s %s" % (label, t.describe())
            for label, t in ((label, self.tensor_of(v)) for label, v in parts)
            if t is not None
        )
        return TensorInfo(
            "sparse",
            vinfo.dtype if vinfo is not None else "F32",
            shape,
            detail="%s: %s" % (layout_name, described),
            nbytes=None,
        )

    def _numpy(self, state: Any) -> Optional[TensorInfo]:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            return None
        if len(state) == 5:
            state = state[1:]
        shape, dtype_node, fortran, raw = state
        shape_list = int_list(shape)
        if shape_list is None:
            return None
        return self._numpy_common(shape_list, dtype_node, bool(fortran), raw)

    def _numpy_frombuffer(self, args: Tuple[Any, ...]) -> Optional[TensorInfo]:
        if len(args) < 3:
            return None
        shape = int_list(args[2])
        if shape is None:
            return None
        order = args[3] if len(args) > 3 else "C"
        return self._numpy_common(shape, args[1], order == "F", args[0])

    def _numpy_common(
        self, shape: List[int], dtype_node: Any, fortran: bool, raw: Any
    ) -> Optional[TensorInfo]:
        code, order = _numpy_dtype_code(dtype_node)
        if code is None:
            return None
        dtype, byte_order = numpy_dtype(code)
        if order is not None:
            byte_order = "big" if order in (">", "!") else "little"
        if dtype is None:
            return TensorInfo(
                "ndarray",
                "U8",
                shape,
                detail="numpy array of dtype %r stored in the pickle" % code,
                nbytes=None,
            )
        offset = None
        if isinstance(raw, (BytesAt, ByteArrayAt)) and raw.at >= 0 and self.pickle_base is not None:
            offset = self.pickle_base + raw.at
        elif type(raw) is Blob and self.pickle_base is not None:
            offset = self.pickle_base + raw.offset
        stride = None
        if fortran and len(shape) > 1:
            stride = list(reversed(contiguous_strides(list(reversed(shape)))))
        return TensorInfo(
            "ndarray",
            dtype,
            shape,
            stride=stride,
            detail="numpy array stored in the pickle",
            offset=offset,
            byte_order=byte_order,
            nbytes=None if dtype == "OBJECT" else "auto",
        )

    def make_tensor(self, name: str, info: TensorInfo, role: str) -> Tensor:
        dt = DTYPES.get(info.dtype)
        numel = product(info.shape)
        nbytes = info.nbytes
        if nbytes == "auto":
            nbytes = dt.nbytes(numel) if dt is not None else None
        storage = info.storage
        offset = info.offset
        storage_key = None
        storage_bytes = None
        member = None
        if storage is not None:
            storage_key = storage.key
            storage_bytes = storage.nbytes
            member = storage.member
            start = dt.nbytes(info.storage_offset) if dt is not None else None
            if storage.offset is not None and start is not None:
                offset = storage.offset + start
            self._bounds(name, info, storage, numel)
        return Tensor(
            name,
            info.dtype,
            info.shape,
            nbytes,
            numel=numel,
            storage=storage_key,
            storage_offset=info.storage_offset,
            storage_bytes=storage_bytes,
            stride=info.stride,
            offset=offset,
            member=member,
            byte_order=info.byte_order or self.byte_order,
            role=role,
            detail=info.detail,
        )

    def _bounds(self, name: str, info: TensorInfo, storage: StorageRef, numel: int) -> None:
        if numel == 0 or storage.nbytes is None:
            return
        dt = DTYPES.get(info.dtype)
        if dt is None or dt.bits == 0:
            return
        stride = info.stride
        if stride is None:
            extent = info.storage_offset + numel
        elif len(stride) != len(info.shape):
            self.reading.warn(
                "%s: tensor %s has %d sizes but %d strides"
                % (self.where, name, len(info.shape), len(stride))
            )
            return
        else:
            extent = info.storage_offset + 1
            for size, step in zip(info.shape, stride):
                extent += (size - 1) * step
        capacity = storage.nbytes * 8 // dt.bits
        if extent > capacity:
            self.reading.warn(
                "%s: tensor %s needs %d elements of storage %s, which holds %d"
                % (self.where, name, extent, storage.key, capacity)
            )

    # ---- the walk ----

    def extract(self, root: Any, prefix: str = "") -> None:
        """Record every tensor under `root`, and (for the top level) metadata and structure."""
        reading = self.reading
        tensors = reading.tensors
        make = self.make_tensor
        tensor_of = self.tensor_of
        todo: List[Tuple[Any, str, bool, int]] = [(root, prefix, False, 0)]
        nodes = 0
        deep = False
        repeated = False
        expanded: Dict[int, int] = {}  # container id -> times its children were listed
        check = self.check
        while todo:
            node, name, state, depth = todo.pop()
            nodes += 1
            if nodes & 0xFFF == 0:
                check()
                if nodes > self.MAX_NODES:
                    reading.warn(
                        "%s: the object graph has over %d nodes (shared references?); "
                        "the tensor list stops there" % (self.where, self.MAX_NODES)
                    )
                    break
            t = type(node)
            if t is dict:
                children: Iterable[Tuple[Any, Any]] = node.items()
                if not state and "param_groups" in node and "state" in node:
                    state = True
            elif t is list or t is tuple:
                children = enumerate(node)
            elif t is Call or t is TensorInfo:
                info = tensor_of(node)
                if info is not None:
                    tensors.append(make(name or "tensor", info, "state" if state else "weight"))
                    continue
                assert t is Call
                children = self._call_children(node)
                items = node.items
                if not state and items is not None and "param_groups" in items and "state" in items:
                    state = True
            elif t is StorageRef:
                continue
            else:
                continue
            if depth >= self.MAX_DEPTH:
                deep = True
                continue
            seen = expanded.get(id(node), 0)
            if seen >= self.MAX_EXPANSIONS:
                repeated = True
                continue
            expanded[id(node)] = seen + 1
            pending = []
            for key, child in children:
                if isinstance(child, _LEAVES):
                    continue
                comp = _component(key)
                pending.append(
                    (
                        child,
                        name + "." + comp if name else comp,
                        state or comp.lower() in STATE_KEYS,
                        depth + 1,
                    )
                )
            pending.reverse()
            todo.extend(pending)
        if deep:
            reading.warn(
                "%s: the object graph nests deeper than %d levels" % (self.where, self.MAX_DEPTH)
            )
        if repeated:
            reading.warn(
                "%s: a container is referenced more than %d times (a memo expansion?); "
                "later references are not listed" % (self.where, self.MAX_EXPANSIONS)
            )

    def _call_children(self, node: Call) -> List[Tuple[Any, Any]]:
        out: List[Tuple[Any, Any]] = []
        if node.items:
            out.extend(node.items.items())
        if node.list_items:
            out.extend(enumerate(node.list_items))
        state = node.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            # (dict state, slot state)
            for part in state:
                if isinstance(part, dict):
                    out.extend(self._state_items(part))
        elif type(state) is dict:
            out.extend(self._state_items(state))
        elif isinstance(state, (list, tuple)):
            out.extend(enumerate(state))
        if (
            not out
            and isinstance(node.args, tuple)
            and (node.kind != "reduce" or type(node.func) is not Global)
        ):
            out.extend(enumerate(node.args))
        return out

    def _state_items(self, state: Dict[Any, Any]) -> List[Tuple[Any, Any]]:
        if "_parameters" in state or "_modules" in state:
            # a pickled nn.Module: name tensors as its state_dict would
            out: List[Tuple[Any, Any]] = []
            for attr in ("_parameters", "_buffers", "_modules"):
                entries = dict_items(state.get(attr))
                if entries:
                    out.extend(entries.items())
            return out
        return list(state.items())


def _component(key: Any) -> str:
    if type(key) is str:
        return key
    if type(key) is int or type(key) is bool:
        return str(key)
    if type(key) is Key:
        key = key.value
    if type(key) is float:
        return repr(key)
    if type(key) is Global:
        return key.full
    text = str(key) if isinstance(key, (bytes, tuple)) else type(key).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _join(a: Optional[str], b: Optional[str]) -> Optional[str]:
    if a and b and a != b:
        return a + "; " + b
    return a or b


def _device(value: Any) -> str:
    if type(value) is Call and isinstance(value.args, tuple) and value.args:
        return " ".join(str(a) for a in value.args)
    return str(value)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return type(value).__name__


def _numpy_dtype_code(node: Any) -> Tuple[Optional[str], Optional[str]]:
    """(dtype string, byte order char or None) of a pickled numpy.dtype call."""
    if isinstance(node, str):
        return node, None
    if type(node) is not Call or type(node.func) is not Global or node.func.name != "dtype":
        return None, None
    args = node.args
    if not isinstance(args, tuple) or not args or not isinstance(args[0], str):
        return None, None
    order = None
    state = node.state
    if isinstance(state, tuple) and len(state) > 1 and isinstance(state[1], str):
        order = state[1]
        if order in ("|", "="):
            order = None
    return args[0], order


# ---- rendering: JSON values for metadata and the structure sketch ----


class Renderer:
    """Depth- and size-bounded JSON renderings of decoded values."""

    def __init__(self, extractor: Extractor, budget: int = 4000, max_keys: int = 64) -> None:
        self.x = extractor
        self.budget = budget
        self.max_keys = max_keys

    def render(self, value: Any, depth: int = 4) -> Any:
        self.budget -= 1
        if self.budget < 0:
            return "..."
        t = type(value)
        if value is None or t is bool:
            return value
        if t is int:
            return (
                value if -(1 << 63) <= value < (1 << 63) else "<int: %d bits>" % value.bit_length()
            )
        if t is float:
            return _json_float(value)
        if t is str:
            return value if len(value) <= 200 else value[:197] + "..."
        if t is bytes or t is BytesAt or t is bytearray or t is ByteArrayAt:
            return "<bytes: %d>" % len(value)
        if t is Blob:
            return "<%s: %d bytes>" % (value.kind, value.length)
        if t is Global:
            return "<global %s>" % value.full
        if t is Key:
            return self.render(value.value, depth)
        if t is StorageRef:
            return "<storage %s x %s>" % (value.dtype, value.numel)
        if t is StorageView:
            return "<storage view>"
        if t is PersistentId:
            return "<persistent id>"
        if t is Unresolved:
            return "<unresolved %s>" % value.why
        info = self.x.tensor_of(value)
        if info is not None:
            return info.describe()
        if t is tuple or t is list:
            return self._sequence(value, depth)
        if t is set or t is frozenset:
            return self._sequence(list(value), depth)
        if t is dict:
            return self._dict(value, depth, None)
        if t is Call:
            return self._call(value, depth)
        return "<%s>" % t.__name__

    def _sequence(self, items: Any, depth: int) -> Any:
        n = len(items)
        tensors = sum(1 for v in items if self.x.tensor_of(v) is not None) if n else 0
        if n and tensors == n and n > 4:
            return "<list: %d tensors>" % n
        if depth <= 0 and n:
            return "<list: %d items>" % n
        shown = [self.render(v, depth - 1) for v in items[: self.max_keys // 2]]
        if n > len(shown):
            shown.append("<%d more items>" % (n - len(shown)))
        return shown

    def _dict(self, entries: Dict[Any, Any], depth: int, cls: Optional[str]) -> Any:
        n = len(entries)
        label = cls.rsplit(".", 1)[-1] if cls else "dict"
        if n:
            tensors = sum(1 for v in entries.values() if self.x.tensor_of(v) is not None)
            if tensors == n:
                return "<%s: %d tensors>" % (label, n)
        if depth <= 0 and n:
            return "<%s: %d keys>" % (label, n)
        out: Dict[str, Any] = {}
        if cls:
            out["__class__"] = cls
        for i, (k, v) in enumerate(entries.items()):
            if i >= self.max_keys:
                out["..."] = "<%d more keys>" % (n - i)
                break
            out[_component(k)] = self.render(v, depth - 1)
        return out

    def _call(self, node: Call, depth: int) -> Any:
        func = node.func
        name = func.full if type(func) is Global else None
        args = node.args if isinstance(node.args, tuple) else ()
        short = func.name if type(func) is Global else ""
        if (
            short in ("_reconstructor", "__newobj__", "__newobj_ex__")
            and args
            and type(args[0]) is Global
        ):
            # copyreg helpers (protocols 0-1 objects): show the class they instantiate
            cls = args[0]
            args = args[1:] if short == "__newobj__" else ()
            name = cls.full
            short = cls.name
        if name in ("collections.OrderedDict", "builtins.dict", "__builtin__.dict"):
            return self._dict(node.items or dict_items(node) or {}, depth, None)
        if short in ("set", "frozenset") and args:
            return self.render(args[0], depth)
        raw = as_bytes(node)
        if raw is not None:
            return "<bytes: %d>" % len(raw)
        if short == "Size" and args:
            return self.render(args[0], depth)
        if name == "torch.device":
            return "device(%s)" % ":".join(str(a) for a in args)
        if name in _NUMPY_SCALAR and len(args) == 2:
            return _numpy_scalar(args[0], args[1])
        if short == "dtype" and args and isinstance(args[0], str):
            return "dtype(%s)" % args[0]
        if type(func) is Global and func.module.startswith("omegaconf"):
            return self._omegaconf(node, depth)
        if depth <= 0:
            return "<%s>" % (name or "object")
        out: Dict[str, Any] = {"__class__": name or "<computed>"}
        if args:
            out["__args__"] = self._sequence(list(args), depth - 1)
        if node.items:
            for i, (k, v) in enumerate(node.items.items()):
                if i >= self.max_keys:
                    out["..."] = "<%d more keys>" % (len(node.items) - i)
                    break
                out[_component(k)] = self.render(v, depth - 1)
        if node.list_items:
            out["__items__"] = self._sequence(node.list_items, depth - 1)
        state = node.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            merged: Dict[Any, Any] = {}
            for part in state:
                if isinstance(part, dict):
                    merged.update(part)
            state = merged
        if type(state) is dict and ("_modules" in state or "_parameters" in state):
            state = _module_view(state)
        if type(state) is dict:
            for i, (k, v) in enumerate(state.items()):
                if i >= self.max_keys:
                    out["..."] = "<%d more attributes>" % (len(state) - i)
                    break
                out[_component(k)] = self.render(v, depth - 1)
        elif state is not None:
            out["__state__"] = self.render(state, depth - 1)
        return out

    def _omegaconf(self, node: Call, depth: int) -> Any:
        """OmegaConf DictConfig/ListConfig/ValueNode: show their content, not their internals."""
        state = node.state
        if isinstance(state, dict):
            if "_val" in state:
                return self.render(state["_val"], depth)
            content = state.get("_content")
            if content is not None:
                entries = dict_items(content)
                if entries is not None:
                    return self._dict(entries, depth, None)
                return self.render(content, depth)
        return "<%s>" % (node.func.full if type(node.func) is Global else "omegaconf")


def _module_view(state: Dict[Any, Any]) -> Dict[Any, Any]:
    """A pickled nn.Module's attributes as its user sees them: parameters, buffers and
    submodules by name, public attributes; no hook dictionaries."""
    out: Dict[Any, Any] = {}
    for k, v in state.items():
        if isinstance(k, str) and not k.startswith("_"):
            out[k] = v
    for attr in ("_parameters", "_buffers", "_modules"):
        entries = dict_items(state.get(attr))
        if entries:
            out.update(entries)
    return out


def _json_float(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


_SCALAR_FORMATS = {
    "F64": "d",
    "F32": "f",
    "F16": "e",
    "I64": "q",
    "I32": "i",
    "I16": "h",
    "I8": "b",
    "U8": "B",
    "U16": "H",
    "U32": "I",
    "U64": "Q",
    "BOOL": "?",
}


def _numpy_scalar(dtype_node: Any, raw: Any) -> Any:
    code, order = _numpy_dtype_code(dtype_node)
    data = as_bytes(raw)
    if code is None or data is None:
        return "<numpy scalar>"
    dtype, byte_order = numpy_dtype(code)
    if order is not None:
        byte_order = "big" if order in (">", "!") else "little"
    fmt = _SCALAR_FORMATS.get(dtype or "")
    if fmt is None or struct.calcsize(fmt) != len(data):
        return "<numpy %s scalar>" % code
    value = struct.unpack((">" if byte_order == "big" else "<") + fmt, data)[0]
    return _json_float(value) if isinstance(value, float) else value


# ---- framework metadata ----

_OPTIMIZER_TYPES = (
    ({"exp_avg", "exp_avg_sq"}, "Adam/AdamW"),
    ({"exp_avg", "exp_inf"}, "Adamax"),
    ({"square_avg", "acc_delta"}, "Adadelta"),
    ({"square_avg"}, "RMSprop"),
    ({"momentum_buffer"}, "SGD"),
    ({"sum"}, "Adagrad"),
    ({"prev", "step_size"}, "Rprop"),
    ({"d", "t", "old_dirs"}, "LBFGS"),
    ({"exp_avg", "mu_product"}, "NAdam"),
    ({"eta", "mu", "ax"}, "ASGD"),
)

_SCHEDULER_TYPES = (
    ("lr_lambdas", "LambdaLR / MultiplicativeLR"),
    ("T_0", "CosineAnnealingWarmRestarts"),
    ("T_max", "CosineAnnealingLR"),
    ("total_steps", "OneCycleLR"),
    ("milestones", "MultiStepLR"),
    ("step_size", "StepLR"),
    ("patience", "ReduceLROnPlateau"),
    ("base_lrs", "LRScheduler"),
)


def _scalar(value: Any) -> bool:
    return value is None or type(value) in (bool, int, float, str)


def _int_value(value: Any) -> Optional[int]:
    return value if type(value) is int else None


def optimizer_summary(sd: Dict[Any, Any], render: Renderer) -> Dict[str, Any]:
    """Type guess, parameter counts and hyperparameters of an optimizer state_dict."""
    state = dict_items(sd.get("state")) or {}
    groups_raw = sd.get("param_groups")
    groups = [dict_items(g) or {} for g in groups_raw] if isinstance(groups_raw, list) else []
    keys: Set[str] = set()
    for entry in state.values():
        d = dict_items(entry)
        if d:
            keys.update(k for k in d if isinstance(k, str))
    guess = None
    for needed, label in _OPTIMIZER_TYPES:
        if needed <= keys:
            guess = label
            break
    group_keys: Set[str] = set()
    for g in groups:
        group_keys.update(k for k in g if isinstance(k, str))
    if guess is None and groups:
        if "betas" in group_keys:
            guess = "Adam-like (no state yet)"
        elif "momentum" in group_keys and "nesterov" in group_keys:
            guess = "SGD"
    out_groups = []
    params = 0
    for g in groups[:16]:
        entry: Dict[str, Any] = {}
        for k, v in g.items():
            if k == "params":
                n = len(v) if isinstance(v, (list, tuple)) else 0
                entry["params"] = n
            elif k == "param_names":
                continue
            elif _scalar(v) or (isinstance(v, tuple) and all(_scalar(x) for x in v)):
                entry[_component(k)] = render.render(v, 1)
        out_groups.append(entry)
    for g in groups:
        v = g.get("params")
        params += len(v) if isinstance(v, (list, tuple)) else 0
    return {
        "type": guess,
        "stateKeys": sorted(keys)[:32],
        "paramsWithState": len(state),
        "parameters": params,
        "paramGroups": out_groups,
    }


def scheduler_summary(sd: Dict[Any, Any], render: Renderer) -> Dict[str, Any]:
    guess = None
    for key, label in _SCHEDULER_TYPES:
        if key in sd:
            guess = label
            break
    out: Dict[str, Any] = {"type": guess}
    for i, (k, v) in enumerate(sd.items()):
        if i >= 32:
            break
        if _scalar(v) or isinstance(v, (list, tuple)):
            out[_component(k)] = render.render(v, 1)
    return out


def _callbacks(entries: Dict[Any, Any], render: Renderer) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for i, (k, v) in enumerate(entries.items()):
        if i >= 32:
            break
        name = _component(k)
        d = dict_items(v)
        if d is not None and ("best_model_path" in d or name.startswith("ModelCheckpoint")):
            out[name] = {
                key: render.render(d[key], 1)
                for key in (
                    "monitor",
                    "best_model_score",
                    "best_model_path",
                    "current_score",
                    "last_model_path",
                    "dirpath",
                )
                if key in d
            }
        else:
            out[name] = render.render(v, 1) if d is None else sorted(_component(x) for x in d)[:32]
    return out


def extract(
    reading: Reading,
    root: Any,
    *,
    byte_order: str = "little",
    pickle_base: Optional[int] = None,
    where: str = "",
    check: Check = no_check,
    blob_reader: Optional[Callable[[bytes, Optional[int]], Optional[StorageRef]]] = None,
    prefix: str = "",
    top: bool = True,
) -> Extractor:
    """Tensors (always) and, for the top-level object, metadata and the structure sketch."""
    x = Extractor(
        reading,
        byte_order=byte_order,
        pickle_base=pickle_base,
        where=where,
        check=check,
        blob_reader=blob_reader,
    )
    x.extract(root, prefix)
    if top:
        describe_top(reading, root, x)
    return x


def describe_top(reading: Reading, root: Any, x: Extractor) -> None:
    """Reading.structure, epoch/global_step and framework metadata for the root object."""
    reading.structure = Renderer(x).render(root, 4)
    entries = dict_items(root)
    if entries is None:
        return
    render = Renderer(x, budget=4000)
    meta = reading.metadata
    epoch = _int_value(entries.get("epoch"))
    step = None
    for key in ("global_step", "step", "iteration", "iter"):
        step = _int_value(entries.get(key))
        if step is not None:
            break
    if epoch is not None:
        reading.epoch = epoch
    if step is not None:
        reading.global_step = step
    scalars = 0
    for k, v in entries.items():
        if isinstance(k, str) and _scalar(v) and scalars < 50:
            meta[k] = render.render(v, 0)
            scalars += 1
    hp = entries.get("hyper_parameters", entries.get("hparams"))
    if hp is not None:
        meta["hyper_parameters"] = Renderer(x, budget=2000).render(hp, 6)
    dm_hp = entries.get("datamodule_hyper_parameters")
    if dm_hp is not None:
        meta["datamodule_hyper_parameters"] = Renderer(x, budget=1000).render(dm_hp, 6)
    opts = entries.get("optimizer_states")
    if isinstance(opts, (list, tuple)):
        meta["optimizer_states"] = [
            optimizer_summary(d, render) for d in (dict_items(o) for o in opts[:8]) if d is not None
        ]
    for key in ("optimizer", "optimizer_state_dict", "optim", "optimizer_state"):
        d = dict_items(entries.get(key))
        if d is not None and "param_groups" in d:
            meta[key] = optimizer_summary(d, render)
    if "param_groups" in entries and "state" in entries:
        meta["optimizer"] = optimizer_summary(entries, render)
    scheds = entries.get("lr_schedulers")
    if isinstance(scheds, (list, tuple)):
        meta["lr_schedulers"] = [
            scheduler_summary(d, render)
            for d in (dict_items(s) for s in scheds[:8])
            if d is not None
        ]
    for key in ("scheduler", "lr_scheduler", "scheduler_state_dict"):
        d = dict_items(entries.get(key))
        if d is not None:
            meta[key] = scheduler_summary(d, render)
    cbs = dict_items(entries.get("callbacks"))
    if cbs is not None:
        meta["callbacks"] = _callbacks(cbs, render)
    loops = dict_items(entries.get("loops"))
    if loops is not None:
        meta["loops"] = sorted(_component(k) for k in loops)[:32]
