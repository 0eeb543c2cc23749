"""Shared test setup. Kept tiny on purpose: add fixtures below as needed.

Puts this folder on ``sys.path`` so test modules can ``import strategies`` whatever pytest's
import mode or rootdir.
"""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
