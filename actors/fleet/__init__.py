"""A fleet of accounts on Ray: one trading system per account, each in its own worker process.

Layout (everything a user needs is exported here; the ``_`` modules are private):

- `fleet` -- `Fleet`, the driver's API: connect, add, list with a timeout, halt one or all, resume,
  lift a quarantine, place an order once, read a journal, remove. `FleetError`,
  `AccountQuarantined` (an account added that came up quarantined).
- `status` -- `AccountStatus` and `Health`, what the fleet says about one account,
  `AccountNotTrading`, `HaltPending` (a halt saved for an account still starting),
  `HaltNotDurable` (one that could not be saved) and `HaltOutcome` (one account's answer to
  `Fleet.halt_all`); `NotQuarantined` (no quarantine to lift).
- `_incarnation` -- one account's life in one process (store opened with backoff and claimed,
  trading system started, a supervisor that gives up turned into a call-back, quarantine,
  fencing); no Ray in it.
- `_fencing` -- the store wrapper that notices a newer incarnation's claim.
- `_policy` -- the restart window (backoff, quarantine) and probing the controller applies
  (`RestartWindow`, `Probing`); no Ray in it.
- `_account` -- the Ray actor shell over an incarnation (exits the process when it gave up).
- `_controller` -- the detached controller actor: restart window, re-creating accounts Ray gave
  up on, killing zombies.

Supervision has three layers: OTP inside each account (unchanged), Ray restarting a worker that
exits, and the controller over Ray. Importing this package does not import Ray; `Fleet.connect`
and `Fleet.local` do (``pip install 'tradewarden[ray]'``).
"""

from actors.fleet._policy import Admission, Probing, RestartWindow
from actors.fleet.fleet import DEFAULT_NAMESPACE, AccountQuarantined, Fleet, FleetError
from actors.fleet.status import (
    AccountNotTrading,
    AccountStatus,
    HaltNotDurable,
    HaltOutcome,
    HaltPending,
    Health,
    NotQuarantined,
)

__all__ = ["DEFAULT_NAMESPACE", "AccountNotTrading", "AccountQuarantined", "AccountStatus", "Admission", "Fleet", "FleetError",
           "HaltNotDurable", "HaltOutcome", "HaltPending", "Health", "NotQuarantined", "Probing", "RestartWindow"]

