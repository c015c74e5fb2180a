"""Candidate pairs of a block with bounds on their exact value: what the candidate steps of
:mod:`.reductions` keep and merge before the few exact distances are computed."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .bounds import ScoreBlock


@dataclass
class Candidates:
    """Pairs that may matter, with bounds ``lower <= value <= upper`` on their exact value.

    Stored compactly (they wait in worker memory until every block has reported): int32
    indices while they fit, float32 bounds rounded outward so they stay bounds.
    """

    row: np.ndarray
    col: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        self.row, self.col = _compact_index(self.row), _compact_index(self.col)
        self.lower = _round32(self.lower, -np.inf)
        self.upper = _round32(self.upper, np.inf)

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0), np.empty(0))

    @classmethod
    def concat(cls, parts: list[Candidates]) -> Candidates:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def __len__(self) -> int:
        return len(self.row)

    def take(self, mask: np.ndarray) -> Candidates:
        return Candidates(self.row[mask], self.col[mask], self.lower[mask], self.upper[mask])

    def shifted(self, rows: int = 0, cols: int = 0) -> Candidates:
        """The same pairs with ``rows`` and ``cols`` added to the indices (local -> global)."""
        return Candidates(
            self.row.astype(np.int64) + rows,
            self.col.astype(np.int64) + cols,
            self.lower,
            self.upper,
        )

    def transposed(self) -> Candidates:
        return Candidates(self.col, self.row, self.lower, self.upper)


def _compact_index(index: np.ndarray) -> np.ndarray:
    index = np.asarray(index)
    if index.dtype == np.int32 or (index.size and index.max() >= 2**31):
        return index
    return index.astype(np.int32)


def _round32(values: np.ndarray, toward: float) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype == np.float32:
        return values
    return np.nextafter(values.astype(np.float32), np.float32(toward))


def on_scores(block: ScoreBlock, rows: np.ndarray, cols: np.ndarray, by: str) -> Candidates:
    """Candidates for the given pairs, bounded with the row or the column envelope."""
    env, index = (block.rows, rows) if by == "row" else (block.cols, cols)
    s = block.score[rows, cols]
    return Candidates(rows, cols, env.lower(s, index), env.upper(s, index))
