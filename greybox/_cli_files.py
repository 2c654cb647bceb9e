"""Local files as the command line reads them: a CSV (compressed by its suffix), read no
further than a limit, refused when it is a URL, a device, a pipe, larger than the limit,
or names a column twice."""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat

#: compressed CSV files, by suffix (as pandas infers them): opened and bounded here
_COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma", ".lzma": "lzma", ".zip": "zip"}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class _Invalid(Exception):
    """A command line that cannot be run: its message goes to stderr, exit code 2."""


class _TooLarge(Exception):
    pass


class _Bounded(io.RawIOBase):
    """A stream read no further than ``limit`` bytes: one byte more raises _TooLarge, so
    an endless or inflating input stops there, never read (or decompressed) whole."""

    def __init__(self, stream, limit: int):
        super().__init__()
        self.stream, self.limit, self.count = stream, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(min(len(buffer), self.limit + 1 - self.count))
        self.count += len(data)
        if self.count > self.limit:
            raise _TooLarge
        buffer[:len(data)] = data
        return len(data)


def _read_csv(path: str, *, what: str, limit: int, holding: str, **options):
    """``pd.read_csv`` of a local regular file (compressed by its suffix as pandas infers
    it: .gz, .bz2, .xz, .zip), read no further than ``limit`` bytes of CSV text; a URL, a
    device, a pipe, a larger file or a header naming a column twice (which pandas would
    rename ``NAME.1``) is refused naming ``what`` (the argument), and the limit (for
    ``holding``, what the file holds)."""
    import csv
    import lzma
    import zipfile
    import zlib

    import pandas as pd

    if _URL.match(path):
        raise _Invalid(f"{what}: {path} is a URL; greybox reads local files only "
                       "(download it first)")
    kind = _COMPRESSED.get(os.path.splitext(path)[1].lower())
    try:
        with _opened(path, kind, what) as stream:
            text = io.TextIOWrapper(io.BufferedReader(_Bounded(stream, limit)),
                                    encoding="utf-8-sig", newline="")
            header = next(csv.reader(text), [])
        seen: dict[str, int] = {}
        for i, name in enumerate(header):
            if name in seen:
                raise _Invalid(f"{what}: {path} names the column {name!r} twice in its header "
                               f"(columns {seen[name] + 1} and {i + 1}); name each column once")
            seen[name] = i
        with _opened(path, kind, what) as stream:
            return pd.read_csv(io.BufferedReader(_Bounded(stream, limit)), **options)
    except _TooLarge:
        once = " once decompressed" if kind else ""
        raise _Invalid(f"{what}: {path} is larger than {limit:,} bytes{once}, the command "
                       f"line's limit for {holding} (the Python API takes a DataFrame of any "
                       "size)") from None
    except (OSError, ValueError, EOFError, csv.Error, zlib.error, lzma.LZMAError,
            zipfile.BadZipFile) as err:
        raise _Invalid(f"{what}: cannot read {path}: {getattr(err, 'strerror', None) or err}") \
            from None


@contextlib.contextmanager
def _opened(path: str, kind: str | None, what: str):
    """The bytes of the regular file ``path``, decompressed as ``kind`` says (a stream)."""
    import bz2
    import gzip
    import lzma
    import zipfile

    with open(path, "rb") as raw:
        if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
            raise _Invalid(f"{what}: {path} is not a regular file (a device, a pipe or a "
                           "folder); greybox reads local files only")
        if kind == "zip":
            with zipfile.ZipFile(raw) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise _Invalid(f"{what}: {path} holds {len(members)} files; a zipped CSV "
                                   "holds one")
                with archive.open(members[0]) as inner:
                    yield inner
        elif kind is None:
            yield raw
        else:
            opener = {"gzip": gzip.GzipFile, "bz2": bz2.BZ2File, "lzma": lzma.LZMAFile}[kind]
            with opener(fileobj=raw) if kind == "gzip" else opener(raw) as inner:
                yield inner
