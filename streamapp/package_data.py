"""Files the commands read at run time, shipped inside the package (``setup.cfg`` package data).

They are found with :mod:`importlib.resources`, so an installed wheel (or the
compose image, built with ``pip install .``) reads the same files as a checkout:
``sql/`` (the migrations), ``captures/`` (the simulator's recordings) and
``stack/pom.xml`` (the Kafka jars Maven fetches) and ``stack/prometheus-rules.yml`` (the alert rules).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from streamapp.errors import StreamappError


def path(*parts: str) -> Path:
    """The packaged file or directory ``parts`` (e.g. ``"sql"``) on disk; missing is an error.

    A path on disk, not just a readable resource, because child processes (Maven, the
    simulator) are given it; pip installs packages as files, so it is one.
    """
    found = resources.files("streamapp").joinpath(*parts)
    if not isinstance(found, Path):
        raise StreamappError(f"streamapp's {'/'.join(parts)} is not on a file system ({found!r}): "
                             "install streamapp as files (pip install .), not zipped")
    if not found.exists():
        raise StreamappError(f"{found} is missing from the installed streamapp: its package data is incomplete; "
                             f"reinstall it (pip install .) from a checkout with streamapp/{'/'.join(parts)}")
    return found
