"""Framework-free structural checks of a user's model file, run in the sweep's own process before any worker
starts: a truncated or garbled file is a one-line UsageError in milliseconds instead of a worker's failure.

They read the container only (ONNX's protobuf wire format, a TFLite flatbuffer's root table, a zip archive's
members and checksums); whether the graph inside makes sense is still for the runtime's own checks (in the
worker). Nothing here imports an ML framework: the parent process of a sweep never does.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from xpubench.errors import UsageError

# The ONNX messages walked, by field number: a nested message's name, or "text" for a string, which protobuf
# requires to be UTF-8 (onnx.checker does not check it, and ONNX Runtime then fails to decode a name or a
# symbolic dimension). Attributes, functions and training info are left to the runtime.
_ONNX = {
    "model": {2: "text", 3: "text", 4: "text", 6: "text", 7: "graph"},
    "graph": {1: "node", 2: "text", 5: "tensor", 10: "text", 11: "value", 12: "value", 13: "value"},
    "node": {1: "text", 2: "text", 3: "text", 4: "text", 6: "text", 7: "text"},
    "tensor": {8: "text", 12: "text"},
    "value": {1: "text", 2: "type", 3: "text"},
    "type": {1: "tensor_type"},
    "tensor_type": {2: "shape"},
    "shape": {1: "dim"},
    "dim": {2: "text", 3: "text"},
}
_ONNX_GRAPH = 7
_TFLITE_SUBGRAPHS = 2  # Model.subgraphs, the third field of the root table


class _Malformed(ValueError):
    pass


def check_user_model(name: str, cwd: Path | str | None = None) -> None:
    """`check_model_file` for a model named by its path, relative to `cwd` (a zoo name, a folder or a missing
    file: nothing to do here)."""
    from xpubench.models import USER_FORMATS

    path = Path(cwd or ".") / name
    fmt = USER_FORMATS.get(path.suffix.lower())
    if fmt is not None and path.is_file():
        check_model_file(path, fmt)


def check_model_file(path: Path, fmt: str) -> None:
    """Raise UsageError naming `path` when its container is broken; `fmt` as models.USER_FORMATS names it."""
    data = path.read_bytes()
    try:
        if fmt == "onnx":
            _check_onnx(data)
        elif fmt == "tflite":
            _check_tflite(data)
        elif fmt in ("keras", "pt2", "torchscript"):
            _check_zip(path, fmt)
    except _Malformed as exc:
        raise UsageError(f"{path} is not {_NAMES[fmt]} ({exc})") from None


_NAMES = {"onnx": "a valid ONNX model", "tflite": "a TFLite model", "keras": "a keras archive",
          "pt2": "a pt2 archive", "torchscript": "a TorchScript archive"}


def _fields(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, int, int, int]]:
    """The protobuf fields of data[start:end] as (number, wire type, value start, value end); _Malformed
    where the bytes are not the wire format."""
    end = len(data) if end is None else end
    found = []
    at = start
    while at < end:
        key, at = _varint(data, at, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed(f"field number 0 at byte {at}")
        if wire == 0:
            _, value_end = _varint(data, at, end)
        elif wire == 1:
            value_end = at + 8
        elif wire == 2:
            length, at = _varint(data, at, end)
            value_end = at + length
        elif wire == 5:
            value_end = at + 4
        else:
            raise _Malformed(f"wire type {wire} at byte {at}")
        if value_end > end:
            raise _Malformed(f"field {number} runs past its end (byte {value_end} of {end}): truncated")
        found.append((number, wire, at, value_end))
        at = value_end
    return found


def _varint(data: bytes, at: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= end or shift > 63:
            raise _Malformed(f"a broken varint at byte {at}")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        shift += 7
        if not byte & 0x80:
            return value, at


def _check_onnx(data: bytes) -> None:
    if not any(number == _ONNX_GRAPH for number, *_ in _fields(data)):
        raise _Malformed("no graph")
    _walk(data, "model", 0, len(data))


def _walk(data: bytes, message: str, start: int, end: int) -> None:
    schema = _ONNX[message]
    for number, wire, s, e in _fields(data, start, end):
        kind = schema.get(number)
        if kind is None:
            continue
        if wire != 2:
            raise _Malformed(f"field {number} of a {message} is not {'text' if kind == 'text' else 'a message'}")
        if kind == "text":
            try:
                data[s:e].decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed(f"a {message}'s text at byte {s} is not UTF-8") from None
        else:
            _walk(data, kind, s, e)


def _check_tflite(data: bytes) -> None:
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise _Malformed("no TFL3 identifier")
    root = _u32(data, 0)
    table = _table(data, root)
    subgraphs = _field_offset(data, root, table, _TFLITE_SUBGRAPHS)
    if subgraphs is None:
        raise _Malformed("no subgraphs")
    vector = subgraphs + _u32(data, subgraphs)
    count = _u32(data, vector)
    if count == 0 or vector + 4 + 4 * count > len(data):
        raise _Malformed(f"{count} subgraphs at byte {vector}")
    for i in range(count):
        element = vector + 4 + 4 * i
        _table(data, element + _u32(data, element))


def _table(data: bytes, at: int) -> tuple[int, int]:
    """A flatbuffer table at `at`: (its vtable's position, the vtable's size), checked to lie in the file."""
    vtable = at - struct.unpack_from("<i", data, _inside(data, at, 4))[0]
    size = _u16(data, vtable)
    if size < 4 or size % 2 or vtable + size > len(data):
        raise _Malformed(f"a table at byte {at} with a broken vtable")
    if at + _u16(data, vtable + 2) > len(data):
        raise _Malformed(f"a table at byte {at} runs past the end: truncated")
    return vtable, size


def _field_offset(data: bytes, at: int, table: tuple[int, int], index: int) -> int | None:
    vtable, size = table
    if 4 + 2 * index + 2 > size:
        return None
    offset = _u16(data, vtable + 4 + 2 * index)
    return at + offset if offset else None


def _inside(data: bytes, at: int, size: int) -> int:
    if at < 0 or at + size > len(data):
        raise _Malformed(f"an offset to byte {at} outside the file ({len(data)} bytes): truncated or garbled")
    return at


def _u32(data: bytes, at: int) -> int:
    return struct.unpack_from("<I", data, _inside(data, at, 4))[0]


def _u16(data: bytes, at: int) -> int:
    return struct.unpack_from("<H", data, _inside(data, at, 2))[0]


_SAVE = {"keras": "model.save('model.keras')", "pt2": "torch.export.save(program, 'model.pt2')"}


def _check_zip(path: Path, fmt: str) -> None:
    if not zipfile.is_zipfile(path):
        if fmt == "torchscript":
            return  # a torch.save pickle: the worker's check says how to save TorchScript instead
        raise UsageError(f"{path} is not a {fmt} archive: save it with {_SAVE[fmt]}")
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()  # reads every member: a flipped byte fails its CRC
            names = archive.namelist()
            if broken is not None:
                raise _Malformed(f"member {broken} is corrupt")
            if fmt == "keras":
                for member in ("config.json", "model.weights.h5"):
                    if member not in names:
                        raise _Malformed(f"no {member}")
                config = json.loads(archive.read("config.json"))
                if not isinstance(config, dict) or "class_name" not in config:
                    raise _Malformed("config.json holds no model")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        if isinstance(exc, _Malformed):
            raise
        raise _Malformed(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")) \
            from None
