"""Run Python in a fresh process where `hour_llava` cannot be imported, as on a machine without the package."""

import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path


def run_without_hour_llava(code: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Execute `code` with site-packages on the path but not the editable install of this repository.

    `-S` skips `.pth` files (an editable install is one), and the child first asserts that the package is really
    missing, so a test cannot pass by accident through the installed package.
    """
    prelude = textwrap.dedent(
        f"""
        import sys
        sys.path.extend({site.getsitepackages()!r})
        try:
            import hour_llava
        except ImportError:
            pass
        else:
            raise SystemExit("hour_llava is importable in the remote-code subprocess: " + hour_llava.__file__)
        """
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "HF_HOME": str(cwd / "hf_home"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    return subprocess.run(
        [sys.executable, "-S", "-c", prelude + textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
