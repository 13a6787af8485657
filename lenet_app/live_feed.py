"""A live run's panel as a file that the browser reads, instead of page reruns.

A Streamlit fragment that redraws the live panel twice a second is a script run
twice a second, and each one costs the browser far more than the charts it
updates: it decodes the deltas and re-renders the page's element tree, widgets,
labels and all. On the 2-core build machine the Train page took 0.34-0.44 of a
core that way while a run trained (benchmarks/train_page_overhead.py), and
training, on the same cores, paid for it.

So while a run trains, a feed thread in the server writes the panel (progress
and the three figures, as JSON) to a file under the app's static folder
whenever it changes, and the page's live panel component (lenet_app.live_chart)
fetches that file twice a second and updates the charts in place. No script runs
while the run trains; when the run has ended the feed says so, and the component
asks for one rerun, which draws the final state.

The file name is a random token, so a run's curves are found only by the page
that shows it. The file is removed a while after the run ends, once every page
showing it has had time to read the end.
"""
from __future__ import annotations

import atexit
import logging
import secrets
import threading
import time
import weakref
from pathlib import Path
from typing import Callable

from lenet_core.checkpoint import atomic_write
from lenet_core.train import Snapshot, TrainingJob

FOLDER = "live"               # under the app's static folder
STALE_AFTER_S = 3600.0        # a file nobody has written for this long was left by a server that died
HEARTBEAT_S = 60.0            # a paused run's file is rewritten this often, so it never looks stale

log = logging.getLogger(__name__)

# render(snapshot, ended) -> the JSON text the browser reads
Render = Callable[[Snapshot, bool], str]


class LiveFeed:
    """Writes `render(job.snapshot(), ended)` to `folder/<token>.json` every `every` seconds
    while `job` runs (only when the text changed), once more when it has ended, and
    removes the file `linger` seconds later."""

    def __init__(self, job: TrainingJob, folder: Path, render: Render, every: float, linger: float = 120.0):
        self.job, self.render, self.every, self.linger = job, render, every, linger
        self.path = Path(folder) / f"{secrets.token_urlsafe(16)}.json"
        self.error: str | None = None
        self._text: str | None = None
        self._written = 0.0
        self._thread = threading.Thread(target=self._run, name=f"lenet-live-feed-{job.name}", daemon=True)

    @property
    def name(self) -> str:
        return self.path.name

    def write(self) -> bool:
        """Write the panel now if it changed (or for the heartbeat); True once the job has ended
        and its final state is written. Raises OSError when the file cannot be written."""
        ended = not self.job.alive  # read first: a snapshot taken after it is the final one
        text = self.render(self.job.snapshot(), ended)
        if text != self._text or time.monotonic() - self._written >= HEARTBEAT_S:
            data = text.encode()
            atomic_write(self.path, lambda f: f.write(data))
            self._text, self._written = text, time.monotonic()
        return ended

    def start(self) -> "LiveFeed":
        """Write the first state here (an error shows now, not in the thread), then keep it fresh."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.write()
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self.write():
                self.job.join(self.every)  # wakes at once when the run ends
            time.sleep(self.linger)
        except Exception as e:  # noqa: BLE001 - the page falls back to redrawing; the run goes on
            self.error = str(e) or type(e).__name__
            log.warning("live feed %s stopped: %s", self.path, self.error)
        finally:
            self.path.unlink(missing_ok=True)


_feeds: "weakref.WeakKeyDictionary[TrainingJob, LiveFeed]" = weakref.WeakKeyDictionary()
_cleaned: set[Path] = set()
_lock = threading.Lock()


def remove_stale(folder: Path, older_than_s: float = STALE_AFTER_S) -> int:
    """Remove feed files that no server has written for `older_than_s` (left by one that was
    killed mid-run); returns how many."""
    removed, now = 0, time.time()
    for path in Path(folder).glob("*.json"):
        try:
            if now - path.stat().st_mtime > older_than_s:
                path.unlink()
                removed += 1
        except OSError:
            pass
    return removed


@atexit.register
def _remove_files() -> None:
    """A server that stops mid-run takes its feeds' files with it."""
    for feed in list(_feeds.values()):
        try:
            feed.path.unlink(missing_ok=True)
        except OSError:
            pass


def feed_for(job: TrainingJob, folder: Path, render: Render, every: float) -> LiveFeed | None:
    """The one feed of a live `job` (started on the first call), or None where its file
    cannot be written or the feed has stopped: then the page redraws the panel itself."""
    folder = Path(folder)
    with _lock:
        feed = _feeds.get(job)
        if feed is None:
            if folder not in _cleaned:
                _cleaned.add(folder)
                remove_stale(folder)
            feed = LiveFeed(job, folder, render, every)
            try:
                feed.start()
            except OSError as e:
                feed.error = str(e)
                log.warning("no live feed in %s: %s", folder, e)
            _feeds[job] = feed
    return None if feed.error else feed
