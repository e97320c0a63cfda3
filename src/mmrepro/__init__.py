"""mmrepro: a reproducible benchmark harness for multimodal and speech papers.

Every path the harness reads or writes is relative to the working directory, which DVC sets to
the repository root when it runs a stage.
"""

__version__ = "0.1.0"
