"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class DistillrecError(Exception):
    """An error caused by the user's input or environment, not by a bug in distillrec."""


class DataError(DistillrecError):
    """Bad input data. Names the file, the line and field, and what was expected."""

    def __init__(self, path, problem: str, *, line: int | None = None, field: str | None = None,
                 expected: str | None = None):
        self.path, self.line, self.field, self.problem, self.expected = path, line, field, problem, expected
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        message = f"{where}: {problem}"
        if expected:
            message += f" (expected {expected})"
        super().__init__(message)


class ArtifactError(DistillrecError):
    """A saved artifact is missing, truncated or does not match its manifest."""
