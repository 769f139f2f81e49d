"""A folder of per-video feature files: ``.npy``, ``.npz``, ``.pt``/``.pth`` or ``.csv``.

File names follow a template with ``{video}`` (``{video}.npy``, ``v_{video}.npy``,
``{video}_feats.pt``, ...); the id is tried as given and with the ``v_`` prefix added or
removed. Formats, as OpenTAD's ``LoadFeats`` reads them
(``opentad/datasets/transforms/loading.py``, ``read_from_*``):

* ``npy``: one 2-D array (``allow_pickle=False``); for :meth:`FeatureStore.get`, a C-ordered
  little-endian float32 file is read by the store itself, its header matched as ``np.save``
  writes it and its rows read into the store's reused buffer (:data:`_NPY_F32_2D`); any
  other file through ``np.load``;
* ``npz``: the array named ``array_key`` (``feats`` in OpenTAD), or the only one;
* ``pt`` / ``pth``: a tensor, or the tensor at ``array_key`` of a dict, loaded with
  ``torch.load(weights_only=True)`` (tensors and plain containers only, no arbitrary pickle);
* ``csv``: a header row, then one row of numbers per feature row (BSN/BMN's ``csv_mean_100``).
"""
from __future__ import annotations

import csv
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import ConfigError, FeatureError
from .base import STEP_FRAMES, FeatureStore, PathLike, shape_triple
from .hdf5 import id_variants
from .timeaxis import TimeAxis

__all__ = ["FolderStore", "NpyFolderStore", "FOLDER_FORMATS"]

FOLDER_FORMATS = ("npy", "npz", "pt", "pth", "csv")


#: ``.npy`` files at least this large are memory-mapped; smaller ones are read. Every value is
#: read anyway (the finite check), and mapping a file of a few MiB costs a page fault per 4 KiB
#: page, more than reading it: measured on 2026-12-07, a 1.5 MiB file took 0.89 ms mapped and
#: summed, 0.62 ms read (the same ``np.load`` call a plain loop makes).
MMAP_MIN_BYTES = 256 * 2**20


def _read_npy(p: Path, key: Optional[str]) -> np.ndarray:
    with open(p, "rb") as fh:
        if os.fstat(fh.fileno()).st_size < MMAP_MIN_BYTES:
            return np.load(fh, allow_pickle=False)
    try:  # mapped: the store reads what it needs into its own result (copied when returned as is)
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except ValueError:  # what cannot be mapped (an empty array, ...) is read, or its error reported
        return np.load(p, allow_pickle=False)


def _read_npz(p: Path, key: Optional[str]) -> np.ndarray:
    with np.load(p, allow_pickle=False) as z:
        return z[_npz_member(list(z.files), key)]


def _npz_member(names: List[str], key: Optional[str]) -> str:
    """The array of a ``.npz`` holding ``names`` to read: ``key``, or the only one."""
    if key is None:
        if len(names) != 1:
            raise ValueError(f"holds arrays {names}; name the one to read (the card's 'key')")
        return names[0]
    if key not in names:
        raise ValueError(f"has no array {key!r}; it holds {names}")
    return key


def _read_pt(p: Path, key: Optional[str]) -> np.ndarray:
    import torch

    obj = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        if key is None:
            raise ValueError(f"holds a dict with keys {sorted(map(str, obj))[:8]}; name the tensor to read "
                             "(the card's 'key')")
        if key not in obj:
            raise ValueError(f"has no key {key!r}; it holds {sorted(map(str, obj))[:8]}")
        obj = obj[key]
    if not isinstance(obj, torch.Tensor):
        raise ValueError(f"holds a {type(obj).__name__}, not a tensor")
    if obj.dtype == torch.float32 and obj.device.type == "cpu":  # as stored: no conversion, no copy
        return obj.detach().numpy()
    return obj.detach().to("cpu").float().numpy() if obj.is_floating_point() else obj.numpy()


def _read_csv(p: Path, key: Optional[str]) -> np.ndarray:
    import pandas as pd

    df = pd.read_csv(p, header=0)
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c].dtype)]
    if bad:
        raise ValueError(f"column {bad[0]!r} holds text; expected a header row, then numbers only")
    return df.to_numpy(np.float32)


