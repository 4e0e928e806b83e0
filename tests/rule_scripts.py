"""Running a rule script as Snakemake does, for tests of what a failing rule leaves behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RUNNER = """
import json, sys
from types import SimpleNamespace

class Files(list):
    def __init__(self, spec):
        named = spec if isinstance(spec, dict) else {}
        flat = []
        for value in (named.values() if named else spec):
            flat += value if isinstance(value, list) else [value]
        super().__init__(flat)
        self.__dict__.update(named)

script, spec = sys.argv[1], json.loads(sys.argv[2])
snakemake = SimpleNamespace(
    input=Files(spec["input"]), output=Files(spec["output"]), log=Files(spec["log"]),
    params=SimpleNamespace(**spec["params"]), wildcards=SimpleNamespace(**spec["wildcards"]),
    threads=1, scriptdir=str(__import__("pathlib").Path(script).parent),
)
exec(compile(open(script).read(), script, "exec"), {"snakemake": snakemake, "__name__": "__main__"})
"""


def run_rule(tmp_path, rule, *, input=None, output=None, params=None, wildcards=None):
    """Run scripts/<rule>.py as Snakemake would; return (process, log text)."""
    log = tmp_path / "logs" / f"{rule}.log"
    spec = {
        "input": input or {},
        "output": {k: str(v) for k, v in (output or {}).items()},
        "log": [str(log)],
        "params": params or {},
        "wildcards": wildcards or {},
    }
    script = REPO / "scripts" / f"{rule}.py"
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(script), json.dumps(spec, default=str)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    return result, log.read_text() if log.exists() else ""


def assert_refused(result, log: str, *words: str, outputs=()) -> str:
    """Exit 1, one ERROR line in the log naming ``words``, no traceback, no outputs."""
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log
    assert all(word in errors[0] for word in words), errors[0]
    assert "Traceback" not in log + result.stderr + result.stdout
    for path in outputs:
        assert not Path(path).exists(), f"{path} was written"
        assert not list(Path(path).parent.glob(f".{Path(path).name}.*")), "a temporary is left"
    return errors[0]
