"""What ingest does for governance and curation, between parse and store.

:class:`IngestHooks` is called by :class:`srdose.ingest.Ingestor` for every
parsed report:

* :meth:`~IngestHooks.before_store` -- while the report still holds the
  patient ID and name (they are pseudonymised by the store): mark test / QA
  phantom studies (``not_patient``) and add the ``infeasible:<rule>`` flags;
* :meth:`~IngestHooks.after_store` -- in the same transaction: keep the
  encrypted pseudonym -> patient ID mapping when re-identification is
  configured.

Settings come from the command being run (``srdose --config ...``), else
from :func:`srdose.config.load` (environment, ./srdose.toml, ...).
"""

from __future__ import annotations

import logging
from typing import Optional

log = logging.getLogger("srdose.governance")


def current_settings():
    """The settings of the running ``srdose`` command, else the loaded configuration."""
    try:
        import click

        ctx = click.get_current_context(silent=True)
        obj = ctx.find_root().obj if ctx is not None else None
        settings = getattr(obj, "settings", None)
        if settings is not None:
            return settings
    except Exception:  # not under click
        pass
    from srdose.config import load

    return load()


class IngestHooks:
    """Governance and curation steps of ingest, configured once.

    Parameters
    ----------
    not_patient_patterns
        Words / ``re:`` patterns marking test and phantom studies.
    rules
        Infeasible-value rules (:func:`srdose.curation.infeasible.load_rules`).
    reid_key
        AES-256 key for the re-identification mapping; None: no mapping kept.
    """

    def __init__(self, not_patient_patterns=(), rules=(), reid_key: Optional[bytes] = None):
        self.not_patient_patterns = tuple(not_patient_patterns)
        self.rules = tuple(rules)
        self.reid_key = reid_key

    @classmethod
    def from_settings(cls, settings) -> "IngestHooks":
        from srdose.curation.infeasible import rules_from_settings

        key = None
        key_file = settings["governance"]["reidentification_key_file"]
        if key_file:
            from srdose.governance.reid import load_or_create_key

            key = load_or_create_key(key_file)
        return cls(settings["curation"]["not_patient_patterns"], rules_from_settings(settings), key)

    @classmethod
    def current(cls) -> "IngestHooks":
        """Hooks of the settings in force (see :func:`current_settings`)."""
        return cls.from_settings(current_settings())

    def before_store(self, report) -> None:
        """Mark a phantom study and flag infeasible values (identifiers still in clear here)."""
        from srdose.curation.infeasible import flag_report
        from srdose.curation.notpatient import is_not_patient

        st = report.study
        if is_not_patient(st.patient_id, st.patient_name, self.not_patient_patterns):
            st.not_patient = True
        if self.rules:
            flag_report(report, self.rules)

    def after_store(self, conn, store, report, outcome) -> None:
        """Keep the encrypted ID of a newly seen pseudonym (re-identification enabled only)."""
        if self.reid_key is None or store.pseudonymiser is None or not report.study.patient_id:
            return
        from srdose.governance.reid import encrypt
        from srdose.store import governance as G

        pseudonym = store.pseudonymiser.patient(report.study.patient_id)
        if pseudonym and not G.has_reidentification(conn, pseudonym):
            G.add_reidentification(conn, pseudonym, *encrypt(self.reid_key, pseudonym, report.study.patient_id))
