"""File access for run directories.

Writes are atomic: the content goes to a temporary name beside the target (``.NAME.*.tmp``),
then ``os.replace`` puts it in place (with the mode a plain ``open`` would give: 666 less the
umask), so a killed process leaves either the old file or the new
one, never half; a write that fails (a full disk) removes its temporary file and leaves the old
file as it was. A kill (SIGKILL) can leave a temporary file behind: :func:`remove_temporaries`
clears them when the run resumes. ``torch.save`` output is byte-identical for identical
content (the archive is built in memory, so its internal name does not depend on the temporary
file's random name, and a full disk surfaces as ``OSError(ENOSPC)`` from the plain write).

One command at a time writes into a run directory: :func:`locked` holds an advisory lock
(``flock``) on its ``.lock`` file, which the kernel releases when the process ends however it
ends, so a killed run leaves no stale lock (only its PID in the file).

What is computed from a file's bytes (its hash, its parsed rows) is kept per process by
:class:`FileMemo` for as long as the file provably has not changed (what it trusts: its
docstring).

A run directory holds regular files and directories only: a symbolic link or a special file
(a FIFO, a socket, a device) where a run file belongs is refused in one line before it is
opened (:func:`refuse_odd`; a FIFO would block a reader forever), by the walk before each
command (``config.guards.check_no_links``) and again at each read (:func:`check_regular`) and
at each write into a locked run directory (:func:`atomic_write` checks the folders between the
run directory and the file).

Reads turn every way a file can be unreadable -- truncated, corrupt, another format, a pickle
that would run code -- into one :class:`DamagedFile` line naming the file and what to do.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import signal
import stat
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

T = TypeVar("T")

TMP_SUFFIX = ".tmp"
LOCK = ".lock"


class DamagedFile(ValueError):
    """A file of a run directory that cannot be read as what it should be: ``"{path}: {why}"``.

    It carries the file's :attr:`path`, so that whoever knows the run's stages (the command line,
    with :func:`~smoothstab.experiments.rundir.manifest.recompute`) can add how to recompute it;
    this layer knows only files. ``advice`` is given where the raiser knows it already (the manifest
    does).
    """

    def __init__(self, path: str | Path, why: str, advice: str | None = None) -> None:
        super().__init__(f"{path}: {why}" + (f"; {advice}" if advice else ""))
        self.path, self.advice = Path(path), advice


SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_kind(mode: int) -> str | None:
    """What a file of ``mode`` is if it is a special file (``"a FIFO (named pipe)"``, a socket,
    a device); ``None`` for a regular file, a directory or a link."""
    return next((name for test, name in SPECIAL_KINDS if test(mode)), None)


def refuse_odd(path: str | Path, st: os.stat_result | None = None) -> None:
    """``path`` (``lstat`` result ``st``) is a symbolic link or a special file: one
    ``ValueError`` line saying what it is and what to do. A regular file, a directory or a
    missing path passes."""
    if st is None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
    if stat.S_ISLNK(st.st_mode):
        raise ValueError(
            f"{path}: a symbolic link (to {os.readlink(path)}); a run writes only inside its run "
            "directory, replace the link with what it points to, or start a new run directory"
        )
    kind = special_kind(st.st_mode)
    if kind is not None:
        raise ValueError(
            f"{path}: {kind} where a run file belongs (a run reads and writes regular files "
            "only); remove it and rerun the same command"
        )


def check_regular(path: str | Path) -> None:
    """Refuse a special file at ``path`` before it is opened (opening a FIFO blocks until a
    writer comes); a link is followed, a missing path passes (the open that follows says)."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if special_kind(st.st_mode) is not None:
        refuse_odd(path, st)


FileVersion = tuple[int, int, int, int, int]
SETTLED_NS = 1_000_000_000  # a file changed this recently may change again in the same tick


