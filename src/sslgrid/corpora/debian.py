"""Debian packages as data sources: checked downloads and reading ``.deb`` files without dpkg.

A ``.deb`` is an ``ar`` archive holding ``debian-binary``, ``control.tar.*`` and
``data.tar.*``; ``python-debian`` opens it as plain files, so no root, no dpkg database and no
unpacking to disk are needed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from debian.debfile import DebFile
from tqdm import tqdm

__all__ = ["ChecksumError", "DownloadError", "fetch_package", "iter_members", "sha256_of"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


class DownloadError(OSError):
    """A package that could not be fetched; the message names the url."""


class ChecksumError(ValueError):
    """A fetched file whose SHA256 differs from the expected one."""


def fetch_package(
    url: str, sha256: str, dest_dir: str | os.PathLike[str], progress: bool = True
) -> Path:
    """Fetch ``url`` into ``dest_dir`` and return the local path, verified against ``sha256``.

    ``url`` may be ``http(s)://``, ``file://`` or a plain local path. A file already in
    ``dest_dir`` whose hash matches is reused without fetching; one that does not match is
    fetched again. A download with the wrong hash is deleted and raises ``ChecksumError``
    naming the url and both hashes.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / _file_name(url)
    expected = sha256.lower()
    if dest.is_file():
        if sha256_of(dest) == expected:
            log.info("reusing %s (sha256 ok)", dest)
            return dest
        log.warning("%s does not match its sha256; fetching %s again", dest, url)
    log.info("fetching %s", url)
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _download(url, out, dest.name, progress)
        if actual != expected:
            raise ChecksumError(
                f"{url}: SHA256 mismatch: expected {expected}, got {actual}; "
                "the downloaded file was deleted"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def iter_members(
    deb_path: str | os.PathLike[str], pattern: str | re.Pattern[str]
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(path, content)`` for regular files in the ``.deb``'s data part matching ``pattern``.

    Paths are relative, without the archive's leading ``./``
    (``usr/share/games/fillets-ng/...``). A ``str`` pattern is a shell glob whose ``*`` also
    crosses ``/``; a compiled pattern must match the whole path. Members come in archive
    order, read one at a time, so the archive is decompressed in a single pass.
    """
    matches = _matcher(pattern)
    with DebFile(filename=str(deb_path)) as deb:
        tar = deb.data.tgz()
        for member in tar:
            path = member.name.removeprefix("./")
            if not member.isfile() or not matches(path):
                continue
            extracted = tar.extractfile(member)
            if extracted is None:
                continue
            with extracted:
                yield path, extracted.read()


def _matcher(pattern: str | re.Pattern[str]) -> Callable[[str], bool]:
    if isinstance(pattern, re.Pattern):
        return lambda path: pattern.fullmatch(path) is not None
    return lambda path: fnmatch.fnmatchcase(path, pattern)


def _file_name(url: str) -> str:
    """Local file name for a url or path: its last path component."""
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name:
        raise DownloadError(f"{url}: url has no file name")
    return name


def _open_url(url: str) -> BinaryIO:
    """Open an http(s) or file url, or a plain local path, for reading."""
    if not urllib.parse.urlparse(url).scheme:
        url = Path(url).resolve().as_uri()
    try:
        return urllib.request.urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: cannot fetch ({exc})") from exc


def _download(url: str, out: BinaryIO, label: str, progress: bool) -> str:
    """Stream ``url`` into ``out`` with a progress bar; return the content's SHA256."""
    digest = hashlib.sha256()
    with _open_url(url) as response:
        total = response.headers.get("Content-Length")
        with tqdm(
            total=int(total) if total else None,
            unit="B",
            unit_scale=True,
            desc=label,
            disable=not progress,
        ) as bar:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()
