"""MiniPlaces download against a local HTTP server on 127.0.0.1 (no internet involved)."""

import hashlib
import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scenelab.cli import main
from scenelab.data.download import DownloadError, Source, download_miniplaces
from scenelab.data.miniplaces import MiniPlaces

from conftest import write_tiny


class _Files(BaseHTTPRequestHandler):
    """Serves `files` (name -> bytes) with Range support; names in `cut` are sent half-way
    once, then the connection drops."""

    files: dict[str, bytes] = {}
    cut: set[str] = set()
    ranges: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        name = self.path.lstrip("/")
        if name not in self.files:
            self.send_error(404)
            return
        body, start = self.files[name], 0
        if rng := self.headers.get("Range"):
            self.ranges.append(f"{name} {rng}")
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if name in self.cut:
            self.cut.discard(name)
            self.wfile.write(body[start : start + (len(body) - start) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Files.files, _Files.cut, _Files.ranges = {}, set(), []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", _Files
    httpd.shutdown()
    httpd.server_close()


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def _publish(files: dict[str, bytes], tmp_path: Path) -> None:
    """A tiny MiniPlaces: data.tar.gz with images/, train.txt and val.txt (no categories.txt)."""
    src = write_tiny(tmp_path / "src")
    images = {str(p.relative_to(src)): p.read_bytes() for p in (src / "images").rglob("*.jpg")}
    files["data.tar.gz"] = _tar(images)
    for name in ("train.txt", "val.txt"):
        files[name] = (src / name).read_bytes()


def _sources(url, **pins) -> dict[str, Source]:
    names = {"data.tar.gz": False, "train.txt": False, "val.txt": False, "categories.txt": True}
    return {
        n: Source(f"{url}/{n}", pins.get(n.replace(".", "_")), optional)
        for n, optional in names.items()
    }


def test_download_installs_a_readable_dataset_and_cleans_up(server, tmp_path):
    url, handler = server
    _publish(handler.files, tmp_path)
    digest = hashlib.sha256(handler.files["data.tar.gz"]).hexdigest()
    root = tmp_path / "miniplaces"
    seen = []

    def progress(name):
        return lambda done, total: seen.append((name, done, total))

    digests = download_miniplaces(
        root, sources=_sources(url, data_tar_gz=digest), progress=progress
    )
    assert digests["data.tar.gz"] == digest and "categories.txt" not in digests
    assert len(MiniPlaces(root, "train")) == 12 and len(MiniPlaces(root, "val")) == 6
    assert (root / "categories.txt").read_text().splitlines()[0] == "/c/coast 0"
    assert not (root / ".download").exists() and not (root / "data.tar.gz").exists()
    size = len(handler.files["data.tar.gz"])
    assert ("data.tar.gz", size, size) in seen


def test_a_checksum_mismatch_deletes_the_download(server, tmp_path):
    url, handler = server
    _publish(handler.files, tmp_path)
    root = tmp_path / "miniplaces"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_miniplaces(root, sources=_sources(url, data_tar_gz="0" * 64))
    assert not (root / "data.tar.gz").exists()
    assert not list((root / ".download").glob("*.part"))
    assert not (root / "images").exists()


def test_an_interrupted_transfer_resumes_where_it_stopped(server, tmp_path):
    url, handler = server
    _publish(handler.files, tmp_path)
    handler.cut = {"data.tar.gz"}
    root = tmp_path / "miniplaces"
    with pytest.raises(DownloadError, match="run the command again to resume"):
        download_miniplaces(root, sources=_sources(url))
    part = root / ".download" / "data.tar.gz.part"
    half = len(handler.files["data.tar.gz"]) // 2
    assert part.stat().st_size == half and not (root / "images").exists()
    digest = hashlib.sha256(handler.files["data.tar.gz"]).hexdigest()
    download_miniplaces(root, sources=_sources(url, data_tar_gz=digest))
    assert f"data.tar.gz bytes={half}-" in handler.ranges
    assert len(MiniPlaces(root, "val")) == 6


@pytest.mark.parametrize(
    "hostile",
    [
        {"members": {"../evil.txt": b"x"}},
        {"members": {"/tmp/evil.txt": b"x"}},
        {"members": {}, "links": {"images/link": "/etc/passwd"}},
    ],
)
def test_hostile_archive_members_are_refused_and_nothing_is_extracted(server, tmp_path, hostile):
    url, handler = server
    _publish(handler.files, tmp_path)
    handler.files["data.tar.gz"] = _tar(
        {"images/ok.jpg": b"y", **hostile["members"]}, hostile.get("links")
    )
    root = tmp_path / "deep" / "miniplaces"
    with pytest.raises(DownloadError, match="refusing to extract"):
        download_miniplaces(root, sources=_sources(url))
    assert not (root / "images").exists() and not (root / ".download" / "extracting").exists()
    assert not (tmp_path / "deep" / "evil.txt").exists()
    assert not (root / "data.tar.gz").exists()  # the refused archive does not stay behind


def test_a_damaged_partial_download_is_deleted_so_the_next_run_starts_afresh(server, tmp_path):
    url, handler = server
    _publish(handler.files, tmp_path)
    root = tmp_path / "miniplaces"
    part = root / ".download" / "data.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage from an earlier, damaged transfer")  # resumed, then appended to
    with pytest.raises(DownloadError, match="was deleted .* run the command again"):
        download_miniplaces(root, sources=_sources(url))
    assert not (root / "data.tar.gz").exists() and not part.exists()
    download_miniplaces(root, sources=_sources(url))  # the rerun downloads it whole
    assert len(MiniPlaces(root, "val")) == 6


def test_offline_fails_with_the_manual_steps(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="To install MiniPlaces by hand"):
        download_miniplaces(tmp_path / "m", sources=_sources(f"http://127.0.0.1:{port}"))
    assert not (tmp_path / "m" / ".download").exists()  # nothing left behind


def test_cli_downloads_from_a_mirror_and_reports_digests(server, tmp_path, capsys):
    url, handler = server
    _publish(handler.files, tmp_path)
    root = tmp_path / "miniplaces"
    assert main(["data", "download", "miniplaces", "--root", str(root), "--mirror", url]) == 0
    out = capsys.readouterr().out
    assert (
        "MiniPlaces is ready" in out and hashlib.sha256(handler.files["val.txt"]).hexdigest() in out
    )
    assert main(["data", "download", "miniplaces", "--root", str(root), "--sha256", "x=1"]) == 2
    assert "--sha256 expects NAME=HEX" in capsys.readouterr().err
