"""The artifact store: files addressed by key (`encoders/<cache key>/encoder.pt`) under one URL that every
worker host can reach, through fsspec: a shared folder (`/shared/delbench` or `file:///...`) or an
S3-compatible object store (`s3://bucket/prefix`, with `endpoint_url` for one that is not AWS).

Workers keep a local copy of what they use in their own cache folder; the store is where a file crosses
hosts: the pretraining stage puts the encoder there, and a finetune on another host fetches it. Writes
are whole-file (a temporary name, then a move, on a folder; one PUT on an object store), so a reader sees
a file whole or not at all.
"""

from __future__ import annotations

import uuid
from pathlib import Path


class ArtifactStore:
    def __init__(self, url: str, **storage_options):
        import fsspec

        self.url = url.rstrip("/")
        from fsspec.implementations.local import LocalFileSystem

        self.fs, self.root = fsspec.core.url_to_fs(self.url, **storage_options)
        self.root = self.root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)  # a folder: write beside, then move into place

    def _path(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"artifact key {key!r}: a relative path without '..'")
        return f"{self.root}/{key}"

    def has(self, key: str) -> bool:
        return self.fs.exists(self._path(key))

    def put(self, local: Path, key: str) -> None:
        """Upload `local` as `key` (replacing it)."""
        target = self._path(key)
        parent = target.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if self.local:
            staging = f"{parent}/.{target.rsplit('/', 1)[1]}.{uuid.uuid4().hex[:8]}.tmp"
            self.fs.put_file(str(local), staging)
            self.fs.mv(staging, target)
        else:
            self.fs.put_file(str(local), target)

    def get(self, key: str, local: Path) -> Path:
        """Download `key` to `local` (through a temporary name beside it); returns `local`."""
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        staging = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            self.fs.get_file(self._path(key), str(staging))
            staging.replace(local)
        finally:
            staging.unlink(missing_ok=True)
        return local


def open_store(url: str | None, endpoint_url: str | None = None) -> ArtifactStore | None:
    """The configured store, or None (one host: the local cache is all there is)."""
    if not url:
        return None
    options = (
        {"client_kwargs": {"endpoint_url": endpoint_url}} if endpoint_url and url.startswith("s3") else {}
    )
    return ArtifactStore(url, **options)
