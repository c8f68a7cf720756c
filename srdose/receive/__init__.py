"""Receive: the SR listener (Storage SCP) and retrieval from a PACS.

Prospective: :class:`~srdose.receive.scp.Listener` accepts C-STORE, spools
each dataset durably, answers, and an :class:`~srdose.receive.worker.IngestWorker`
ingests it. Retrospective: :mod:`srdose.receive.retrieve` finds dose SRs on
a PACS with C-FIND and pulls them with C-MOVE or C-GET through the same
spool and worker.
"""
