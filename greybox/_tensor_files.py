"""A model's tensor inputs read from files: ``.npz`` (numpy) and ``.pt`` (torch) archives
of name -> array, as the command line takes them (``greybox explain MODEL DATA.csv
--tensors images.npz``).

Files are data, never code: ``.npz`` files are read by ``numpy.load`` with
``allow_pickle=False`` (an array of Python objects is refused), ``.pt`` files by
``torch.load`` with ``weights_only=True`` and must hold a dict of name -> tensor. Each
array named like a tensor input of the model is checked against the input's declaration
(``input img: tensor[8, 8]``: one ``8 x 8`` array per row) and against what the network
reading it computes on: floating-point arrays of another precision become the network's
dtype, integers and booleans become floats where the network computes on floats (their
values kept, not rescaled), and integers stay integers for a network that starts with an
``nn.Embedding`` (token ids). Each conversion is reported as a note. Errors are
:class:`~greybox.errors.DataError` naming the file, the array, what the model expects and
what the file holds.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
import zipfile
import zlib

import numpy as np
import torch
from torch import nn

from greybox.errors import DataError, listed
from greybox.rules import ast as A

from ._names import _type

__all__ = ["MAX_TENSOR_BYTES", "SUFFIXES", "read_tensor_file", "tensor_inputs"]

#: Largest tensor file read, in bytes (of its arrays, for an ``.npz`` once decompressed).
MAX_TENSOR_BYTES = 8_000_000_000
#: The suffixes of the files read, and what writes each.
SUFFIXES = {".npz": "numpy.savez", ".pt": "torch.save", ".pth": "torch.save"}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HOW = ("a tensor file is an .npz written by numpy.savez(path, img=array, ...) or a .pt "
        "written by torch.save({'img': tensor, ...}, path)")


def read_tensor_file(path: str) -> dict:
    """The arrays of the ``.npz`` or ``.pt`` file at ``path``, by name, as they are stored
    (numpy arrays or CPU tensors).

    Raises
    ------
    DataError
        The file cannot be read, is no archive of name -> array, or holds anything else
        (Python objects: a pickled array in an ``.npz``, a list or a class in a ``.pt``).
        The message names the file and, where one is to blame, the entry.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from greybox._tensor_files import read_tensor_file
    >>> path = os.path.join(tempfile.mkdtemp(), "images.npz")
    >>> np.savez(path, img=np.zeros((3, 8, 8), dtype=np.float32))
    >>> {k: v.shape for k, v in read_tensor_file(path).items()}
    {'img': (3, 8, 8)}
    """
    path = os.fspath(path)
    if _URL.match(path):
        raise DataError(f"{path} is a URL; greybox reads local files only (download it first)")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: not a tensor file by its name (expected "
                        f"{', '.join(SUFFIXES)}); {_HOW}")
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise DataError(f"{path} is not a regular file (a device, a pipe or a folder); "
                                "greybox reads local files only")
            if st.st_size > MAX_TENSOR_BYTES:
                raise DataError(f"{path} is larger than {MAX_TENSOR_BYTES:,} bytes, the "
                                "command line's limit for a tensor file")
            return _read_npz(path, f) if suffix == ".npz" else _read_pt(path, f)
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None


def _read_npz(path: str, f) -> dict:
    try:
        loaded = np.load(f, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err):
            raise DataError(f"{path}: not an .npz archive: it holds pickled Python objects, "
                            f"which greybox never loads; {_HOW}") from None
        raise DataError(f"{path}: not an .npz archive ({err}); {_HOW}") from None
    except (EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{path}: not a readable .npz archive ({err}); {_HOW}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single .npy array, not an .npz archive of named arrays; "
                        f"{_HOW}")
    with loaded:
        size = sum(info.file_size for info in loaded.zip.infolist())
        if size > MAX_TENSOR_BYTES:
            raise DataError(f"{path} holds {size:,} bytes once decompressed, more than "
                            f"{MAX_TENSOR_BYTES:,}, the command line's limit for a tensor file")
        out = {}
        for key in loaded.files:
            try:
                out[key] = loaded[key]
            except ValueError as err:
                if "allow_pickle" in str(err):
                    raise DataError(f"{path}: {key!r} is an array of Python objects (stored "
                                    "pickled), which greybox never loads: save numbers "
                                    "(e.g. array.astype(numpy.float32))") from None
                raise DataError(f"{path}: cannot read {key!r}: {err}") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                raise DataError(f"{path}: cannot read {key!r}: {err}") from None
    return out


def _read_pt(path: str, f) -> dict:
    try:
        loaded = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: holds objects other than tensors, which greybox never "
                        f"loads (torch.load with weights_only=True refused it: {first}); "
                        f"{_HOW}") from None
    except Exception as err:   # not a torch file: zip, pickle and format errors alike
        raise DataError(f"{path}: not a readable torch file ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}); "
                        f"{_HOW}") from None
    if isinstance(loaded, torch.Tensor):
        raise DataError(f"{path}: holds one tensor, not a dict of name -> tensor; save "
                        "{'img': tensor} so that the model's input is named")
    if not isinstance(loaded, dict):
        raise DataError(f"{path}: holds {_a(loaded)}, not a dict of name -> tensor; {_HOW}")
    for key, value in loaded.items():
        if not isinstance(key, str):
            raise DataError(f"{path}: the key {key!r} is {_a(key)}; the names of a tensor "
                            "file's entries are strings (the model's input names)")
        if not isinstance(value, torch.Tensor):
            raise DataError(f"{path}: {key!r} is {_a(value)}, not a tensor; a tensor file "
                            "holds tensors only")
        if value.layout != torch.strided or value.is_quantized:
            raise DataError(f"{path}: {key!r} is a {value.layout} "
                            f"{'quantized ' if value.is_quantized else ''}tensor; give a "
                            "dense one (tensor.to_dense())")
    return {k: v.detach() for k, v in loaded.items()}


def _a(value) -> str:
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


# ------------------------------------------------------------------ checks against a model
def tensor_inputs(model, files: dict[str, dict], *, rows: int | None = None,
                  rows_from: str = "the CSV", keep=()) -> tuple[dict, dict, list[str]]:
    """The tensor inputs of ``model`` from ``files`` (path -> the arrays
    :func:`read_tensor_file` read), checked and converted.

    Parameters
    ----------
    model : GreyBox
    files : dict
        Path -> its arrays by name, in the order given.
    rows : int, optional
        The number of rows the arrays must have (the CSV's); without it, the arrays
        must agree with each other.
    rows_from : str
        What ``rows`` counts, for messages.
    keep : iterable of str
        Other names to return as they are (e.g. a column of correct answers).

    Returns
    -------
    inputs : dict
        Input (or whole input family) name -> tensor, as the networks reading it take it.
    kept : dict
        Name in ``keep`` -> numpy array.
    notes : list of str
        One line per conversion made (``float64 converted to float32 ...``).

    Raises
    ------
    DataError
        An entry given twice, a table input in a tensor file, a tensor input in no file,
        a shape or dtype the model cannot take, or a number of rows that differs; the
        message names the file, the entry, what is expected and what was found.

    Examples
    --------
    >>> import numpy as np, torch, greybox as gb
    >>> from greybox._tensor_files import tensor_inputs
    >>> model = gb.GreyBox("input img: tensor[4]  neural d: bool = net(img)  output y: bool"
    ...                    "  rule r: d -> y", {"net": torch.nn.Linear(4, 1)})
    >>> inputs, _, notes = tensor_inputs(model, {"x.npz": {"img": np.ones((2, 4))}})
    >>> inputs["img"].dtype, notes
    (torch.float32, ["x.npz: 'img' float64 converted to float32, the dtype of network 'net'"])
    """
    wanted = _wanted(model.kb)
    found = _found(model.kb, files, wanted, set(keep))
    _refuse_absent(model.kb, files, wanted, found)
    inputs, kept, notes, counts = {}, {}, [], {}
    for key, (path, value) in found.items():
        if key in wanted:
            inputs[key] = _checked(model, key, wanted[key], path, value, notes)
        else:
            kept[key] = _plain(path, key, value)
        shape = tuple(inputs[key].shape) if key in inputs else kept[key].shape
        if not shape:
            raise DataError(f"{path}: {key!r} is a single value, not one per row")
        counts[key] = (path, shape[0])
    _same_rows(counts, rows, rows_from)
    return inputs, kept, notes


def _found(kb, files: dict[str, dict], wanted: dict, keep: set) -> dict[str, tuple[str, object]]:
    """Name -> (path, array) of the arrays of ``files`` that are wanted (a tensor input or
    family) or kept; an entry given twice, or a table input, is refused."""
    found: dict[str, tuple[str, object]] = {}
    for path, arrays in files.items():
        for key, value in arrays.items():
            if key in found:
                raise DataError(f"{key!r} is in both {found[key][0]} and {path}; give each "
                                "input once")
            if key in wanted or key in keep:
                found[key] = (path, value)
            elif key in kb.variables and kb.variables[key].role == "input":
                raise DataError(f"{path}: {key!r} is a table input "
                                f"({_type(kb.variables[key].type)}), not a tensor input: give "
                                "it as a column of the CSV")
    return found


def _refuse_absent(kb, files: dict[str, dict], wanted: dict, found: dict) -> None:
    """A DataError naming the first tensor input that no file gives (itself or its whole
    family), and the others missing."""
    given_members = {m for key in found if key in wanted for m in wanted[key][0]}
    absent = [n for n, (members, _, _) in wanted.items()
              if n in kb.variables and n not in given_members]
    if not absent:
        return
    name = absent[0]
    held = listed(sorted({k for a in files.values() for k in a}))
    where = f" (the tensor files hold: {held})" if held else \
        " (no tensor file was given)" if not files else " (the tensor files are empty)"
    family = next((f for f, (members, _, _) in wanted.items()
                   if f not in kb.variables and name in members), None)
    whole = f" (or the whole family {family!r}, one axis per parameter)" if family else ""
    raise DataError(f"the model's tensor input {name!r} "
                    f"({_type(kb.variables[name].type)}) is in no tensor file{where}: "
                    f"give it with --tensors FILE.npz (or FILE.pt) holding an array named "
                    f"{name!r}{whole}"
                    + (f"; tensor inputs missing: {listed(map(repr, absent))}"
                       if len(absent) > 1 else ""))


def _same_rows(counts: dict[str, tuple[str, int]], rows: int | None, rows_from: str) -> None:
    """A DataError unless every array (name -> (path, its rows)) has ``rows`` rows (when
    given) and as many as the first."""
    first = next(iter(counts.items()), None)
    for key, (path, n) in counts.items():
        if rows is not None and n != rows:
            raise DataError(f"{path}: {key!r} has {n:,} rows; {rows_from} has {rows:,}; give "
                            "one row per example in every file, in the same order")
        if n != first[1][1]:
            raise DataError(f"{path}: {key!r} has {n:,} rows; {first[1][0]}: {first[0]!r} has "
                            f"{first[1][1]:,}; give one row per example in every file, in the "
                            "same order")


def _wanted(kb) -> dict[str, tuple[tuple[str, ...], tuple | None, str]]:
    """Name -> (the input variables it gives, the shape of one row or None, how it is
    declared) for every tensor input and every whole family of tensor inputs."""
    out = {}
    for name in kb.inputs:
        t = kb.variables[name].type
        if isinstance(t, A.TensorType):
            out[name] = ((name,), t.shape, f"declared {_type(t)}")
    for name, fam in getattr(kb, "families", {}).items():
        if fam.kind != "input" or name in kb.variables or not fam.members:
            continue
        first = kb.variables.get(next(iter(fam.members.values())))
        if first is None or not isinstance(first.type, A.TensorType):
            continue
        sizes = tuple(len({index[k] for index in fam.members}) for k in range(len(fam.sets)))
        shape = None if first.type.shape is None else sizes + tuple(first.type.shape)
        out[name] = (tuple(fam.members.values()), shape,
                     f"a family over {', '.join(fam.sets)} of {_type(first.type)}")
    return out


def _plain(path: str, key: str, value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def _reader(model, members) -> tuple[str | None, nn.Module | None]:
    """The first network reading one of ``members`` (None when none does)."""
    members = set(members)
    for var in model.kb.variables.values():
        if var.role == "neural" and members.intersection(var.args):
            return var.network, model.network(var.network)
    return None, None


def _takes_ids(module: nn.Module) -> bool:
    """Whether ``module`` starts with an embedding (its first layer with parameters)."""
    for m in module.modules():
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
            return True
        if next(m.parameters(recurse=False), None) is not None:
            return False
    return False


def _checked(model, key: str, want, path: str, value, notes: list[str]) -> torch.Tensor:
    """``value`` as the network reading input ``key`` takes it, its shape checked."""
    members, shape, declared = want
    network, module = _reader(model, members)
    ids = module is not None and _takes_ids(module)
    dtype = None if module is None or ids else next(
        (p.dtype for p in module.parameters() if p.is_floating_point()), None)
    if ids:
        expected = f"integer token ids (network {network!r} starts with an nn.Embedding)"
    elif dtype is not None:
        expected = (f"{str(dtype).removeprefix('torch.')} numbers (network {network!r} "
                    "computes in it)")
    else:
        expected = "real numbers, integers or booleans"
    x, was = _as_tensor(path, key, value, expected)
    if x.dim() == 0:
        raise DataError(f"{path}: {key!r} is a single value, not one per row")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        row = list(x.shape[1:])
        hint = (f" (the values are there: reshape it, array.reshape(len(array), "
                f"{', '.join(map(str, shape))}))"
                if int(np.prod(row)) == int(np.prod(shape)) else "")
        raise DataError(f"{path}: {key!r} has shape {list(x.shape)}; input {key!r} is "
                        f"{declared}, so expected shape [rows, {', '.join(map(str, shape))}] "
                        f"(one {' x '.join(map(str, shape)) or 'value'} per row), found "
                        f"{' x '.join(map(str, row)) or 'one value'} per row{hint}")
    if ids:
        if x.is_floating_point():
            raise DataError(f"{path}: {key!r} holds {was} values; input {key!r} is read by "
                            f"network {network!r}, which starts with an nn.Embedding and takes "
                            f"{expected.split(' (')[0]}: save integers (e.g. int64)")
        if x.dtype != torch.int64:
            x = x.to(torch.int64)
        return x
    if dtype is None:
        return x
    if x.dtype != dtype:
        x = x.to(dtype)
        into = str(dtype).removeprefix("torch.")
        kept = "" if was.startswith(("float", "bfloat")) else \
            " (values kept as they are, not rescaled)"
        notes.append(f"{path}: {key!r} {was} converted to {into}, the dtype of network "
                     f"{network!r}{kept}")
    return x


def _as_tensor(path: str, key: str, value, expected: str) -> tuple[torch.Tensor, str]:
    """``value`` as a tensor, and the name of the dtype it was stored in."""
    if isinstance(value, torch.Tensor):
        x, was = value, str(value.dtype).removeprefix("torch.")
    else:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            what = {"c": "complex numbers", "U": "text", "S": "bytes", "O": "Python objects",
                    "M": "dates", "m": "time spans", "V": "records"}.get(arr.dtype.kind,
                                                                         "values")
            raise DataError(f"{path}: {key!r} holds {what} ({arr.dtype}); input {key!r} "
                            f"takes {expected}")
        was = str(arr.dtype)
        if arr.ndim == 0:
            raise DataError(f"{path}: {key!r} is a single value, not one per row")
        if not arr.dtype.isnative:   # stored big-endian: torch takes the machine's order
            arr = arr.astype(arr.dtype.newbyteorder("="))
        try:
            x = torch.from_numpy(np.ascontiguousarray(arr))
        except TypeError as err:   # a dtype torch lacks
            raise DataError(f"{path}: {key!r} holds {arr.dtype} values, which torch does not "
                            f"take ({err}); input {key!r} takes {expected}") from None
    if x.is_complex():
        raise DataError(f"{path}: {key!r} holds complex numbers ({x.dtype}); input {key!r} "
                        f"takes {expected}")
    if x.dtype in (torch.uint16, torch.uint32, torch.uint64):
        x = x.to(torch.int64)   # few torch operations take them
    return x, was
