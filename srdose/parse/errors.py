"""Why a dataset was refused. Each reason says what it is and what to do."""


class Refused(Exception):
    """A dataset srdose will not ingest; it goes to quarantine with this reason.

    Attributes
    ----------
    kind
        A short machine-readable category (``not_dicom``, ``unsupported``, ...),
        used for the summary counts and the quarantine JSON.
    """

    kind = "refused"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NotDicom(Refused):
    kind = "not_dicom"


class Malformed(Refused):
    kind = "malformed"


class Unsupported(Refused):
    kind = "unsupported"


class NotADoseReport(Refused):
    kind = "not_dose_report"
