"""A prepared Workload that needs no shared filesystem: its pickle, with the bytes of every file it loads,
unpacked by a worker on another machine into its own cache (keyed by the files' sha256)."""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpubench.paths import cache_dir

if TYPE_CHECKING:
    from xpubench.models import Workload


@dataclass(frozen=True)
class Root:
    """A file or a folder of this machine that the workload's paths point into, with the files shipped."""

    is_dir: bool
    name: str
    files: tuple[tuple[str, bytes], ...]  # (path relative to the folder, or "" for the file itself; bytes)

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for rel, data in self.files:
            h.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()


@dataclass(frozen=True)
class Parcel:
    """The workload pickled with every path under a shipped root written as (root, relative path)."""

    workload: bytes
    roots: tuple[Root, ...]

    @property
    def size(self) -> int:
        return len(self.workload) + sum(len(data) for root in self.roots for _, data in root.files)


def pack(workload: Workload) -> Parcel:
    """The workload with its sources and every artifact made of them so far (convert first: a worker that
    lacks one converts it into its own cache)."""
    artifacts = workload.artifacts
    # Most specific first: a zoo model's source lies inside its artifacts folder.
    places = [(source, source.is_dir()) for source in artifacts.sources.values()] + [(artifacts.folder, True)]
    roots = tuple(Root(is_dir, path.name, tuple(sorted(_read(path).items()))) for path, is_dir in places)
    return Parcel(_dump(workload, [path for path, _ in places]), roots)


def unpack(parcel: Parcel) -> Workload:
    """The workload, its files written (once) under this machine's cache and its paths pointing there."""
    return _Loader(parcel, [_place(root) for root in parcel.roots]).load()


def _read(path: Path) -> dict[str, bytes]:
    """A file's bytes, or a folder's files (not the hidden ones: conversions under way)."""
    if not path.is_dir():
        return {"": path.read_bytes()} if path.is_file() else {}
    return {
        str(f.relative_to(path)): f.read_bytes()
        for f in sorted(path.rglob("*"))
        if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts)
    }


def _dump(workload: Workload, roots: list[Path]) -> bytes:
    import io

    buffer = io.BytesIO()
    _Dumper(buffer, roots).dump(workload)
    return buffer.getvalue()


class _Dumper(pickle.Pickler):
    def __init__(self, file: Any, roots: list[Path]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.roots = roots

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Path) and obj.is_absolute():
            for index, root in enumerate(self.roots):
                if obj == root or root in obj.parents:
                    return ("path", index, str(obj.relative_to(root)))
        return None


class _Loader(pickle.Unpickler):
    def __init__(self, parcel: Parcel, places: list[Path]) -> None:
        import io

        super().__init__(io.BytesIO(parcel.workload))
        self.places = places

    def persistent_load(self, pid: Any) -> Any:
        _, index, rel = pid
        return self.places[index] / rel


def _place(root: Root) -> Path:
    """Where `root` lies in this machine's cache, its files written there unless they are already."""
    folder = cache_dir() / "received" / root.digest[:32]
    target = folder / root.name
    for rel, data in root.files:
        path = target / rel if rel else target
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed: a task beside this one never reads half a file.
        fd, staged = tempfile.mkstemp(prefix=".part-", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(staged, path)
    if root.is_dir:
        target.mkdir(parents=True, exist_ok=True)
    return target
