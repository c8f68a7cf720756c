"""Why a dataset was refused. Each reason says what it is and what to do."""

from srdose.vocab import RefusalKind


class Refused(Exception):
    """A dataset srdose will not ingest; it goes to quarantine with this reason.

    Attributes
    ----------
    kind
        A short machine-readable category (``not_dicom``, ``unsupported``, ...),
        used for the summary counts and the quarantine JSON.
    """

    kind: str = RefusalKind.REFUSED.value

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NotDicom(Refused):
    kind = RefusalKind.NOT_DICOM.value


class Malformed(Refused):
    kind = RefusalKind.MALFORMED.value


class Unsupported(Refused):
    kind = RefusalKind.UNSUPPORTED.value


class NotADoseReport(Refused):
    kind = RefusalKind.NOT_DOSE_REPORT.value
