"""Small helpers shared across the package."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Iterator

from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike


def _split_suffix(name: str) -> tuple[str, str]:
    """Split ``data.nii.gz`` into (``data``, ``.nii.gz``) so temporary names keep the real extension."""
    for double in (".nii.gz", ".tar.gz", ".weights.h5"):
        if name.endswith(double):
            return name[: -len(double)], double
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if dot and stem else (name, "")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(target: PathLike) -> list[Path]:
    """Delete temporary files that an earlier, killed writer of ``target`` left beside it.

    :func:`atomic_path` names its temporary ``.{stem}.{host}-{pid}.{random}.tmp{suffix}``; one whose
    process is gone on this host can never be finished, so the next writer of the same target removes
    it. Temporaries of live processes and of other hosts (a shared file system) are left alone.

    Returns
    -------
    The paths removed.
    """
    target = Path(target)
    stem, suffix = _split_suffix(target.name)
    pattern = re.compile(rf"^\.{re.escape(stem)}\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[^.]+\.tmp{re.escape(suffix)}$")
    removed = []
    host = _host()
    try:
        candidates = list(target.parent.glob(f".{glob_escape(stem)}.*.tmp{glob_escape(suffix)}"))
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.match(candidate.name)
        if match and match["host"] == host and not _process_alive(int(match["pid"])):
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def glob_escape(text: str) -> str:
    """Escape ``*?[`` so that ``text`` matches only itself in :meth:`pathlib.Path.glob`."""
    return re.sub(r"([*?[])", r"[\1]", text)


class _Interrupt:
    """Set by the commands' Ctrl-C handler; a KeyboardInterrupt that library code swallows still counts."""

    requested = False


def interrupt_requested() -> bool:
    """True once Ctrl-C was pressed in a command (see ``dmri_rcnn.cli._command.run_command``)."""
    return _Interrupt.requested


def request_interrupt() -> None:
    """Record that Ctrl-C was pressed: :func:`interrupt_requested` is True from now on."""
    _Interrupt.requested = True


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the target's extension (writers such as nibabel pick the format from it),
    so a crash or an exception leaves neither a half-written target nor the temporary file behind. A
    process killed outright (SIGKILL) cannot clean up; its temporary names the host and process, and the
    next writer of the same target removes it (:func:`remove_stale_temporaries`).

    Raises
    ------
    InputError
        When the target's folder cannot be created or written, naming the target (not the temporary).
    """
    target = Path(path)
    stem, suffix = _split_suffix(target.name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.{_host()}-{os.getpid()}.", suffix=f".tmp{suffix}", dir=target.parent)
    except OSError as err:
        raise InputError(f"{target}: cannot write there ({err.strerror or err})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates the file owner-only; give the result the mode a plain open() would (umask applied)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        if interrupt_requested():  # never commit an output after Ctrl-C, even if the interrupt was swallowed
            raise KeyboardInterrupt
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.filename is not None and Path(err.filename).name == tmp.name:
            # Report the file the user asked for, never the temporary name they did not give.
            raise InputError(f"{target}: cannot write it ({err.strerror or err})") from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(data, path: PathLike) -> None:
    """Write ``data`` as indented JSON (one trailing newline), atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