_READERS = {"npy": _read_npy, "npz": _read_npz, "pt": _read_pt, "pth": _read_pt, "csv": _read_csv}

#: The header ``np.save`` writes for a C-ordered 2-D little-endian float32 array (version 1.0,
#: 2.0 or 3.0), matched as bytes: the store reads such a file itself, straight into the buffer
#: it interpolates from. ``np.load`` parses every header with ``ast.literal_eval``: measured
#: on 2026-12-07, the parse was a fifth of the store's time for a 512-d video. Any other header
#: (another dtype or byte order, Fortran order, another writer's spacing) is read by numpy.
_NPY_F32_2D = re.compile(rb"\{'descr': '<f4', 'fortran_order': False, 'shape': \((\d+), (\d+)\), \} *\n\Z")
#: Bytes read first: magic, version, header length and the header of any 2-D shape.
_NPY_HEAD_BYTES = 256
#: Readable in place only where the machine's float32 is little-endian.
_NPY_FAST = np.dtype(np.float32).str == "<f4"
_GENERAL = object()  # "not the plain float32 layout: read it with numpy"


def _plain_npy_header(head: bytes) -> Optional[Tuple[int, int, int]]:
    """``(rows, dim, data offset)`` when ``head`` (the file's first bytes) starts a plain
    2-D float32 ``.npy`` (:data:`_NPY_F32_2D`) holding at least one value, else None."""
    if head[:6] != b"\x93NUMPY" or len(head) < 12:
        return None
    if head[6] == 1:
        start, hlen = 10, int.from_bytes(head[8:10], "little")
    elif head[6] in (2, 3):
        start, hlen = 12, int.from_bytes(head[8:12], "little")
    else:
        return None
    m = _NPY_F32_2D.match(head, start, start + hlen) if start + hlen <= len(head) else None
    if m is None:
        return None
    rows, dim = int(m.group(1)), int(m.group(2))
    return (rows, dim, start + hlen) if rows and dim else None


