"""Errors the stage entry points turn into one line (mmrepro.cli); kept free of heavy imports."""


class TrackingError(RuntimeError):
    """MLflow logging failed; the message is one line saying what was kept and how to log it later."""


class DiskFullError(OSError):
    """A file could not be written for want of disk space; the message names the file, what it needed and
    what was free."""
