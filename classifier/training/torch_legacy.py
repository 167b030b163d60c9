"""Read a legacy (pre-1.6, non-zip) PyTorch ``state_dict`` file into numpy arrays, without torch.

The legacy format is a sequence of pickles (magic number, protocol version, system info, the
state dict whose tensors point at storages by key, the list of storage keys) followed by each
storage's raw bytes, prefixed by its element count. Only plain tensors are accepted: any other
class in the pickle is refused, so a hostile file cannot run code.
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path

import numpy as np

from classifier.data import DataError

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ByteStorage": np.uint8,
}


class _TensorRef:
    def __init__(self, storage_key, offset, shape, stride):
        self.storage_key, self.offset, self.shape, self.stride = storage_key, offset, tuple(shape), tuple(stride)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storage_types: dict):
        super().__init__(file)
        self.storage_types = storage_types

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return lambda storage, offset, shape, stride, *_: _TensorRef(storage, offset, shape, stride)
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        _, storage_type, key, _location, _numel = pid[:5]
        self.storage_types[key] = storage_type
        return key


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Return ``{name: array}`` for every tensor in a legacy PyTorch state_dict file."""
    storage_types: dict = {}
    storages: dict = {}
    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, sys info
            pickle.load(f)
        state = _RestrictedUnpickler(f, storage_types).load()
        for key in pickle.load(f):
            (count,) = struct.unpack("<q", f.read(8))
            dtype = np.dtype(_STORAGE_DTYPES[storage_types[key]])
            raw = f.read(count * dtype.itemsize)
            if len(raw) != count * dtype.itemsize:
                raise DataError(f"{path}: truncated weights file")
            storages[key] = np.frombuffer(raw, dtype=dtype)
    arrays = {}
    for name, ref in state.items():
        data = storages[ref.storage_key]
        view = np.lib.stride_tricks.as_strided(
            data[ref.offset :], shape=ref.shape, strides=[s * data.itemsize for s in ref.stride]
        )
        arrays[name] = np.array(view)
    return arrays
