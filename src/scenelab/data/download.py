"""Download MiniPlaces: the image archive and the development kit's list files.

Each file is fetched into `root/.download/<name>.part`, resumed with an HTTP Range request when
a previous transfer was cut off, checked against its SHA-256 when one is configured, and only
then renamed into place, so a final file is always complete. The archive is extracted into a
temporary folder beside the data, refusing absolute paths, `..` components, links and device
files, and moved into place at the end; a failure removes the temporary folder. Without
`categories.txt`, it is written from the labels of `train.txt`.
"""

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .decode import DatasetError

CHUNK = 1 << 20  # bytes per read


class DownloadError(DatasetError):
    """A download or an extraction failed; the message says what to do."""


@dataclass(frozen=True)
class Source:
    url: str
    sha256: str | None = None  # None: not pinned (the digest is reported instead)
    optional: bool = False  # categories.txt: derived from train.txt when absent


_KIT = "https://raw.githubusercontent.com/CSAILVision/miniplaces/master/data/"
# The official locations. The digests are not pinned here: pass them with --sha256 NAME=HEX
# (download once, check the files, then pin them in scripts).
MINIPLACES: dict[str, Source] = {
    "data.tar.gz": Source("http://miniplaces.csail.mit.edu/data/data.tar.gz"),
    "train.txt": Source(_KIT + "train.txt"),
    "val.txt": Source(_KIT + "val.txt"),
    "categories.txt": Source(_KIT + "categories.txt", optional=True),
}

# (bytes done, bytes in all or None) after each chunk
ProgressFn = Callable[[int, int | None], None]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def download_file(
    url: str, dest: Path, *, sha256: str | None = None, progress: ProgressFn | None = None
) -> str:
    """Fetch `url` to `dest` through `dest`'s `.part` file (resumed if present); returns the
    SHA-256 of the complete file. A checksum mismatch deletes the part file."""
    if dest.exists():  # an earlier run finished this file
        digest = sha256_of(dest)
        if sha256 is None or digest == sha256.lower():
            return digest
        dest.unlink()
    part = dest.parent / ".download" / (dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    done, total = part.stat().st_size if part.exists() else 0, None
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if done and response.status != 206:  # the server ignored the range: start again
                done = 0
            length = response.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            with open(part, "ab" if done else "wb") as f:
                while block := response.read(CHUNK):
                    f.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
    except urllib.error.HTTPError as e:
        if e.code == 416 and done:  # the part file is already complete
            pass
        else:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        kept = f"; {done:,} bytes are kept in {part} and the next run resumes" if done else ""
        if not done:  # nothing worth keeping
            part.unlink(missing_ok=True)
            _remove_if_empty(part.parent)
        raise DownloadError(f"{url}: {getattr(e, 'reason', e)}{kept}") from None
    if total is not None and done < total:
        raise DownloadError(
            f"{url}: the transfer stopped after {done:,} of {total:,} bytes; run the command "
            f"again to resume from {part}"
        )
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink()
        raise DownloadError(
            f"{url}: checksum mismatch (SHA-256 {digest}, expected {sha256}); the download was "
            "deleted. Run the command again, or check the source and the pinned digest"
        )
    part.replace(dest)
    return digest


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise DownloadError(
            f"{archive} holds {member.name!r}, which would land outside the data folder; "
            "refusing to extract it (the archive is damaged or hostile)"
        )
    if not (member.isfile() or member.isdir()):
        raise DownloadError(
            f"{archive} holds {member.name!r}, a link or special file; refusing to extract it"
        )


def extract_archive(archive: Path, root: Path) -> list[str]:
    """Extract `archive` into `root` safely; returns the top-level names it placed."""
    tmp = root / ".download" / "extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            tar.extractall(tmp, members=members, filter="data")  # the stdlib's checks too
        placed = []
        for item in sorted(tmp.iterdir()):
            target = root / item.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            item.replace(target)
            placed.append(item.name)
        return placed
    except (tarfile.TarError, OSError) as e:
        raise DownloadError(f"cannot extract {archive}: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_categories(root: Path) -> Path:
    """categories.txt from train.txt's paths and labels: `train/a/abbey/x.jpg 0` -> `/a/abbey 0`."""
    names: dict[int, str] = {}
    with open(root / "train.txt") as f:
        for line in f:
            if line.strip():
                path, label = line.split()
                names[int(label)] = "/" + "/".join(PurePosixPath(path).parts[1:-1])
    out = root / "categories.txt"
    out.write_text("".join(f"{names[i]} {i}\n" for i in sorted(names)))
    return out


def manual_steps(root: Path, sources: dict[str, Source]) -> str:
    urls = "\n".join(f"  {s.url}" for s in sources.values())
    return (
        f"To install MiniPlaces by hand, download these files on a machine with internet:\n"
        f"{urls}\ncopy them into {root}/, run `tar -xzf data.tar.gz` there, and train with "
        f"`scenelab train --data miniplaces --data-root {root}`."
    )


def download_miniplaces(
    root: str | Path,
    *,
    sources: dict[str, Source] = MINIPLACES,
    progress: Callable[[str], ProgressFn] | None = None,
) -> dict[str, str]:
    """Download and install MiniPlaces under `root`; returns each file's SHA-256.

    progress(name) gives the byte-progress callback of that file's transfer.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, source in sources.items():
        try:
            report = progress(name) if progress else None
            digests[name] = download_file(
                source.url, root / name, sha256=source.sha256, progress=report
            )
        except DownloadError as e:
            if source.optional:
                continue
            raise DownloadError(f"{e}\n{manual_steps(root, sources)}") from None
    for name in sources:
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            archive = root / name
            try:
                extract_archive(archive, root)
            except DownloadError as e:  # keeping the file would fail the same way every rerun
                archive.unlink(missing_ok=True)
                shutil.rmtree(root / ".download", ignore_errors=True)
                raise DownloadError(
                    f"{e}. {archive} was deleted (a download resumed from a damaged partial "
                    "file, or a damaged or hostile file on the server, gives this); run the "
                    "command again to download it afresh"
                ) from None
            archive.unlink()
    if not (root / "categories.txt").exists():
        write_categories(root)
    shutil.rmtree(root / ".download", ignore_errors=True)
    return digests
