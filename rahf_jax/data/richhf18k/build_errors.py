"""Errors a user can cause in a richhf18k build: one line that names the thing and the fix.

`BuildInputError` subclasses keep the standard types callers catch (FileNotFoundError,
ValueError). `install_excepthook()` makes an uncaught BuildInputError print only its line
(`tfds build` would otherwise end with a traceback); every other exception keeps Python's
usual report.
"""

import sys


class BuildInputError(Exception):
  """A problem with the build's inputs that the user fixes; the message is one line."""


class MissingInputError(BuildInputError, FileNotFoundError):
  """An input file or folder is absent (or cannot be fetched)."""


class DamagedInputError(BuildInputError, ValueError):
  """An input file is present but unreadable (truncated or corrupt)."""


class SourceLayoutError(BuildInputError, ValueError):
  """A source table lacks a column the build needs, or the column option is wrong."""


def one_line(text: object) -> str:
  """`text` with its line breaks and runs of spaces folded to single spaces."""
  return " ".join(str(text).split())


_previous_excepthook = None


def _excepthook(exc_type, exc, tb):
  if isinstance(exc, BuildInputError):
    print(f"{exc_type.__name__}: {exc}", file=sys.stderr)
    return
  (_previous_excepthook or sys.__excepthook__)(exc_type, exc, tb)


def install_excepthook() -> None:
  """Prints an uncaught BuildInputError as its one line, without a traceback (idempotent)."""
  global _previous_excepthook
  if sys.excepthook is not _excepthook:
    _previous_excepthook = sys.excepthook
    sys.excepthook = _excepthook
