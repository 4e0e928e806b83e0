import subprocess
import sys

import numba
import torch

from cryoavae.core.threads import use_threads


def test_use_threads_sets_torch_and_numba_alike():
    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    try:
        use_threads(1)
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(torch_before)
        numba.set_num_threads(numba_before)


def test_use_threads_before_numba_is_imported_reaches_it():
    code = (
        "import torch\n"
        "from cryoavae.core.threads import use_threads\n"
        "use_threads(1)\n"
        "import numba\n"
        "print(torch.get_num_threads(), numba.get_num_threads())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]
