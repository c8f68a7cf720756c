"""The domain's vocabularies, one named set each.

Every value is the exact string srdose writes to the database, the quarantine notes and the exports,
so a member can stand wherever the string did (``Acquisition.DBT == "DBT"``); ``str()`` and
f-strings give the value, never ``"Acquisition.DBT"``. Where a value leaves for a database column
or a file, write ``member.value``: some drivers test the exact type.
"""

from __future__ import annotations

import enum


class _Vocab(str, enum.Enum):
    """A str-Enum that prints as its value."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class SourceKind(_Vocab):
    """What kind of DICOM object a dose report was read from."""

    RDSR = "rdsr"  # a radiation dose structured report (PS3.16 TID 10001)
    IMAGE = "image"  # an MG image header (its exposure attributes)


class Acquisition(_Vocab):
    """How an irradiation event was acquired."""

    TWO_D = "2D"  # stationary projection
    DBT = "DBT"  # digital breast tomosynthesis (rotational)


class Method(_Vocab):
    """Where the air kerma of a recalculated MGD came from."""

    MEASURED = "measured"  # the unit's physics set: fitted output x mAs
    RDSR = "rdsr"  # the RDSR's own entrance exposure, moved to the breast surface


class Outcome(_Vocab):
    """What ingesting one dataset did."""

    INGESTED = "ingested"
    DUPLICATE = "duplicate"  # this SOP instance was already held
    REPLACED = "replaced"  # superset of an earlier RDSR of the study, which it replaced
    SUPERSEDED = "superseded"  # an earlier RDSR of the study already holds all its events
    COVERED = "covered"  # MG image whose exposure an RDSR of the study already reports
    # this SOP instance UID is held with other content: the first is kept, nothing written
    CONFLICT = "conflict"
    # the ingest's own outcomes; the store never returns these
    QUARANTINED = "quarantined"  # in the quarantine folder, with its reason
    UNREADABLE = "unreadable"  # the file could not be read
    MISSING = "missing"  # gone from the spool before its turn (another process took it)


#: Outcomes that wrote new events.
NEW_EVENTS = (Outcome.INGESTED, Outcome.REPLACED)


class RefusalKind(_Vocab):
    """Why a dataset was quarantined (the ``kind`` of its note and database row)."""

    REFUSED = "refused"  # refused, no finer category
    NOT_DICOM = "not_dicom"
    MALFORMED = "malformed"  # malformed or truncated
    UNSUPPORTED = "unsupported"  # DICOM, but not a dose object srdose reads
    NOT_DOSE_REPORT = "not_dose_report"  # an SR that is not a dose report
    TOO_LARGE = "too_large"  # beyond [listener] max_dataset_mb once decoded
    ERROR = "error"  # srdose failed on it (a bug)
    STORE_ERROR = "store_error"  # the database refused it
    CONFLICT = "conflict"  # same SOP Instance UID as a stored object, different content
    UNREADABLE = "unreadable"  # the file could not be read


class StoreStatus(enum.IntEnum):
    """The C-STORE statuses srdose answers (PS3.4 Annex B.2.3, PS3.7 Annex C.4.2)."""

    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources (A7xx)
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900  # Error: Data Set Does Not Match SOP Class (A9xx)
    CANNOT_UNDERSTAND = 0xC000  # Error: Cannot Understand (Cxxx)
    # srdose's own codes in the Cxxx range, one per refusal a sender may want to tell apart
    NOT_A_DOSE_OBJECT = 0xC001  # understood, but not a dose object srdose reads
    NOT_A_DOSE_REPORT = 0xC002  # an SR that is not a dose report
    PARSER_FAILED = 0xC0FF  # srdose failed on the dataset


class RetrieveStatus(enum.IntEnum):
    """The C-FIND, C-MOVE and C-GET statuses srdose acts on (PS3.4 Annex C.4)."""

    SUCCESS = 0x0000
    PENDING = 0xFF00
    PENDING_OPTIONAL_KEYS = 0xFF01  # C-FIND: matches continue, optional keys not supported
