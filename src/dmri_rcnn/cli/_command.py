"""What every command-line tool of the package shares at its boundary.

- :func:`run_command`: one exit-status convention (``dmri_rcnn.errors.EXIT_*``): bad input prints one line
  ``PROG: error: ...`` and exits 2 (as argparse does for a bad flag), Ctrl-C prints one line and exits 130,
  an internal error (a bug) keeps Python's traceback and exit status 1.
- :func:`quiet_tensorflow`: TensorFlow's start-up notices off unless the user asked for them.
- :func:`check_output`: the output path is checked before any work: extension, folder, writable, and not
  the same file as any input (also through a symbolic or hard link).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from dmri_rcnn.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, InputError
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import interrupt_requested, request_interrupt


#: TensorFlow's start-up notices: printed by its C++ libraries while they load, whatever
#: TF_CPP_MIN_LOG_LEVEL says (TensorFlow 2.21 logs them through absl before logging is set up).
_TENSORFLOW_NOTICES = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "could not find cuda drivers",
    "Could not find cuda drivers",
    "TF-TRT Warning",
)


def quiet_tensorflow() -> None:
    """Ask TensorFlow for errors only (C++ and absl logging); must run before TensorFlow is imported.

    A value the user set in ``TF_CPP_MIN_LOG_LEVEL`` wins, and then :func:`import_tensorflow_quietly`
    hides nothing either.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        # lazy: absl comes with TensorFlow, which may be absent
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl comes with TensorFlow; without it there is nothing to quiet
        pass


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its known start-up notices removed from stderr; other lines pass through.

    The notices come from C++ code writing to file descriptor 2 while the libraries load, so Python's
    ``sys.stderr`` cannot filter them: the descriptor is pointed at a temporary file during the import
    and whatever is not a known notice is written back. Nothing happens if TensorFlow is already
    imported, or if the user set ``TF_CPP_MIN_LOG_LEVEL`` below 2 to see everything.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") < "2":
        import tensorflow  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = [line for line in text.splitlines() if line.strip() and not any(n in line for n in _TENSORFLOW_NOTICES)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def note(prog: str, message: str) -> None:
    """One informational or warning line on stderr, prefixed with the command's name."""
    print(f"{prog}: {message}", file=sys.stderr)


def run_command(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None, prog: str) -> int:
    """Run ``main(argv)`` under the package's exit-status convention; return the status.

    ``InputError`` and file-system errors (``OSError``) are the user's to fix: one line, status 2.
    ``KeyboardInterrupt``: one line, status 130; writers go through atomic temporary files, so nothing
    is left behind. Any other exception is a bug and propagates with its traceback (status 1).
    """
    def on_ctrl_c(signum, frame):
        request_interrupt()  # remembered even if library code catches the KeyboardInterrupt below
        raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_ctrl_c) if in_main_thread else None
    try:
        status = main(argv)
        if interrupt_requested():
            raise KeyboardInterrupt
        return status
    except InputError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no output written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        if in_main_thread and previous is not None:
            signal.signal(signal.SIGINT, previous)


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist
        return os.path.realpath(first) == os.path.realpath(second)


def check_output(
    path: PathLike,
    flag: str,
    suffixes: Sequence[str],
    inputs: Mapping[str, PathLike | None] | None = None,
    prog: str | None = None,
) -> Path:
    """Check an output path before any work is done; return it as a Path.

    Parameters
    ----------
    path : the output file the user named.
    flag : its command-line flag, for messages (``-dmri_out``).
    suffixes : accepted endings (``(".nii", ".nii.gz")``).
    inputs : flag -> input path of every input file; the output must not be any of them, also not
        through a symbolic or hard link (writing it would destroy the input).
    prog : command name; if given, replacing an existing unrelated output is announced on stderr.

    Raises
    ------
    InputError
        Wrong extension, a directory, a folder that does not exist or is a file, a folder that cannot
        be written, or the same file as an input.
    """
    target = Path(path)
    if not any(target.name.endswith(suffix) for suffix in suffixes):
        raise InputError(f"{flag} {target}: expected a file name ending in {' or '.join(suffixes)}")
    if target.is_dir():
        raise InputError(f"{flag} {target}: is a directory; expected a file path")
    for input_flag, input_path in (inputs or {}).items():
        if input_path is not None and _same_file(target, Path(input_path)):
            raise InputError(
                f"{flag} {target} is the same file as {input_flag} {input_path}; writing it would destroy "
                "the input, choose another output name"
            )
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.exists():
        raise InputError(f"{flag} {target}: folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{flag} {target}: {folder} is a file, not a folder")
    try:  # os.access says yes to root even on a read-only file system: really try
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise InputError(f"{flag} {target}: cannot write in folder {folder} ({err.strerror or err})") from None
    if target.exists() and prog is not None:
        note(prog, f"note: {flag} {target} exists and will be replaced")
    return target
