"""Store: the only part of srdose that knows SQL.

:class:`DoseStore` opens a database by SQLAlchemy URL (SQLite by default,
PostgreSQL for a region), keeps its schema current with Alembic, and writes
parsed :class:`~srdose.parse.records.DoseReport` objects with the rules that
make ingest safe to repeat:

* the same SOP instance twice changes nothing;
* a later RDSR for a study whose events are a superset of an earlier one's
  replaces it (the earlier is kept as a superseded source object);
* an MG image whose exposure an RDSR already reports adds no event, and an
  RDSR removes the image-derived events it covers: the RDSR wins.
"""

from srdose.store.database import DoseStore, Outcome, upgrade

__all__ = ["DoseStore", "Outcome", "upgrade"]
