"""Waiting for something a test started elsewhere (a worker, a server, a browser) to happen."""
import time


def wait_for(predicate, timeout: float = 120.0, every: float = 0.05) -> float:
    """Poll `predicate` until it is true; the seconds it took. AssertionError after `timeout`."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s")
        time.sleep(every)
    return time.monotonic() - t0
