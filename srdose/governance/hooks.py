"""What ingest does for governance and curation, between parse and store.

:class:`IngestHooks` is called by :class:`srdose.ingest.Ingestor` for every
parsed report:

* :meth:`~IngestHooks.before_store` -- while the report still holds the
  patient ID and name (they are pseudonymised by the store): mark test / QA
  phantom studies (``not_patient``) and add the ``infeasible:<rule>`` flags;
* :meth:`~IngestHooks.after_store` -- in the same transaction: keep the
  encrypted pseudonym -> patient ID mapping when re-identification is
  configured.

The command builds them from its settings with :meth:`IngestHooks.from_settings`
and hands them to the :class:`~srdose.ingest.Ingestor`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from srdose.config import Settings
from srdose.curation.infeasible import Rule, flag_report, rules_from_settings
from srdose.curation.notpatient import is_not_patient
from srdose.governance.reid import encrypt, load_or_create_key
from srdose.parse.records import DoseReport
from srdose.store import DoseStore, Outcome
from srdose.store import governance as G

log = logging.getLogger("srdose.governance")


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

    def __init__(
        self, not_patient_patterns: Iterable[str] = (), rules: Iterable[Rule] = (), reid_key: bytes | None = None
    ):
        self.not_patient_patterns = tuple(not_patient_patterns)
        self.rules = tuple(rules)
        self.reid_key = reid_key

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestHooks:
        """The steps ``settings`` ask for; creates the re-identification key file when one is named."""
        key_file = settings.governance.reidentification_key_file
        key = load_or_create_key(key_file) if key_file else None
        return cls(settings.curation.not_patient_patterns, rules_from_settings(settings), key)

    def before_store(self, report: DoseReport) -> None:
        """Mark a phantom study and flag infeasible values (identifiers still in clear here)."""
        st = report.study
        if is_not_patient(st.patient_id, st.patient_name, self.not_patient_patterns):
            st.not_patient = True
        if self.rules:
            flag_report(report, self.rules)

    def after_store(self, conn, store: DoseStore, report: DoseReport, outcome: Outcome) -> None:
        """Keep the encrypted ID of a newly seen pseudonym (re-identification enabled only)."""
        if self.reid_key is None or store.pseudonymiser is None or not report.study.patient_id:
            return
        pseudonym = store.pseudonymiser.patient(report.study.patient_id)
        if pseudonym and not G.has_reidentification(conn, pseudonym):
            G.add_reidentification(conn, pseudonym, *encrypt(self.reid_key, pseudonym, report.study.patient_id))
