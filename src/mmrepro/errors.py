"""Errors the stage entry points turn into one line (mmrepro.cli); kept free of heavy imports."""


class TrackingError(RuntimeError):
    """MLflow logging failed; the message is one line saying what was kept and how to log it later."""
