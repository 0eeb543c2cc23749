"""The suite's Hypothesis strategies: the public ones in `runtime.testing`, re-exported.

Every property test draws from here, so the strategies users get are the ones we test with.
"""

from runtime.testing import *  # noqa: F403
from runtime.testing import __all__  # noqa: F401
