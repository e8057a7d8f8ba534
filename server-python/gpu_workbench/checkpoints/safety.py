"""Classify the globals a pickle would import: allowed, unknown or unsafe.

The allowlist mirrors torch's weights-only unpickler (torch/_weights_only_unpickler.py):
what `torch.load(weights_only=True)` accepts, plus numpy's array reconstruction helpers.
The blocklist gathers what pickle scanners (picklescan, fickling) treat as dangerous.
Every dotted component of the module and of the name is checked, because a dotted name
is resolved by attribute lookup: ("pathlib", "os.system") is os.system.

`extra_allowed` adds user-allowed "module.name" entries for one request (`scan --allow`);
it uses a ContextVar because the backend runs handlers on a thread pool.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import FrozenSet, Iterator, List, Tuple

from .dtypes import TORCH_DTYPES, TORCH_STORAGES

ALLOWED = "allowed"
UNKNOWN = "unknown"
UNSAFE = "unsafe"

_extra: contextvars.ContextVar[FrozenSet[str]] = contextvars.ContextVar(
    "gpu_workbench_extra_allowed", default=frozenset()
)

# Never allowed, not even through --allow (torch refuses these too).
NEVER_ALLOWED = frozenset(("sys", "os", "posix", "nt"))

_REBUILD = (
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_qtensor",
    "_rebuild_sparse_tensor",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_wrapper_subclass",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_device_tensor_from_cpu_tensor",
    "_rebuild_nested_tensor",
)

_TENSOR_TYPES = (
    "Double",
    "Float",
    "Half",
    "BFloat16",
    "Long",
    "Int",
    "Short",
    "Char",
    "Byte",
    "Bool",
    "ComplexFloat",
    "ComplexDouble",
    "QInt8",
    "QUInt8",
    "QInt32",
)

_QSCHEMES = (
    "per_tensor_affine",
    "per_tensor_symmetric",
    "per_channel_affine",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
)


def _build_allowlist() -> FrozenSet[str]:
    names = {
        "collections.OrderedDict",
        "collections.Counter",
        "torch.nn.parameter.Parameter",
        "torch.serialization._get_layout",
        "torch.Size",
        "torch.Tensor",
        "torch.device",
        "_codecs.encode",
        "builtins.bytearray",
        "builtins.set",
        "builtins.complex",
        # protocol 0-2 pickles written by Python 3 name builtins as Python 2 did
        "__builtin__.bytearray",
        "__builtin__.set",
        "__builtin__.complex",
        "torch._tensor._rebuild_from_type_v2",
        "torch.UntypedStorage",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        "torch.TypedStorage",
        "torch.storage._LegacyStorage",
        "torch.layout",
        "torch.strided",
        "torch.sparse_coo",
        "torch.sparse_csr",
        "torch.sparse_csc",
        "torch.sparse_bsr",
        "torch.sparse_bsc",
        "torch._mkldnn",
    }
    for name in _REBUILD:
        names.add("torch._utils." + name)
    for name in TORCH_DTYPES:
        names.add("torch." + name)
    for bits in range(1, 8):
        names.add("torch.uint%d" % bits)
        names.add("torch.int%d" % bits)
    for name in TORCH_STORAGES:
        names.add("torch." + name)
        names.add("torch.cuda." + name)
    for t in _TENSOR_TYPES:
        for prefix in ("torch.", "torch.cuda.", "torch.sparse.", "torch.cuda.sparse."):
            names.add(prefix + t + "Tensor")
    for q in _QSCHEMES:
        names.add("torch." + q)
    return frozenset(names)


TORCH_ALLOWED = _build_allowlist()

# numpy's array / dtype / scalar reconstruction: data only, no code.
NUMPY_ALLOWED = frozenset(
    (
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
        "numpy.dtype",
        "numpy.ndarray",
    )
)

# Whole modules (and every submodule) that give code execution, file or network access.
DANGEROUS_MODULES = frozenset(
    (
        "os",
        "posix",
        "nt",
        "posixpath",
        "ntpath",
        "sys",
        "subprocess",
        "_posixsubprocess",
        "socket",
        "_socket",
        "ssl",
        "_ssl",
        "shutil",
        "pty",
        "pdb",
        "bdb",
        "pickle",
        "_pickle",
        "cPickle",
        "marshal",
        "pip",
        "ensurepip",
        "runpy",
        "timeit",
        "cProfile",
        "profile",
        "trace",
        "pydoc",
        "venv",
        "webbrowser",
        "asyncio",
        "aiohttp",
        "ctypes",
        "_ctypes",
        "cffi",
        "httplib",
        "http",
        "urllib",
        "urllib2",
        "requests",
        "smtplib",
        "ftplib",
        "telnetlib",
        "imaplib",
        "poplib",
        "nntplib",
        "xmlrpc",
        "socketserver",
        "test",
        "_osx_support",
        "_aix_support",
        "_pyrepl",
        "_interpreters",
        "_xxsubinterpreters",
        "code",
        "codeop",
        "compileall",
        "py_compile",
        "types",
        "importlib",
        "imp",
        "_imp",
        "pkgutil",
        "zipimport",
        "gc",
        "site",
        "sysconfig",
        "unittest",
        "doctest",
        "inspect",
        "multiprocessing",
        "concurrent",
        "threading",
        "_thread",
        "signal",
        "atexit",
        "operator",
        "_operator",
        "functools",
        "tempfile",
        "distutils",
        "setuptools",
        "idlelib",
        "lib2to3",
        "tkinter",
        "turtle",
        "sqlite3",
        "glob",
        "platform",
        "mmap",
        "tarfile",
        "zipfile",
        "shelve",
        "dbm",
        "pathlib",
        "fileinput",
        "linecache",
        "builtins",
        "__builtin__",
        "__builtins__",
        "dill",
        "cloudpickle",
        "commands",
        "popen2",
        "resource",
        "fcntl",
        "termios",
        "_winapi",
        "winreg",
        "_winreg",
        "msvcrt",
        "select",
        "selectors",
        "uuid",
        "fickling",
        "picklescan",
        "modelscan",
        "numpy.f2py",
        "numpy.distutils",
        "numpy.testing._private.utils",
        "torch.utils.bottleneck",
        "torch.hub",
    )
)

# Module names that, met as any dotted component (module or name), reach a dangerous module
# through attribute lookup: ("torch", "storage.os.system").
DANGEROUS_COMPONENTS = frozenset(
    (
        "os",
        "posix",
        "nt",
        "sys",
        "subprocess",
        "_posixsubprocess",
        "builtins",
        "__builtin__",
        "__builtins__",
        "socket",
        "shutil",
        "pty",
        "runpy",
        "pickle",
        "_pickle",
        "cPickle",
        "marshal",
        "importlib",
        "ctypes",
        "_ctypes",
        "pip",
        "webbrowser",
        "commands",
        "popen2",
        "dill",
        "cloudpickle",
        "pdb",
        "bdb",
        "timeit",
        "pydoc",
        "functools",
        "operator",
        "_operator",
        "__globals__",
        "__code__",
        "__subclasses__",
        "__getattribute__",
        "__getattr__",
        "__import__",
        "__loader__",
        "__spec__",
        "__dict__",
        "__class__",
        "__base__",
        "__bases__",
        "__mro__",
        "__init__",
        "__call__",
        "__reduce__",
        "__reduce_ex__",
        "__setstate__",
        "__func__",
        "__self__",
        "__closure__",
        "__defaults__",
        "__kwdefaults__",
        "__module__",
        "__file__",
        "__wrapped__",
        "__self_class__",
    )
)

# Submodule names that only an attacker would create (a real package has no `os` submodule).
_MODULE_COMPONENTS = frozenset(
    ("os", "posix", "nt", "sys", "subprocess", "builtins", "__builtin__", "__builtins__")
)

# Specific dangerous globals in otherwise unlisted modules.
DANGEROUS_GLOBALS = frozenset(
    (
        "logging.FileHandler",
        "logging.config.listen",
        "logging.config.fileConfig",
        "logging.config.dictConfig",
        "pkgutil.resolve_name",
        "codecs.open",
        "numpy.load",
        "numpy.loadtxt",
        "numpy.fromfile",
        "numpy.save",
        "numpy.savetxt",
        "numpy.tofile",
        "numpy.memmap",
        "numpy.lib.npyio.load",
        "numpy.testing._private.utils.runstring",
        "pandas.read_pickle",
        "pandas.io.pickle.read_pickle",
        "joblib.load",
        "torch.load",
        "torch.serialization.load",
        "torch.jit.load",
        "torch.jit._serialization.load",
        "torch.package.PackageImporter",
        "torch._inductor.codecache.compile_file",
        "torch.utils._config_module.ConfigModule.load_config",
        "torch.jit.unsupported_tensor_ops.execWrapper",
        "torch.fx.experimental.symbolic_shapes.ShapeEnv.evaluate_guards_expression",
        "torch.utils.collect_env.run",
        "torch.utils.cpp_extension.load",
        "torch.utils.cpp_extension.load_inline",
        "torch._dynamo.guards.GuardBuilder",
        "torch.ops.load_library",
        "torch._ops.ops.load_library",
        "torch.classes.load_library",
        "io.open",
        "io.FileIO",
        "io.open_code",
        "_io.open",
        "_io.FileIO",
        "_io.open_code",
        "keras.models.load_model",
        "tensorflow.io.write_file",
        "tensorflow.io.read_file",
    )
)

# Harmless builtins: calling them cannot run code or touch files (fickling's SAFE_BUILTINS).
SAFE_BUILTINS = frozenset(
    (
        "bool",
        "int",
        "float",
        "complex",
        "str",
        "bytes",
        "bytearray",
        "list",
        "tuple",
        "set",
        "frozenset",
        "dict",
        "len",
        "abs",
        "sum",
        "min",
        "max",
        "round",
        "pow",
        "divmod",
        "sorted",
        "reversed",
        "enumerate",
        "zip",
        "range",
        "slice",
        "hash",
        "repr",
        "ascii",
        "bin",
        "hex",
        "oct",
        "ord",
        "chr",
        "isinstance",
        "issubclass",
        "object",
        "callable",
        "format",
        "all",
        "any",
        "NotImplemented",
        "Ellipsis",
        "True",
        "False",
        "None",
    )
)

_BUILTIN_MODULES = ("builtins", "__builtin__", "__builtins__")

_WHY_TORCH = "on torch's weights-only allowlist"
_WHY_NUMPY = "numpy array/dtype/scalar reconstruction (data only)"


def _prefixes(dotted: str) -> Iterator[str]:
    parts = dotted.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def classify(module: str, name: str) -> Tuple[str, str]:
    """(classification, reason) for the global `module`.`name`, exactly as written."""
    full = module + "." + name
    module_parts = module.split(".")
    name_parts = name.split(".")
    extra = _extra.get()
    if extra and full in extra:
        if any(p in NEVER_ALLOWED for p in module_parts + name_parts):
            return UNSAFE, "%s is never allowed, even with --allow (it reaches %s)" % (
                full,
                next(p for p in module_parts + name_parts if p in NEVER_ALLOWED),
            )
        return ALLOWED, "allowed by --allow"
    if not module or not name or any(not p for p in module_parts + name_parts):
        return UNSAFE, "malformed global name %r" % full
    if module in _BUILTIN_MODULES and len(name_parts) == 1:
        if full in TORCH_ALLOWED:
            return ALLOWED, _WHY_TORCH
        if name in SAFE_BUILTINS or name.endswith(("Error", "Exception", "Warning")):
            return UNKNOWN, (
                "harmless builtin, but not on torch's weights-only allowlist "
                "(torch.load(weights_only=True) refuses it)"
            )
        return UNSAFE, "builtin %s can run code or touch files" % name
    for prefix in _prefixes(module):
        if prefix in DANGEROUS_MODULES:
            return UNSAFE, "module %s gives code execution, file or network access" % prefix
    for part in module_parts[1:]:
        if part in _MODULE_COMPONENTS:
            return UNSAFE, "module path component %r reaches a dangerous module" % part
    for part in name_parts:
        if part in DANGEROUS_COMPONENTS or part in DANGEROUS_MODULES:
            return UNSAFE, "dotted name component %r is resolved by attribute lookup to %s" % (
                part,
                "a dangerous attribute" if part.startswith("__") else "a dangerous module",
            )
    for prefix in _prefixes(full):
        if prefix in DANGEROUS_GLOBALS:
            return UNSAFE, "%s can run code, load other files or write files" % prefix
    if full in TORCH_ALLOWED:
        return ALLOWED, _WHY_TORCH
    if full in NUMPY_ALLOWED:
        return ALLOWED, _WHY_NUMPY
    if full == "torch.storage._load_from_bytes":
        return UNKNOWN, (
            "calls torch.load on an embedded torch.save blob (its pickle is scanned too); "
            "the weights-only loader refuses it"
        )
    if module == "torch._utils" and name.startswith("_rebuild_"):
        return UNKNOWN, "torch rebuild function not on the weights-only allowlist"
    if module == "__main__":
        return UNKNOWN, "a class from the script that saved the file; loading imports it"
    if module == "__torch__" or module.startswith("__torch__."):
        return UNKNOWN, "a TorchScript class; its code is in the archive"
    if module.split(".")[0] in ("torch", "numpy"):
        return UNKNOWN, (
            "part of %s, but not on torch's weights-only allowlist "
            "(torch.load(weights_only=True) refuses it)" % module.split(".")[0]
        )
    return UNKNOWN, (
        "not on torch's weights-only allowlist; loading imports %s and runs its code" % module
    )


@contextlib.contextmanager
def extra_allowed(names: List[str]) -> Iterator[None]:
    """Allow extra "module.name" globals (never sys/os/posix/nt) inside the block."""
    token = _extra.set(_extra.get() | frozenset(n.strip() for n in names if n.strip()))
    try:
        yield
    finally:
        _extra.reset(token)


def allowed_extra() -> FrozenSet[str]:
    """The extra names allowed in the current context."""
    return _extra.get()