def file_version(path: str | Path) -> FileVersion | None:
    """``(device, inode, size, mtime_ns, ctime_ns)`` of ``path`` (``None`` if it is missing).
    Any write, truncation, replacement or ``utime`` moves the change time, which no user call
    can set back, so an equal version is the same unchanged file -- unless both were taken
    within one tick of the file system's clock, which :class:`FileMemo` guards against."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def no_writer(path: str | Path) -> bool:
    """No process has ``path`` open for writing, a writable shared memory map included: on
    Linux, a read lease on it can be taken (and is given back at once). Where leases cannot be
    taken (not the file's owner, a file system without them) ``False``; on systems without
    leases ``True`` (the file's version is all there is to go by)."""
    if not hasattr(fcntl, "F_SETLEASE"):
        return True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        # A writer opening the file while the lease is held breaks it with a signal to this
        # process: SIGURG, whose default action is to ignore it (SIGIO's would end the process).
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError:
        return False  # EAGAIN: open for writing somewhere; EACCES, EINVAL: no lease here
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return True
    finally:
        os.close(fd)


class FileMemo(Generic[T]):
    """``fn(path, *args)`` computed once per version of the file (:func:`file_version`) in
    this process: a later call returns the kept value while the file's version is unchanged
    and no process has the file open for writing (:func:`no_writer`).

    What it trusts: that every change to a file moves its change time, which no user call can
    set back. That holds for every write through a file descriptor, but not for a write through
    a shared memory map that was writable before the value was computed (the kernel moves the
    times only when such a page is next written back); such a map keeps the file open for
    writing, so :func:`no_writer` fails and the value is computed again. A value is kept only if
    the file's version was the same before and after computing it and its last change was at
    least :data:`SETTLED_NS` before (file times are taken from a coarse clock: a change within
    the same tick could leave the version as it was, the race git's index guards against the
    same way). So a file just written is recomputed once more, and from then on read from
    memory. The kept value is shared: callers must not modify it."""

    def __init__(self, fn: Callable[..., T]) -> None:
        self.fn = fn
        self._kept: dict[Hashable, tuple[FileVersion, T]] = {}

    def __call__(self, path: str | Path, *args: Hashable) -> T:
        key = (os.path.abspath(path), *args)
        before = file_version(path)
        kept = self._kept.get(key)
        if kept is not None and before is not None and kept[0] == before and no_writer(path):
            return kept[1]
        started = time.time_ns()
        value = self.fn(path, *args)
        if before is not None and before == file_version(path):
            if started - before[4] >= SETTLED_NS:
                self._kept[key] = (before, value)
        return value


def _commit(tmp: str | Path, path: str | Path) -> None:
    """The rename that publishes a finished temporary file (a seam for tests)."""
    os.replace(tmp, path)


_HELD: list[Path] = []  # the run directories this process holds the lock of (absolute)


def check_inside(root: str | Path, path: str | Path) -> None:
    """No part of ``path`` below ``root`` is a link or a special file (:func:`refuse_odd`);
    parts that do not exist yet pass."""
    root, path = Path(root).absolute(), Path(path).absolute()
    here = root
    for part in path.relative_to(root).parts:
        here = here / part
        try:
            refuse_odd(here, os.lstat(here))
        except FileNotFoundError:
            return  # made later, as a plain directory or file


def _confined(path: Path) -> None:
    """A write into a run directory this process has locked goes through no link and onto no
    special file below it (the walk before the command may be old news)."""
    target = path.absolute()
    for root in _HELD:
        if target.is_relative_to(root):
            check_inside(root, target)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result to ``path`` (same directory, one rename)."""
    path = Path(path)
    _confined(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0o600: the mode open() would give
    finally:
        os.close(fd)
    try:
        write(Path(tmp))
        _commit(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.errno is None:
            raise
        # name the file being written, not its temporary (same subclass: OSError maps errno)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def locked(root: str | Path) -> Iterator[None]:
    """Hold the lock of the run directory ``root`` (which must exist) while the block runs; the
    lock file holds this process's PID meanwhile. A lock another process holds is one
    ``ValueError`` line naming that process; a ``.lock`` that is no regular file is refused in
    one line. While the lock is held, each write below ``root`` checks its path
    (:func:`atomic_write`)."""
    path = Path(root) / LOCK
    try:  # no link followed; a FIFO opens at once (O_NONBLOCK), and is refused below
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        refuse_odd(path)
        raise
    try:
        refuse_odd(path, os.fstat(fd))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
            holder = text if text.isdigit() else "unknown"  # the file's bytes are never echoed
            raise ValueError(
                f"{root}: another smoothstab command is writing into it (PID {holder}); wait "
                "for it to finish, or use another run directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        held = Path(root).absolute()
        _HELD.append(held)
        try:
            yield
        finally:
            _HELD.remove(held)
            os.ftruncate(fd, 0)  # an empty file: no holder (the lock goes with the fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask (set back at once: only this thread creates run files)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def save_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save(obj)``, atomically; keep ``obj`` to tensors and plain Python values so that
    it loads with ``weights_only=True``."""

    def write(tmp: Path) -> None:
        # Serialised in memory first: torch's archive writer reports a full disk as a
        # RuntimeError ("unexpected pos"), the plain write below as OSError(ENOSPC). A buffer
        # also fixes the archive's internal name (not tmp's random one).
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        tmp.write_bytes(buffer.getbuffer())

    return atomic_write(path, write)


def load_torch(path: str | Path, what: str = "a file written by smoothstab", **kwargs: Any) -> Any:
    """``torch.load(path, weights_only=True)``; an unreadable file is one :class:`DamagedFile`
    line (a missing one stays ``FileNotFoundError``; a special file is refused unopened)."""
    check_regular(path)
    try:
        not_torch = torch_format_problem(path)
        if not_torch is not None:
            raise DamagedFile(path, f"cannot be read as {what} ({not_torch})")
        return torch.load(path, weights_only=True, **kwargs)
    except (FileNotFoundError, DamagedFile):
        raise
    except Exception as e:  # noqa: BLE001 - truncated, corrupt, code in the pickle: one message
        why = first_line(e)
        raise DamagedFile(path, f"cannot be read as {what} ({why})") from None


def torch_format_problem(path: str | Path) -> str | None:
    """Why ``path`` is no file ``torch.save`` writes, from its first bytes (a zip archive, or
    the older pickle format); ``None`` when it may be one. A directory or an unreadable file
    raises ``OSError``."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return None
    if not head:
        return "an empty file"
    return f"not a PyTorch file: it begins with {head!r}, not torch.save's zip archive"


def read_json(path: str | Path, what: str = "JSON") -> Any:
    """The JSON value in ``path``; an unreadable file is one :class:`DamagedFile` line."""
    check_regular(path)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        why = first_line(e)
        raise DamagedFile(path, f"cannot be read as {what} ({why})") from None


def first_line(e: BaseException, limit: int = 160) -> str:
    """The first sentence of the first non-empty line of an exception's message, at most
    ``limit`` characters (its type name if it has none)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    line = lines[0].split(". ", 1)[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def is_temporary(path: Path) -> bool:
    """A temporary file of :func:`atomic_write` (``.NAME.*.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(TMP_SUFFIX)


def remove_temporaries(root: str | Path) -> list[Path]:
    """Delete the temporary files that killed writers left under ``root``; the deleted paths.
    Call it only while no other process writes into ``root``."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = sorted(p for p in root.rglob(f".*{TMP_SUFFIX}") if p.is_file() and is_temporary(p))
    for p in found:
        p.unlink(missing_ok=True)
    return found
