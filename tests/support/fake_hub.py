"""A local stand-in for the Hugging Face hub (set HF_ENDPOINT to it): the real hub cannot be reached here."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def fake_hub(files: dict[str, Path]) -> ThreadingHTTPServer:
    """Just enough of the hub's HTTP API for huggingface_hub: a repo's info and file list, and file HEAD/GET.
    `files` maps ORG/REPO/FILE to the local file served as it."""

    class Hub(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def do_GET(self) -> None:
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[:2] == ["api", "models"]:  # /api/models/ORG/REPO/tree/main
                repo = "/".join(parts[2:4])
                if parts[4:5] == ["revision"]:  # /api/models/ORG/REPO/revision/main (snapshot_download)
                    if not any(k.startswith(repo + "/") for k in files):
                        return self._send(404, X_Error_Code="RepoNotFound")
                    siblings = [{"rfilename": k.split("/", 2)[2]} for k in files if k.startswith(repo + "/")]
                    info = {"id": repo, "sha": "a" * 40, "siblings": siblings}
                    return self._send(200, json.dumps(info).encode(), Content_Type="application/json")
                listing = [{"type": "file", "path": k.split("/", 2)[2], "size": 1, "oid": "0"}
                           for k in files if k.startswith(repo + "/")]
                if not listing:
                    return self._send(404, X_Error_Code="RepoNotFound")
                return self._send(200, json.dumps(listing).encode(), Content_Type="application/json")
            path = files.get(f"{parts[0]}/{parts[1]}/{parts[-1]}") if "resolve" in parts else None
            if path is None:  # the error codes huggingface_hub tells apart
                known = any(k.startswith(f"{parts[0]}/{parts[1]}/") for k in files)
                return self._send(404, X_Error_Code="EntryNotFound" if known else "RepoNotFound")
            body = path.read_bytes()
            self._send(200, body, X_Repo_Commit="a" * 40, ETag=f'"{hashlib.sha256(body).hexdigest()}"')

        do_HEAD = do_GET

    hub = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    return hub
