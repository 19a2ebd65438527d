"""The user's own data for `--data`: inputs x (or one array per input) and optional targets y from .npz, HDF5, ROOT."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpubench.errors import UsageError

NPZ = (".npz",)
HDF5 = (".h5", ".hdf5", ".hdf")
ROOT = (".root",)


@dataclass(frozen=True)
class DataFile:
    """A data file and the names of its input and target arrays.

    In .npz files the names are array names; in HDF5 they are dataset paths (`group/images`); in ROOT
    files they are `TREE/BRANCH[,BRANCH...]` of a TTree or RNTuple (the tree may be left out when the file holds one),
    several branches stacked as features. `y=None` reads no targets; the default `y` is optional.
    """

    path: Path
    x: str = "x"
    y: str | None = "y"
    y_given: bool = False  # the user named y: its absence is then an error, not "unlabelled"

    @property
    def name(self) -> str:
        return self.path.name


def load_arrays(source: DataFile | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) with x float32 when floating and y int64 class labels or float32 targets (None when the
    file has none). Bad files and names raise UsageError."""
    source = source if isinstance(source, DataFile) else DataFile(Path(source))
    path = source.path
    if not path.is_file():
        raise UsageError(f"no such data file: {path}")
    suffix = path.suffix.lower()
    if suffix in NPZ:
        reader = _NpzReader(path)
    elif suffix in HDF5:
        reader = _Hdf5Reader(path)
    elif suffix in ROOT:
        reader = _RootReader(path)
    else:
        raise UsageError(f"{path}: give a .npz, HDF5 (.h5) or ROOT (.root) file with inputs x and labels y")
    x = reader.read(source.x, required=True)
    y = reader.read(source.y, required=source.y_given) if source.y else None
    return _checked(path, source, x, y)


def load_named_arrays(
    source: DataFile, input_names: Callable[[], list[str]]
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """An .npz holding one array per model input, named as the inputs (each in that input's own layout, its
    samples along its batch axis), and optional targets y: ({name: array}, y). ({}, None) when the file is
    not of that form (no .npz, or its inputs are the one array x). `input_names` is asked only when needed."""
    if source.path.suffix.lower() not in NPZ or not source.path.is_file():
        return {}, None
    reader = _NpzReader(source.path)
    others = [name for name in reader.arrays if name not in (source.x, source.y)]
    if not others:
        return {}, None
    names = input_names()
    matched = [name for name in names if name in reader.arrays and name != source.y]
    if not matched or (source.x in reader.arrays and len(matched) < 2):
        return {}, None
    arrays = {}
    for name in matched:
        array = reader.arrays[name]
        if array.dtype == object:
            raise UsageError(f"{source.path}: {name} is not a numeric array")
        arrays[name] = array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array
    y = reader.read(source.y, required=source.y_given) if source.y else None
    if y is not None:
        _, y = _checked(source.path, source, np.zeros((len(y), 1), np.float32), y)
    return arrays, y


def _checked(path: Path, source: DataFile, x: np.ndarray, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    if x.dtype == object or x.ndim == 0:
        raise UsageError(f"{path}: {source.x} is not a numeric array with one sample per row")
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    if y is not None:
        y = y.reshape(len(y), -1) if y.ndim > 1 else y
        if y.ndim > 1 and y.shape[1] == 1:
            y = y[:, 0]
        if len(y) != len(x):
            raise UsageError(f"{path}: {source.x} has {len(x)} samples but {source.y} has {len(y)}")
        if np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
            y = y.astype(np.int64)
        elif np.issubdtype(y.dtype, np.floating):
            y = y.astype(np.float32)
        else:
            raise UsageError(f"{path}: {source.y} must hold integer class labels or numeric targets, got {y.dtype}")
    return x, y


class _NpzReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with np.load(path, allow_pickle=False) as npz:
                self.arrays = {name: npz[name] for name in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise UsageError(f"{path} is not a readable .npz file ({exc})") from None

    def read(self, name: str, required: bool) -> np.ndarray | None:
        if name in self.arrays:
            return self.arrays[name]
        if required:
            have = ", ".join(self.arrays) or "none"
            raise UsageError(f"{self.path} has no array named {name} (it has {have}): save with x=..., y=...")
        return None


class _Hdf5Reader:
    def __init__(self, path: Path) -> None:
        import h5py

        self.path = path
        try:
            self.file = h5py.File(path, "r")
        except OSError as exc:
            raise UsageError(f"{path} is not a readable HDF5 file ({exc})") from None

    def datasets(self) -> list[str]:
        import h5py

        found: list[str] = []
        self.file.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
        return found

    def read(self, name: str, required: bool) -> np.ndarray | None:
        import h5py

        node = self.file.get(name)
        if isinstance(node, h5py.Dataset):
            return np.asarray(node[()])
        if required:
            have = ", ".join(self.datasets()) or "none"
            raise UsageError(f"{self.path} has no dataset {name} (it has {have}): name them with --x and --y")
        return None


class _RootReader:
    def __init__(self, path: Path) -> None:
        import uproot

        self.path = path
        try:
            self.file = uproot.open(path)
        except Exception as exc:  # uproot raises several types for a file that is not ROOT
            raise UsageError(f"{path} is not a readable ROOT file ({type(exc).__name__}: {exc})") from None
        # TTrees, and RNTuples (what newer ROOT and uproot write by default)
        kinds = ("TTree", "ROOT::RNTuple")
        self.trees = sorted({key.split(";")[0] for key, cls in self.file.classnames().items() if cls in kinds})

    def read(self, spec: str, required: bool) -> np.ndarray | None:
        tree_name, _, branches = spec.rpartition("/")
        if not tree_name:
            if len(self.trees) != 1:
                raise UsageError(
                    f"{self.path} holds trees {', '.join(self.trees) or 'none'}: name one, e.g. --x TREE/{spec}"
                )
            tree_name = self.trees[0]
        if tree_name not in self.trees:
            raise UsageError(f"{self.path} has no TTree {tree_name} (it has {', '.join(self.trees) or 'none'})")
        tree = self.file[tree_name]
        names = [b.strip() for b in branches.split(",") if b.strip()]
        missing = [b for b in names if b not in tree.keys()]
        if missing:
            if not required and len(missing) == len(names):
                return None
            have = ", ".join(tree.keys())
            raise UsageError(f"{self.path}: tree {tree_name} has no branch {missing[0]} (it has {have})")
        columns = []
        for branch in names:
            try:
                values = np.asarray(tree.arrays([branch], library="np")[branch])
            except Exception as exc:  # jagged branches come back as object arrays, or fail to read
                raise UsageError(f"{self.path}: branch {branch} cannot be read as a fixed-size array ({exc})") from None
            if values.dtype == object:
                try:
                    values = np.stack(values)
                except ValueError:
                    raise UsageError(
                        f"{self.path}: branch {branch} has a different length per entry: give fixed-size branches"
                    ) from None
            columns.append(values.reshape(len(values), -1) if len(names) > 1 else values)
        return columns[0] if len(columns) == 1 else np.concatenate(columns, axis=1)
