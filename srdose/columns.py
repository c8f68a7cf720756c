"""A text column as a code per row into its values: how a range of a million events' texts
(dates, target and filter names) travels from a bulk read to the numpy code that groups them,
without a Python string per row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CodedColumn:
    """``values[codes[i]]`` is row ``i``'s text (None: NULL).

    ``values`` may list a text more than once (pieces of a read coded on their own);
    :meth:`distinct` gives each text one code.
    """

    codes: np.ndarray
    values: list

    @classmethod
    def of(cls, texts: list) -> CodedColumn:
        """A list of texts (or of other values that can be dict keys), coded."""
        table = {text: k for k, text in enumerate(dict.fromkeys(texts))}
        return cls(np.fromiter(map(table.__getitem__, texts), dtype=np.int64, count=len(texts)), list(table))

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, rows: slice | np.ndarray) -> CodedColumn:
        """The rows of a slice, or at an array of positions."""
        return CodedColumn(self.codes[rows], self.values)

    def tolist(self) -> list:
        values = self.values
        return [values[c] for c in self.codes.tolist()]

    def distinct(self) -> tuple[np.ndarray, list]:
        """A code per row into the distinct texts (equal texts, equal codes), and those texts."""
        table: dict = {}
        renumber = np.array([table.setdefault(v, len(table)) for v in self.values], dtype=np.int64)
        return (renumber[self.codes] if len(self.values) else self.codes.astype(np.int64)), list(table)

    def equals(self, text: str) -> np.ndarray:
        """Which rows hold ``text``."""
        hit = np.array([v == text for v in self.values], dtype=bool)
        return hit[self.codes] if len(self.values) else np.zeros(len(self.codes), dtype=bool)
