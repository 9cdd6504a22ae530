"""Adapters for the campaign tests: a real mutant, slowed down so that a chunk lasts long enough to be killed in.

A campaign test kills a worker (or the Redis) while a worker holds a lease; on
the real mutant a chunk is over in a fraction of a second, and the test would
race it.  The delay changes nothing the suite judges: the answers are the
mutant's own.
"""

from __future__ import annotations

import time

from tests.mutants.channels import BiasDropped

#: Seconds added to every forward call: a failing chunk (find, shrink, replay) then takes seconds.
DELAY = 0.04


class SlowBiasDropped(BiasDropped):
    """:class:`~tests.mutants.channels.BiasDropped` (the bias is never added), each call ``DELAY`` s slower.
    Same name as the mutant: a campaign may mix the two, and the stored failures are the same cells'."""

    def forward(self, spec, x, w, b):
        time.sleep(DELAY)
        return super().forward(spec, x, w, b)