def _npy_header(fh, size: int) -> Tuple[Tuple[int, ...], np.dtype]:
    """``(shape, dtype)`` from the ``.npy`` header at ``fh`` (nothing after the header is read);
    ``size``: the bytes of the ``.npy`` data, checked to hold the array the header declares."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    else:  # 2.0 and 3.0 differ only in the header's text encoding
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    if dtype.hasobject:  # as np.load(allow_pickle=False) refuses it
        raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
    need = fh.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < need:
        raise ValueError(f"truncated: the header declares shape {tuple(shape)} of {dtype} ({need} bytes with the "
                         f"header), the file holds {size}")
    return tuple(shape), dtype


def _shape_npy(p: Path, key: Optional[str]):
    with open(p, "rb") as fh:
        return _npy_header(fh, os.fstat(fh.fileno()).st_size)


def _shape_npz(p: Path, key: Optional[str]):
    """The shape of the ``.npz`` member that :func:`_read_npz` reads, from its ``.npy`` header only."""
    try:
        zf = zipfile.ZipFile(p)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"not a .npz archive ({exc})") from None
    with zf:
        members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
        key = _npz_member(list(members), key)
        try:
            with zf.open(members[key]) as fh:
                return _npy_header(fh, zf.getinfo(members[key]).file_size)
        except zipfile.BadZipFile as exc:
            raise ValueError(f"damaged member {members[key]!r} ({exc})") from None


def _shape_csv(p: Path, key: Optional[str]):
    """``(rows, columns)`` of a ``.csv`` as :func:`_read_csv` reads it: the header's columns and the
    non-blank lines after it, without parsing a number (a cell of text is found when read)."""
    with open(p, "rb") as fh:
        header = fh.readline()
        while header and not header.strip():
            header = fh.readline()
        if not header.strip():
            raise ValueError("empty file; expected a header row, then numbers only")
        cols = next(csv.reader([header.decode("utf-8", errors="replace")]))
        rows = sum(1 for line in fh if line.strip())
    return (rows, len(cols)), np.dtype(np.float32)


#: Readers of ``(shape, dtype)`` that read no more than the shape needs; ``.pt`` has none (below).
_SHAPES = {"npy": _shape_npy, "npz": _shape_npz, "csv": _shape_csv}


class FolderStore(FeatureStore):
    """A folder of per-video files named by ``template`` (module docstring)."""

    kind = "folder"

    def __init__(self, folder: PathLike, *, template: str = "{video}.npy", array_key: Optional[str] = None,
                 stride_frames: float = STEP_FRAMES, dim: Optional[int] = None, skip_missing: bool = False,
                 cache_mb: Optional[float] = None, axis: Optional[TimeAxis] = None, videos=None,
                 card: Any = None) -> None:
        axis, legacy, stride_frames = self._fallback_axis(axis, stride_frames)
        super().__init__(dim=dim, skip_missing=skip_missing, cache_mb=cache_mb, axis=axis, videos=videos,
                         card=card, legacy_stride=legacy)
        if "{video}" not in template:
            raise ConfigError(f"The file name template must contain '{{video}}'. Got {template!r} instead.")
        fmt = template.rsplit(".", 1)[-1].lower() if "." in template else ""
        if fmt not in FOLDER_FORMATS:
            raise ConfigError(f"The file name template must end in one of "
                              f"{', '.join('.' + f for f in FOLDER_FORMATS)}. Got {template!r} instead.")
        self.folder = Path(folder)
        self._folder_str = str(self.folder)
        self.template = template
        self.format = fmt
        self.array_key = array_key
        self.stride_frames = stride_frames

    @property
    def source(self) -> str:
        return str(self.folder)

    def describe(self) -> Dict[str, Any]:
        out = {**super().describe(), "stride_frames": self.stride_frames}
        if self.template != "{video}.npy" or self.array_key is not None:
            out.update(template=self.template, array_key=self.array_key)
        return out

    def _path(self, video: str) -> Optional[Path]:
        for n in id_variants(video):
            p = self.folder / self.template.format(video=n)
            if p.is_file():
                return p
        return None

    def file_of(self, video: str) -> Optional[str]:
        p = self._path(video)
        return str(p) if p is not None else self.source

    def _has(self, video: str) -> bool:
        return self._path(video) is not None

    def _read(self, p: Path, video: str, missing_ok: bool = False) -> Optional[np.ndarray]:
        try:
            return np.asarray(_READERS[self.format](p, self.array_key))
        except (FileNotFoundError, IsADirectoryError):
            if missing_ok:  # the file is opened without a stat first: missing is the rare case
                return None
            raise FeatureError(f"no .{self.format} file here (removed while reading?)", file=p, item=video) from None
        except (ValueError, OSError, EOFError, RuntimeError, KeyError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FeatureError(f"unreadable .{self.format} file ({msg})", file=p, item=video) from None
        except Exception as exc:  # torch's restricted unpickler raises pickle.UnpicklingError
            if type(exc).__name__ != "UnpicklingError":
                raise
            msg = str(exc).strip().splitlines()[0]
            raise FeatureError(f"unreadable .{self.format} file: not loadable with weights_only=True ({msg[:200]})",
                               file=p, item=video) from None

    def _read_npy_rows(self, p: str, video: str) -> Any:
        """The rows of the ``.npy`` file ``p`` read into :meth:`_rows_buffer` (one read call, no
        array allocated when they are interpolated); None when there is no such file;
        ``_GENERAL`` when its header is not the plain float32 layout (numpy reads it then)."""
        try:
            fh = open(p, "rb", buffering=0)
        except (FileNotFoundError, IsADirectoryError):
            return None
        except OSError:  # unreadable: numpy's read names the error
            return _GENERAL
        with fh:
            try:
                head = fh.read(_NPY_HEAD_BYTES)
            except OSError:
                return _GENERAL
            plain = _plain_npy_header(head)
            if plain is None:
                return _GENERAL
            rows, dim, offset = plain
            size = os.fstat(fh.fileno()).st_size
            if size >= MMAP_MIN_BYTES:
                return _GENERAL
            nbytes = rows * dim * 4
            if size < offset + nbytes:
                raise FeatureError(f"unreadable .npy file (truncated: the header declares shape {(rows, dim)} of "
                                   f"float32 ({offset + nbytes} bytes with the header), the file holds {size})",
                                   file=p, item=video)
            arr = self._rows_buffer(video, rows, dim)
            view = memoryview(arr).cast("B")
            got = min(len(head) - offset, nbytes)
            view[:got] = head[offset:offset + got]
            while got < nbytes:
                try:
                    n = fh.readinto(view[got:])
                except OSError as exc:
                    raise FeatureError(f"unreadable .npy file ({exc})", file=p, item=video) from None
                if not n:
                    raise FeatureError(f"unreadable .npy file (truncated while read: {offset + got} of "
                                       f"{offset + nbytes} bytes)", file=p, item=video)
                got += n
        return arr

    def _load_for_steps(self, video: str) -> Optional[np.ndarray]:
        if self.format != "npy" or not _NPY_FAST:
            return self._load(video)
        return self._load(video, fast=True)

    def _load(self, video: str, fast: bool = False) -> Optional[np.ndarray]:
        for n in id_variants(video):
            name = self.template.format(video=n)
            arr = self._read_npy_rows(os.path.join(self._folder_str, name), video) if fast else _GENERAL
            if arr is _GENERAL:
                arr = self._read(self.folder / name, video, missing_ok=True)
            if arr is None:
                continue
            if arr.ndim != 2:
                raise FeatureError(f"expected a 2-D array [rows, dim], found shape {arr.shape}", file=p, item=video)
            return arr
        if not self.folder.is_dir():
            raise FeatureError("feature folder not found", file=self.folder)
        return None

    def _file_shape(self, p: Path, video: str):
        """``(shape, dtype)`` of the array of file ``p``, reading only what the format needs:
        the ``.npy`` header (of the member, for ``.npz``); for ``.csv`` the header's columns and
        the count of lines (no number parsed). A ``.pt``/``.pth`` file is loaded in full: torch
        has no way to read a tensor's shape without unpickling the file."""
        reader = _SHAPES.get(self.format)
        if reader is None:
            arr = self._read(p, video)
            return arr.shape, arr.dtype
        try:
            return reader(p, self.array_key)
        except (ValueError, OSError, EOFError, KeyError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FeatureError(f"unreadable .{self.format} file ({msg})", file=p, item=video) from None

    def shape_of(self, video: str):
        """``(rows, dim, dtype)`` of ``video``'s file, or None if missing (see :meth:`_file_shape`)."""
        p = self._path(video)
        if p is None:
            return None
        shape, dtype = self._file_shape(p, video)
        return shape_triple(shape, dtype)

    def files(self) -> List[Path]:
        """The files of the folder that match the template, sorted by name."""
        if not self.folder.is_dir():
            raise FeatureError("feature folder not found", file=self.folder)
        pre, post = self.template.split("{video}", 1)
        return sorted(p for p in self.folder.iterdir()
                      if p.is_file() and p.name.startswith(pre) and p.name.endswith(post)
                      and len(p.name) > len(pre) + len(post))

    def videos(self) -> List[str]:
        """The video ids of the folder (the ``{video}`` part of each file name)."""
        pre, post = self.template.split("{video}", 1)
        return [p.name[len(pre):len(p.name) - len(post)] for p in self.files()]

    def _infer_dim(self) -> int:
        files = self.files()
        if not files:
            raise FeatureError(f"holds no files named {self.template}; cannot infer the feature dimension",
                               file=self.folder)
        f = files[0]
        shape, _ = self._file_shape(f, f.stem)
        if len(shape) != 2:
            raise FeatureError(f"expected a 2-D array [rows, dim], found shape {tuple(shape)}", file=f, item=f.stem)
        return int(shape[1])


class NpyFolderStore(FolderStore):
    """A folder of ``<video>.npy`` files (``v_<id>.npy`` accepted too), rows ``stride_frames`` apart."""

    kind = "npy-folder"

    def __init__(self, folder: PathLike, *, stride_frames: float = STEP_FRAMES, dim: Optional[int] = None,
                 skip_missing: bool = False, cache_mb: Optional[float] = None, axis: Optional[TimeAxis] = None,
                 videos=None, card: Any = None) -> None:
        super().__init__(folder, template="{video}.npy", stride_frames=stride_frames, dim=dim,
                         skip_missing=skip_missing, cache_mb=cache_mb, axis=axis, videos=videos, card=card)
