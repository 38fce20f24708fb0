"""One writer per zoo directory: an advisory lock file holding the writer's PID.

The lock is an `fcntl.flock` on DIR/.lock, so it is released when its process
dies, however it dies; a second writer fails at once, before touching anything.

Usage:
  with exclusive("runs/digits"):   # ZooInUseError: "... in use by PID 1234"
    ...train...
"""
import contextlib
import fcntl
import os

LOCK = ".lock"


class ZooInUseError(RuntimeError):
  """Another process is writing this zoo directory."""


@contextlib.contextmanager
def exclusive(zoo_dir: str):
  """Holds DIR/.lock (creating DIR) for the duration; removes it on exit."""
  os.makedirs(zoo_dir, exist_ok=True)
  path = os.path.join(zoo_dir, LOCK)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
    os.close(fd)
    raise ZooInUseError(f"{zoo_dir} is in use by PID {holder} (lock file {path}); wait for "
                        "that run to finish or choose another --out") from None
  try:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    yield
  finally:
    os.unlink(path)  # before unlocking: a later writer creates a fresh lock file
    os.close(fd)
