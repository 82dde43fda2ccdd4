"""Clean up after a test process that dies without running its finalizers (SIGKILL, or SIGTERM from
`timeout`, which Python does not turn into an exception): a detached shell waits for the test
process to disappear, then runs the cleanup. A normal stop ends the watchdog first."""

from __future__ import annotations

import os
import subprocess


def start_watchdog(cleanup: str) -> subprocess.Popen:
    """``cleanup`` is a shell snippet run once this process is gone."""
    script = f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 2; done; {cleanup}"
    return subprocess.Popen(
        ["/bin/sh", "-c", script],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_watchdog(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)
