"""A blob store on a local (or network-mounted) directory."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import BlobNotFoundError, StorageError, StorageUnavailableError
from ._blob import BlobStore

__all__ = ["FileBlobStore"]


def _check_name(name: str) -> str:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid blob name {name!r}: use relative names like 'workloads/w1/data.enc'")
    return name


class FileBlobStore(BlobStore):
    """Blobs as files under ``root``; writes go to a temp file in the same directory and are
    renamed into place, so a crash never leaves a half-written blob under its real name."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.root = Path(root).absolute()
        self.location = f"file://{self.root}"
        self._fsync = fsync
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"blob store directory {self.root} cannot be created ({exc.strerror}); check RQP_BLOB_URL and permissions"
            ) from None

    def _path(self, name: str) -> Path:
        return self.root / _check_name(name)

    def _write(self, name: str, chunks: Iterable[bytes], overwrite: bool) -> int:
        path = self._path(name)
        if not overwrite and path.exists():
            raise StorageError(
                f"blob {name} already exists in {self.location}; choose another workload id or delete it"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        except OSError as exc:
            raise StorageUnavailableError(
                f"cannot write blob {name} in {self.location}: {exc.strerror}; check the directory is writable and has space"
            ) from None
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                    size += len(chunk)
                if self._fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            if overwrite:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise StorageError(
                        f"blob {name} already exists in {self.location}; choose another workload id or delete it"
                    ) from None
                finally:
                    os.unlink(tmp)
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise StorageUnavailableError(
                f"cannot write blob {name} in {self.location}: {exc.strerror}; check the directory is writable and has space"
            ) from None
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return size

    def put(self, name: str, data: bytes, *, overwrite: bool = True) -> None:
        self._write(name, (data,), overwrite)

    def put_stream(self, name: str, chunks: Iterable[bytes], *, overwrite: bool = True) -> int:
        return self._write(name, chunks, overwrite)

    def _open(self, name: str) -> BinaryIO:
        try:
            return open(self._path(name), "rb")
        except FileNotFoundError:
            raise BlobNotFoundError(
                f"blob {name} not found in {self.location}; check the workload id and RQP_BLOB_URL"
            ) from None
        except OSError as exc:
            raise StorageUnavailableError(f"cannot read blob {name} in {self.location}: {exc.strerror}") from None

    def get(self, name: str) -> bytes:
        with self._open(name) as fh:
            return fh.read()

    def iter_chunks(self, name: str, chunk_size: int | None = None) -> Iterator[bytes]:
        size = self.read_chunk if chunk_size is None else chunk_size
        fh = self._open(name)

        def gen() -> Iterator[bytes]:
            with fh:
                while piece := fh.read(size):
                    yield piece

        return gen()

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def size(self, name: str) -> int:
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {name} not found in {self.location}") from None

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root
        names = []
        # walk only the directory the prefix names ("workloads/w1/parts/" -> that folder), not
        # the whole store: listing one workload's parts stays fast as workloads accumulate
        folders = prefix.split("/")[:-1]
        top = base if any(f in ("", ".", "..") for f in folders) else base.joinpath(*folders)
        for dirpath, _dirs, files in os.walk(top):
            for f in files:
                if f.startswith(".tmp-"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), base).replace(os.sep, "/")
                if rel.startswith(prefix):
                    names.append(rel)
        return iter(sorted(names))

    def move(self, src: str, dst: str) -> None:
        """A rename within the store's directory: atomic, nothing copied."""
        source, target = self._path(src), self._path(dst)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        except FileNotFoundError:
            raise BlobNotFoundError(
                f"blob {src} not found in {self.location}; check the workload id and RQP_BLOB_URL"
            ) from None
        except OSError as exc:
            raise StorageUnavailableError(
                f"cannot move blob {src} to {dst} in {self.location}: {exc.strerror}; check the directory is writable"
            ) from None

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            pass
