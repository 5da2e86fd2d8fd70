"""What every refusal of issue 30 must show: a non-zero exit, one ``error:`` line naming the
file or option and the problem, no traceback, and every input byte-identical afterwards."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from refusal_data import runner

from unetkit.cli import app


def snapshot(root: Path) -> dict[Path, tuple[str, int]]:
    """``{path: (sha256, mtime_ns)}`` of every file under ``root``."""
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


class Refusal:
    """Runs a command in-process and checks the refusal contract."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, args: list, *names: str, code: int | None = None,
                 listed: bool = False) -> str:
        """Run ``unetkit *args``; assert it refused with one error line holding ``names``
        (rich never wraps when piped) and left every file under the test folder as it was.
        Returns that line. ``listed``: the names may be in the list of problems that follows
        the error line (training lists every error the data doctor found)."""
        before = snapshot(self.root)
        result = runner.invoke(app, [str(a) for a in args])
        output = result.output
        assert result.exit_code != 0, output
        if code is not None:
            assert result.exit_code == code, output
        assert "Traceback" not in output, output
        assert not isinstance(result.exception, Exception) or \
            isinstance(result.exception, SystemExit), repr(result.exception)
        lines = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(lines) >= 1, output
        if listed:
            lines = [output[output.index("error:"):]]
        line = next((ln for ln in lines if all(n in ln for n in names)), None)
        assert line is not None, f"no error line names {names}: {output}"
        changed = {p for p, v in snapshot(self.root).items() if before.get(p, v) != v}
        assert not changed, f"inputs modified: {changed}"
        return line


@pytest.fixture
def refused(tmp_path: Path) -> Refusal:
    """``refused(args, *names, code=None) -> the error line``: see ``Refusal``."""
    return Refusal(tmp_path)
