"""MGD recalculation with the Dance model.

``srdose physics import FILE`` loads a unit's dated QA measurements
(:mod:`srdose.recalc.physicsfile`); ``srdose recalc`` recomputes the mean
glandular dose of every selected event (:mod:`srdose.recalc.engine`, pure
numpy over :mod:`srdose.physics.dance`) with a factor set
(:mod:`srdose.physics.factors`) and stores it beside the reported AGD
(:mod:`srdose.store.recalc`).
"""

from srdose.recalc.engine import Params, PhysicsFits, compute, prepare
from srdose.recalc.run import RunSummary, resolve_factor_set, run

__all__ = ["Params", "PhysicsFits", "RunSummary", "compute", "prepare", "resolve_factor_set", "run"]
