"""An upload is bounded while it streams, whatever its framing, and one without a token is never read."""

from __future__ import annotations

import socket
import time

from sqlalchemy import func, select

from app.models import Submission
from tests.server.conftest import free_port, seed_phase
from tests.server.procs import start_server

LIMIT = 2 * 1024 * 1024  # the server under test takes selection files up to 2 MB


def _chunked_post(port: int, path: str, headers: dict[str, str], total: int, chunk: int = 1 << 20):
    """POST `total` bytes with chunked framing (no Content-Length); return (status line, bytes the server
    let us send before it answered)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Transfer-Encoding: chunked",
            "Content-Type: multipart/form-data; boundary=x"] + [f"{k}: {v}" for k, v in headers.items()]  # fmt: skip
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    sent = 0
    part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="ids.txt"\r\n\r\n'
    sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")  # a well-formed file part, then IDs
    block = b"synth-gastrovision/i00000\n" * (chunk // 26)
    sock.settimeout(0.0)
    answer = b""
    try:
        while sent < total:
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            try:
                sock.settimeout(5)
                sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                sent += len(block)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            finally:
                sock.settimeout(0.0)
        sock.settimeout(10)
        deadline = time.monotonic() + 10
        while b"\r\n" not in answer and time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            answer += data
    finally:
        sock.close()
    return answer.split(b"\r\n", 1)[0].decode(), sent


def test_chunked_uploads_are_cut_off_at_the_limit_with_or_without_a_token(stack, pool_dir, tmp_path):
    seeded = seed_phase(stack, pool_dir)
    port = free_port()
    api = start_server({**stack.env, "DELBENCH_UPLOAD_MAX_BYTES": str(LIMIT)}, port, tmp_path)
    path = f"/api/v1/phases/{seeded.phase_slug}/submissions"
    total = 200 * 1024 * 1024
    try:
        status, sent = _chunked_post(port, path, {}, total)
        assert status.endswith("401 Unauthorized") and sent < 8 * 1024 * 1024, (status, sent)
        for token in ("dlb_not-a-real-token", seeded.token):
            status, sent = _chunked_post(port, path, {"Authorization": f"Bearer {token}"}, total)
            assert status.split(" ", 2)[1] in {"401", "413"} and sent < LIMIT + 8 * 1024 * 1024, (
                status,
                sent,
            )
        with stack.session() as session:
            assert session.scalar(select(func.count()).select_from(Submission)) == 0  # nothing stored
        assert api.alive()
    finally:
        api.stop()
