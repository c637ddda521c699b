"""What one playbook reads, with why each file is an input, and the notes said once when building."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PlayInputs:
    """What one playbook (with everything it pulls in) reads."""

    files: dict[Path, str] = field(default_factory=dict)  # file -> why it is an input
    whole: dict[Path, list[str]] = field(default_factory=dict)  # folder taken whole -> the references
    other_notes: list[str] = field(default_factory=list)
    tools: dict[str, str] = field(default_factory=dict)  # bundled collections used: not content

    def add(self, path: Path, why: str) -> None:
        self.files.setdefault(path, why)

    def note(self, text: str) -> None:
        if text not in self.other_notes:
            self.other_notes.append(text)

    def notes(self, root: Path) -> list[str]:
        """One line per folder taken whole, naming the first reference that made it so."""
        out = list(self.other_notes)
        for folder, refs in self.whole.items():
            more = f" and {len(refs) - 1} more" if len(refs) > 1 else ""
            shown = folder.relative_to(root) if folder.is_relative_to(root) else folder
            out.append(f"{shown}/ is an input as a whole: {refs[0]} is only known when the play runs{more}")
        return out
