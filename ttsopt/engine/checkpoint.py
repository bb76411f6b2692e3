"""Checkpoint tensors that are the file's own pages: each large tensor of a safetensors file (`read`)
or torch pickle (`read_pickle`) is a copy-on-write mapping of its bytes, handed to the module as it
is (`load_state_dict(assign=True)`).

Why not upstream's way (read the file, then `load_state_dict` copies every tensor into the ones
the module was built with): the copy writes the whole model into freshly allocated memory, and
first touching fresh memory is what a load costs on a small virtual machine; on the 2-core
machines of this project it is most of a load, and it varies several-fold from one process to the
next. Pages of a mapped file come from the page cache: no copy, nothing to allocate, and processes
that load the same model share one copy of its weights.

Why a mapping per tensor rather than safetensors' own mapped read (one mapping of the whole file,
kept while any of its tensors lives): a variant that replaces weights (int8 linears, bfloat16
copies) must give back what it replaced, and with one mapping the replaced float32 weights would
stay resident as long as one norm of the same file did. Tensors under `MAPPED_MIN_BYTES` are read
into memory of their own; a mapping each would cost more than it saves.

safetensors itself validates the file first (header, offsets, size), so a truncated or foreign
file fails with the library's own error before any byte is mapped. Writes to a mapped tensor
stay in this process (private mapping); the file is never changed. The mappings are POSIX `mmap`.
"""
from __future__ import annotations

import ctypes
import functools
import json
import mmap
import os
import struct
from pathlib import Path

import torch
from safetensors import safe_open

MAPPED_MIN_BYTES = 1 << 20
PAGE = mmap.PAGESIZE

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "C64": torch.complex64,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
          "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8, "BOOL": torch.bool}


def read(path: str | Path, min_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """PATH's tensors by name: those of MIN_BYTES (default `MAPPED_MIN_BYTES`) or more mapped from
    the file, the rest read."""
    path, min_bytes = Path(path), MAPPED_MIN_BYTES if min_bytes is None else min_bytes
    with safe_open(str(path), framework="pt"):  # the library's own checks of header, offsets and size
        pass
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
        header.pop("__metadata__", None)
        start = 8 + length
        return {name: _tensor(file, start, spec, min_bytes) for name, spec in header.items()}


def read_pickle(path: str | Path, min_bytes: int | None = None) -> dict:
    """A torch pickle's (`torch.save`'s zip format, as upstream ships S3Gen and the voice encoder of
    the multilingual model) tensors by name, as `read` gives a safetensors file's: each storage of
    MIN_BYTES or more mapped from the file on its own, the rest read. The pickle is first read
    weights-only onto the meta device, which gives every tensor's dtype, shape and strides, and each
    storage's place in the file (`_checkpoint_offset`, which torch.load sets in a meta load),
    without reading a byte of data; tensors that share a storage share its mapping."""
    path, min_bytes = Path(path), MAPPED_MIN_BYTES if min_bytes is None else min_bytes
    meta = torch.load(path, map_location="meta", weights_only=True)
    if not isinstance(meta, dict):
        raise ValueError(f"it holds a {type(meta).__name__}, not a state dict")
    spans: dict[tuple[int, int], torch.Tensor] = {}
    with path.open("rb") as file:
        def real(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            begin = getattr(storage, "_checkpoint_offset", None)
            if begin is None:
                raise ValueError("this torch's meta load gives no storage offsets (`_checkpoint_offset`)")
            key = (begin, storage.nbytes())
            if key not in spans:
                spans[key] = _span(file, begin, begin + storage.nbytes(), min_bytes)
            return spans[key].view(t.dtype).as_strided(t.shape, t.stride(), t.storage_offset())
        return {name: real(t) if isinstance(t, torch.Tensor) else t for name, t in meta.items()}


def _span(file, begin: int, end: int, min_bytes: int) -> torch.Tensor:
    """Bytes BEGIN..END of FILE as a byte tensor: mapped (`_mapped`) from MIN_BYTES on, else read."""
    if end == begin:  # nothing to map: a mapping of no bytes is refused
        return torch.empty(0, dtype=torch.uint8)
    if end - begin < min_bytes:
        file.seek(begin)
        return torch.frombuffer(bytearray(file.read(end - begin)), dtype=torch.uint8)
    return _mapped(file.fileno(), begin, end)


def _tensor(file, start: int, spec: dict, min_bytes: int) -> torch.Tensor:
    dtype, shape = DTYPES.get(spec["dtype"]), spec["shape"]
    if dtype is None:
        raise TypeError(f"it holds a tensor of dtype {spec['dtype']}, which this reader does not know")
    begin, end = (start + offset for offset in spec["data_offsets"])
    return _span(file, begin, end, min_bytes).view(dtype).reshape(shape)


def _mapped(fd: int, begin: int, end: int) -> torch.Tensor:
    """Bytes BEGIN..END of the file as a byte tensor over a private mapping of their own, read once per
    page so that they are resident when the load ends (counted there, and not paged in by the first
    synthesis). The tensor holds the mapping, and it is unmapped when the tensor is freed."""
    base = begin - begin % mmap.ALLOCATIONGRANULARITY
    pages = _map(fd, base, end - base)
    tensor = torch.frombuffer(pages, dtype=torch.uint8, count=end - begin, offset=begin - base)
    tensor[::PAGE].sum()
    return tensor


# Python's `mmap.mmap` keeps a duplicate of the file's descriptor per mapping (until 3.13's
# trackfd=False): with a mapping per tensor, a bench's two loaded models would hold a thousand open
# files, past the usual limit of 1024. A mapping made here holds none.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


def _map(fd: int, offset: int, length: int):
    """LENGTH bytes of the file from OFFSET, copy-on-write, as a buffer that unmaps them when freed."""
    address = _libc.mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE, fd, offset)
    if address in (None, _MAP_FAILED):
        error = ctypes.get_errno()
        raise OSError(error, f"cannot map {length} bytes of the checkpoint: {os.strerror(error)}")
    return _pages(length).from_address(address)


def _unmap(pages) -> None:
    _libc.munmap(ctypes.addressof(pages), ctypes.sizeof(pages))


@functools.cache
def _pages(length: int) -> type:
    """A bytes-array type of LENGTH whose instances unmap their memory when freed."""
    return type("Pages", (ctypes.c_char * length,), {"__del__": _unmap})
