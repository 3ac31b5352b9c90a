"""Where an export lands, a local folder or a URL, and how it gets there without ever looking complete
before it is.

A destination is a local path or a URL: ``file:///abs/path``, ``s3://bucket/prefix`` (pyarrow's S3 client:
credentials, region and endpoint from the usual AWS settings, e.g. ``AWS_ENDPOINT_URL`` for an
S3-compatible server), any other scheme ``pyarrow.fs.FileSystem.from_uri`` knows (``gs://``, ``hdfs://``),
or any fsspec protocol whose package is installed (``az://`` with adlfs, ``memory://``), wrapped as a pyarrow
file system (https://arrow.apache.org/docs/python/filesystems.html).

Staging: an export is written to ``.<name>.tmp-<host>-<pid>-<random>`` beside its destination and moved into
place once complete. On a local file system that is one rename (:func:`pipeline.core.utils.replace_path`).
Object stores have no rename: the staged objects are copied to the destination (server-side on S3),
``manifest.json`` last, and the staging prefix is deleted; a reader that finds ``manifest.json`` finds
every file it lists. Pure and importable: nothing is opened before a method is called.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.core.utils import PipelineError, replace_path, temporary_sibling

#: Written last when an export is published: its presence means the export is complete.
COMPLETION_MARKER = "manifest.json"


@dataclass(frozen=True)
class Destination:
    """A folder on a file system: ``filesystem`` (a ``pyarrow.fs.FileSystem``; picklable, so Ray tasks can
    write to it) and ``path`` within it; ``url`` is what the user gave."""

    url: str
    filesystem: pafs.FileSystem
    path: str

    @classmethod
    def parse(cls, target: str | Path) -> "Destination":
        """The destination of a local path or a URL (see the module docstring).

        Raises:
            PipelineError: the URL's scheme is known to neither pyarrow nor fsspec, or its file system
                cannot be set up (a missing package, bad options).
        """
        text = str(target)
        if "://" not in text:
            return cls(text, pafs.LocalFileSystem(), str(Path(text).absolute()))
        try:
            filesystem, path = pafs.FileSystem.from_uri(text)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            filesystem, path = _fsspec_filesystem(text)
        except OSError as error:
            raise PipelineError(f"{text}: cannot open its file system ({' '.join(str(error).split())})") from None
        return cls(text, filesystem, path.rstrip("/"))

    @property
    def is_local(self) -> bool:
        """Whether this is a folder of this machine's file system (renames are atomic there)."""
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def exists(self) -> bool:
        """Whether anything is at this destination (a file, a folder, or objects under this prefix)."""
        return self.filesystem.get_file_info(self.path).type != pafs.FileType.NotFound

    def staging(self) -> "Destination":
        """A fresh, empty staging location beside this one (see the module docstring); removes folders of the
        same pattern left by killed processes of this host when local."""
        if self.is_local:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            folder = temporary_sibling(self.path)
            return Destination(str(folder), self.filesystem, str(folder))
        if "/" not in self.path.strip("/"):
            raise PipelineError(f"{self.url}: name a folder inside the bucket or share, e.g. {self.url}/digits")
        name = f".{self.name}.tmp-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        return Destination(f"{self.url.rstrip('/').rsplit('/', 1)[0]}/{name}", self.filesystem,
                           f"{self.path.rsplit('/', 1)[0]}/{name}")

    def upload(self, folder: str | Path) -> None:
        """Copy every file under the local ``folder`` here, keeping relative paths (existing files of the same
        names are replaced, so a retried task overwrites what a killed one left)."""
        if self.is_local and Path(folder).resolve() == Path(self.path).resolve():
            return
        if self.is_local:
            Path(self.path).mkdir(parents=True, exist_ok=True)
        pafs.copy_files(str(folder), self.path, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.filesystem)

    def publish(self, final: "Destination", overwrite: bool) -> None:
        """Move this (complete) staging location to ``final``; an existing ``final`` is replaced only with
        ``overwrite``, and only now that the new export is complete.

        Raises:
            PipelineError: ``final`` exists (it appeared while the export was written) and not ``overwrite``.
        """
        if final.exists() and not overwrite:
            raise PipelineError(f"{final.url} already exists; pass --overwrite to replace it")
        if self.is_local and final.is_local:
            replace_path(self.path, final.path)
            return
        files = sorted((info.path for info in self.filesystem.get_file_info(
            pafs.FileSelector(self.path, recursive=True)) if info.type == pafs.FileType.File),
            key=lambda path: path.endswith("/" + COMPLETION_MARKER))  # the marker last
        if final.exists():
            final.filesystem.delete_dir(final.path)
        for source in files:
            target = final.path + source[len(self.path):]
            parent = target.rsplit("/", 1)[0]
            if parent:
                final.filesystem.create_dir(parent, recursive=True)
            final.filesystem.copy_file(source, target)
        self.remove()

    def remove(self) -> None:
        """Delete this folder and everything under it (nothing happens if it is not there)."""
        try:
            if self.exists():
                self.filesystem.delete_dir(self.path)
        except OSError:
            pass  # best effort: it is a hidden staging location, and a later run of this host clears local ones


def _fsspec_filesystem(url: str) -> tuple[pafs.FileSystem, str]:
    """A URL that pyarrow does not know, through fsspec (``fsspec.core.url_to_fs``), as a pyarrow file system."""
    import fsspec

    try:
        filesystem, path = fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as error:
        raise PipelineError(f"{url}: no file system for this URL ({' '.join(str(error).split())})") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), path
