"""Data curation: the values and names reports can trust.

* :mod:`.infeasible` -- domain limits in one readable table
  (``infeasible_rules.csv``); each rule an event breaks becomes the flag
  ``infeasible:<rule>`` in ``events.flags`` (at ingest, or ``srdose check
  --recheck``). Flagged events stay in the database; reports leave them out of
  DRL statistics and count them.
* :mod:`.notpatient` -- test and QA phantom studies recognised from patient ID
  or name at ingest, before pseudonymisation (``studies.not_patient``).
* :mod:`.views` -- standard view codes (CC, MLO, ML, LM, XCCL, ...).
* :mod:`.protocols` -- free-text protocol names to a small standard set
  (``protocols.csv``, editable; applied at report time).
* unit display names and aliases: :mod:`srdose.store.governance` and
  ``srdose units``.
"""
