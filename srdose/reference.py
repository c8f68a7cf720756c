"""Reference levels shipped with srdose (``srdose/data/reference_levels.json``), with their status.

Read by the reports and by the web app's unit charts alike. Nothing here is a national DRL:
srdose ships none (its value and source come from ``[report] national_drl_mgy`` / ``national_drl_source``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def reference_levels() -> dict:
    return json.loads(resources.files("srdose").joinpath("data/reference_levels.json").read_text("utf-8"))


def eu_levels() -> dict:
    """European Guidelines acceptable / achievable MGD: rows with ``thickness_mm`` (equivalent
    breast), ``acceptable_mgy``, ``achievable_mgy``, plus ``label``, ``status``, ``source``."""
    eu = dict(reference_levels()["eu_acceptable_achievable_mgd"])
    eu["rows"] = [dict(r, thickness_mm=r["equivalent_breast_cm"] * 10.0) for r in eu["rows"]]
    return eu


def survey_reference() -> dict:
    return reference_levels()["survey_reference_figures"]
