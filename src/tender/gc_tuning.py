"""Python's cyclic garbage collector, tuned for Tender's long-running server processes (issue 16).

With the default thresholds (700, 10, 10) the API's processes spent about a fifth of their CPU in the collector
under load (measured with gc.callbacks: 2.4 s and 3.6 s of 12-13 s), most of it in full collections of about 0.2 s
each, every two seconds: the objects of requests waiting for their batch's commit live long enough to be promoted,
and a full collection walks every object of the process, the whole app included. Each such pause stalled every
request of the process: they were most of the accept latency's p99.

Almost everything a request allocates is freed by reference counting when it ends; the collector is only for
cycles. So a collection is run far less often (every 50,000 net allocations instead of 700), and the objects that
exist once the process has started (modules, the app, its routes and models) are frozen out of every collection.
The same run then spent 0.2 s in the collector per API process, none of it in full collections.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 100)


def tune_for_server() -> None:
    """Call once the process has built what it keeps for its lifetime, before it serves."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
