"""Send a workflow step's output to its Snakemake log file, and end a failed step with one line there."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterable, Mapping

from dmri_rcnn.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, InputError

from dmri_rcnn.study.layout import SUBJECT_FILE_NAMES, subject_files
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import request_interrupt


def log_to_file(path: PathLike) -> logging.Logger:
    """Route this process's logging, stdout and stderr (including TensorFlow's C++ messages) to ``path``.

    Snakemake shows the log of a failed job (``--show-failed-logs``), so tracebacks end up there too.
    Returns the root logger, configured at INFO level with timestamps.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handle = open(path, "a", buffering=1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    sys.stdout = sys.stderr = handle
    logging.basicConfig(stream=handle, level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)
    return logging.getLogger()


def describe_failure(
    message: str,
    rule: str,
    subject: str | None = None,
    inputs: Iterable[str] = (),
    subject_files: Mapping[str, str] | None = None,
) -> str:
    """The one line a workflow step's bad input ends with: the subject, the message, the file.

    Parameters
    ----------
    message : the ``InputError``'s text (usually naming a file).
    rule : the rule's name.
    subject : the job's ``{subject}`` wildcard, if it has one.
    inputs : the job's input files, named when the message names none of them.
    subject_files : the subject's own files keyed dmri/bvals/bvecs/mask: a message about a cropped copy
        (``results/preprocessed/{subject}/bvals``) also names the file it was cut from.

    Returns
    -------
    ``subject te1: <message>`` (with ``rule evaluate, reading ...`` when no input is named).
    """
    message = " ".join(str(message).split())
    line = message
    inputs = [str(path) for path in inputs]
    if not any(path in message for path in inputs) and inputs:
        line += f" (rule {rule}, reading {', '.join(inputs)})"
    if subject is not None:
        for key, name in SUBJECT_FILE_NAMES.items():
            copy = f"results/preprocessed/{subject}/{name}"
            if subject_files and key in subject_files and copy in message:
                line += f"; {copy} is cropped from {subject_files[key]}"
        if not line.startswith(f"subject {subject}:"):
            line = f"subject {subject}: {line}"
    return line


def start_step(smk) -> logging.Logger:
    """Start a workflow script: :func:`log_to_file`, and bad input or Ctrl-C end it with one line there.

    ``InputError`` ends the job (status 2) with :func:`describe_failure`'s line naming the subject and
    the file; Ctrl-C (status 130) with ``{rule}: interrupted``, as the package's commands do. Any other
    exception is a bug and keeps its traceback. Snakemake shows the log of a failed job.

    Parameters
    ----------
    smk : the ``snakemake`` object of the script.
    """
    logger = log_to_file(smk.log[0])
    subject = dict(smk.wildcards.items()).get("subject")
    rule = smk.rule

    def on_ctrl_c(signum, frame):
        request_interrupt()  # an output's atomic rename is refused even if library code swallows it
        raise KeyboardInterrupt

    def one_line(kind, error, traceback):
        if issubclass(kind, KeyboardInterrupt):
            line, status = f"{rule}: interrupted; no output written", EXIT_INTERRUPTED
        elif issubclass(kind, InputError):
            try:
                own_files = subject_files(smk.config, subject) if subject is not None else None
            except (KeyError, TypeError):
                own_files = None
            line = describe_failure(str(error), rule, subject, list(smk.input), own_files)
            status = EXIT_BAD_INPUT
        else:
            sys.__excepthook__(kind, error, traceback)
            return
        logger.error(line)
        logging.shutdown()
        sys.stderr.flush()
        os._exit(status)  # an exception hook cannot set the status otherwise

    signal.signal(signal.SIGINT, on_ctrl_c)
    sys.excepthook = one_line
    return logger
