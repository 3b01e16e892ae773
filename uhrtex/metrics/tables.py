"""Result tables as markdown + CSV (and plain rows for a W&B table), with mean ± std cells.

A `Table` has labelled rows and columns; each cell is a float or a (mean, std, n) triple from
`evaluate.mean_std`. Markdown shows `mean ± std` when n > 1 and `show_std`, `-` for a missing cell;
the CSV is wide and numeric (`<column>` and `<column> std`, plus `n`) so it can be re-read without parsing.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Cell = float | tuple[float, float, int] | None


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    digits: int = 3


@dataclass
class Table:
    title: str
    row_header: str
    columns: Sequence[Column]
    rows: list[tuple[str, Mapping[str, Cell]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    show_std: bool = True

    def add(self, label: str, cells: Mapping[str, Cell]) -> None:
        self.rows.append((label, cells))

    @staticmethod
    def _split(cell: Cell) -> tuple[float, float, int]:
        if cell is None:
            return math.nan, math.nan, 0
        if isinstance(cell, tuple):
            return float(cell[0]), float(cell[1]), int(cell[2])
        return float(cell), math.nan, 1

    def _fmt(self, cell: Cell, digits: int) -> str:
        mean, std, n = self._split(cell)
        if n == 0 or math.isnan(mean):
            return "-"
        text = f"{mean:.{digits}f}"
        if self.show_std and n > 1 and not math.isnan(std):
            text += f" ± {std:.{digits}f}"
        return text

    def markdown(self) -> str:
        head = [self.row_header] + [c.header for c in self.columns]
        lines = [f"**{self.title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, cells in self.rows:
            lines.append("| " + " | ".join([label] + [self._fmt(cells.get(c.key), c.digits) for c in self.columns]) + " |")
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([self.row_header] + [h for c in self.columns for h in (c.header, f"{c.header} std")] + ["n"])
        for label, cells in self.rows:
            values, counts = [], []
            for c in self.columns:
                mean, std, n = self._split(cells.get(c.key))
                values += ["" if math.isnan(mean) else repr(mean), "" if math.isnan(std) else repr(std)]
                counts.append(n)
            writer.writerow([label] + values + [max(counts, default=0)])
        return buf.getvalue()

    def records(self) -> tuple[list[str], list[list]]:
        """(columns, data) for `wandb.Table`: label + one formatted string per cell (keeps ± std)."""
        cols = [self.row_header] + [c.header for c in self.columns]
        data = [[label] + [self._fmt(cells.get(c.key), c.digits) for c in self.columns] for label, cells in self.rows]
        return cols, data

    def write(self, stem: Path) -> tuple[Path, Path]:
        """Write `<stem>.md` and `<stem>.csv` (atomically); return both paths."""
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        out = []
        for suffix, text in ((".md", self.markdown()), (".csv", self.csv())):
            path = stem.with_suffix(suffix)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text)
            tmp.replace(path)
            out.append(path)
        return out[0], out[1]


def read_csv(path: Path) -> dict[str, dict[str, float]]:
    """Read back a table CSV: {row label: {header: mean}} (std columns and n kept under their headers)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        label = reader.fieldnames[0]
        return {row[label]: {k: float(v) for k, v in row.items() if k != label and v != ""} for row in reader}
