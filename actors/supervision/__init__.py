"""The generic OTP layer on pykka, with nothing of trading in it.

``supervisor`` (specs, strategies, restart intensity, backoff, the handle), ``address`` (stable
addresses with a stash and salvage), ``context`` (an incarnation's links, revoked when it is
abandoned), ``timers`` (keyed fixed-rate timers), ``base`` (`SupervisedActor`) and ``messages``
(probes, ticks, drills, exits).
"""
