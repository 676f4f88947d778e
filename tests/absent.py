"""An environment in which an installed package cannot be imported: how the CLI behaves without an extra.

``env_without("torch", tmp_path)`` returns environment variables for a subprocess whose ``PYTHONPATH`` starts
with a folder holding a package of that name whose import fails exactly as a missing package does
(``ModuleNotFoundError`` naming it). Everything else in the subprocess is the real environment, and children
it starts (the bench worker) inherit the same path.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env_without(module: str, tmp_path: Path) -> dict[str, str]:
    shadow = tmp_path / f"without-{module}"
    pkg = shadow / module
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n", encoding="utf-8"
    )
    path = os.pathsep.join([str(shadow), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH", "")])])
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}
