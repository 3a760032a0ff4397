"""A tiny DANDI-compatible HTTP server for the fetch tests; it stands in for the archive only.

It answers the routes the dandi client calls to download a blob asset of a pinned version:
server info, the asset listing of a dandiset version (filtered by path), and the download, which
redirects to the blob like the real archive does and honours `Range` requests. For the timeout
tests it can stop answering (`stall_paths`, or `ServedAsset.stall_after` bytes into a blob) until
it is shut down, and serve blobs slowly (`ServedAsset.chunk_delay_s`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# Old enough that the dandi client under test accepts the server.
_CLI_MINIMAL_VERSION = "0.60.0"
_TIMESTAMP = "2022-01-13T04:08:00.000000Z"


@dataclass
class ServedAsset:
    dandiset: str
    version: str
    path: str
    asset_id: str
    content: bytes
    # Send only this many bytes of the next download, then drop the connection (once).
    drop_after: int | None = None
    # Send only this many bytes of every download, then send nothing more (until shutdown).
    stall_after: int | None = None
    # Pause this long after each 64 KiB of a download.
    chunk_delay_s: float = 0.0


@dataclass(frozen=True)
class LoggedRequest:
    path: str
    range_header: str | None


@dataclass
class DandiTestServer:
    assets: list[ServedAsset]
    requests: list[LoggedRequest] = field(default_factory=list)
    # Requests whose path starts with one of these get no answer at all (until shutdown).
    stall_paths: tuple[str, ...] = ()
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def api_url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api"

    def downloads(self) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/blobs/")]

    def __enter__(self) -> DandiTestServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def _log(self, path: str, range_header: str | None) -> None:
        with self._lock:
            self.requests.append(LoggedRequest(path=path, range_header=range_header))

    def _server_info(self) -> dict[str, object]:
        return {
            "version": "0.0.0-test", "schema_version": "0.6.10",
            "services": {"api": {"url": self.api_url}},
            "cli-minimal-version": _CLI_MINIMAL_VERSION, "cli-bad-versions": [],
        }

    def _asset_record(self, asset: ServedAsset) -> dict[str, object]:
        return {
            "asset_id": asset.asset_id, "blob": f"blob-{asset.asset_id}", "zarr": None,
            "path": asset.path, "size": len(asset.content), "created": _TIMESTAMP, "modified": _TIMESTAMP,
        }


_LISTING = re.compile(r"^/api/dandisets/(?P<dandiset>[^/]+)/versions/(?P<version>[^/]+)/assets/$")
_DOWNLOAD = re.compile(r"^/api/assets/(?P<asset_id>[^/]+)/download/$")
_BLOB = re.compile(r"^/blobs/(?P<asset_id>[^/]+)$")
_RANGE = re.compile(r"^bytes=(?P<start>\d+)-$")


def _handler_for(server: DandiTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            server._log(url.path, self.headers.get("Range"))
            if url.path.startswith(server.stall_paths or ("\0",)):
                server._stopping.wait()
                return
            if url.path in ("/server-info", "/api/info/"):
                self._json(server._server_info())
            elif match := _LISTING.match(url.path):
                in_version = [a for a in server.assets
                              if (a.dandiset, a.version) == (match["dandiset"], match["version"])]
                prefix = parse_qs(url.query).get("path", [""])[0]
                results = [server._asset_record(a) for a in in_version if a.path.startswith(prefix)]
                if in_version:
                    self._json({"count": len(results), "next": None, "previous": None, "results": results})
                else:
                    self._json({"detail": "Not found."}, status=404)
            elif (match := _DOWNLOAD.match(url.path)) and self._asset(match["asset_id"]):
                self.send_response(302)
                self.send_header("Location", f"/blobs/{match['asset_id']}")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif (match := _BLOB.match(url.path)) and (asset := self._asset(match["asset_id"])):
                self._blob(asset)
            else:
                self._json({"detail": "Not found."}, status=404)

        def _asset(self, asset_id: str) -> ServedAsset | None:
            return next((a for a in server.assets if a.asset_id == asset_id), None)

        def _json(self, payload: object, status: int = 200) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _blob(self, asset: ServedAsset) -> None:
            start = 0
            if (requested := _RANGE.match(self.headers.get("Range", ""))) is not None:
                start = int(requested["start"])
            body = asset.content[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(asset.content) - 1}/{len(asset.content)}")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if asset.drop_after is not None:
                self.wfile.write(body[: asset.drop_after])
                self.wfile.flush()
                asset.drop_after = None
                self.close_connection = True
                return
            if asset.stall_after is not None:
                self.wfile.write(body[: asset.stall_after])
                self.wfile.flush()
                server._stopping.wait()
                self.close_connection = True
                return
            for start in range(0, len(body), 1 << 16):
                self.wfile.write(body[start: start + (1 << 16)])
                if asset.chunk_delay_s:
                    self.wfile.flush()
                    time.sleep(asset.chunk_delay_s)

    return Handler
