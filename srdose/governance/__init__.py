"""Information governance: opt-out, research exports, re-identification,
retention and the audit trail.

* :mod:`.optout` -- ``srdose optout import FILE``: the national data opt-out list,
  hashed with the site key on import (never stored in clear);
* :mod:`.research` -- ``srdose export research --project NAME``: de-identified
  extract with a second, per-project pseudonym, per-patient date shifts, age
  bands, no free text unless allow-listed, unit labels for serials, a manifest;
* :mod:`.reid` -- optional AES-GCM mapping pseudonym -> patient ID, key outside
  the database, read only by ``srdose reidentify`` (audited);
* :mod:`.retention` -- ``srdose purge --before DATE``;
* :mod:`.audit` -- the audit trail (``srdose audit``);
* :mod:`.hooks` -- what ingest does for governance and curation.

SQL lives in :mod:`srdose.store.governance`.
"""
