"""Loaders for the data sets shipped in the repository's ``data/`` folder (see its README)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def old_faithful() -> dict[str, np.ndarray]:
    """Old Faithful's 272 eruptions: ``{"eruptions": minutes, "waiting": minutes}``.

    Examples
    --------
    >>> data = old_faithful()
    >>> data["eruptions"].shape, round(float(data["eruptions"].mean()), 6)
    ((272,), 3.487783)
    """
    path = DATA_DIR / "old_faithful.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: emlib.datasets reads the data/ folder of the course "
            "repository, so install emlib from a checkout (pip install -e .)"
        )
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    return {"eruptions": table[:, 0], "waiting": table[:, 1]}
