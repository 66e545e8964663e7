"""The live reader: a background thread that rereads TensorBoard's logdir and publishes each new report."""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref

from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.reading.run_index import RunIndex
from tb_varscope_plugin.report import Reporter, RunPart, document
from tb_varscope_plugin.schema import Report, RunReport
from tb_varscope_plugin.server.first_pass import FirstPass

logger = logging.getLogger(__name__)

# While a large logdir is first read, the report is republished this often so the tab fills in run by run.
PUBLISH_INTERVAL = 1.0
# The reader thread's name, as TensorBoard's thread dumps show it.
READER_THREAD = "varscope-reader"
# At exit, how long to let a pass in progress finish before its checkpoints are closed under it.
EXIT_WAIT_SECONDS = 5.0


class LiveReport:
    """The report of a logdir as far as it has been read, kept current by a thread started on first use.

    `reload_lock` makes reloads take turns; the index's own lock is held only while one event file is read, so a
    lane's histograms wait for one file at most; `report_lock` only swaps the published report or starts the
    reader, so `report()` never waits for a read in progress.
    """

    def __init__(self, index: LogdirIndex, reporter: Reporter, reload_interval: float) -> None:
        self.index = index
        self._reporter = reporter
        self._reload_interval = reload_interval
        self._reload_lock = threading.Lock()
        self._report_lock = threading.Lock()
        self._read_once = False  # until the first pass over the logdir ends, the report is partial
        self._source = reporter.report()  # what the reporter last gave: unchanged, it is not published again
        self._report = self._published(self._source)
        self._published_at = 0.0
        self._reader: threading.Thread | None = None
        self._closed = False
        self._first_pass = FirstPass()

    def report(self) -> Report:
        """The last published report; `complete` is false until the first pass over the logdir has ended."""
        with self._report_lock:
            return self._report

    def reload(self) -> None:
        """Reads what the logdir has gained since the last call and publishes the new report."""
        with self._reload_lock:
            if self._closed:  # the process is exiting: opening checkpoints again would undo `close`
                return
            spawned = not self._read_once and self._spawned_pass()
            if self._closed:
                return
            # After a spawned pass, what is left: runs of a process that failed, files that grew meanwhile.
            self.index.reload(progress=None if spawned else self._publish_while_reading)
            self._read_once = True
            self._publish()

    def _spawned_pass(self) -> bool:
        """The first pass read by spawned processes where that pays (see `FirstPass`), the runs published as
        they arrive; False if it was not."""
        parts: dict[str, RunReport] = {}

        def taken(run: RunIndex, part: RunPart) -> None:
            parts[run.name] = part.published
            if time.monotonic() - self._published_at >= PUBLISH_INTERVAL:
                report = document(self.index.logdir, [], [parts[name] for name in sorted(parts)])
                with self._report_lock:
                    self._report = self._published(report)
                self._published_at = time.monotonic()

        try:
            return self._first_pass.run(self.index, self._reporter, taken)
        except Exception:
            # A process could not be started (no memory, too many open files) or the pass broke otherwise: what
            # was taken in stays, the rest is read here. True: runs were found that are not read yet, so no
            # partial report is published until they are.
            logger.exception("VarScope: the first pass's readers failed; reading in TensorBoard's process")
            return True

    def start(self) -> None:
        """Starts the reader thread unless it runs already. Reading starts when someone opens the tab, not when
        TensorBoard starts: a user who never looks at VarScope pays nothing for it."""
        with self._report_lock:
            if self._reader is not None:
                return
            self._reader = threading.Thread(target=self._read_forever, name=READER_THREAD, daemon=True)
        # The reader is a daemon thread still alive when TensorBoard exits: close what it holds open first.
        atexit.register(_close_at_exit, weakref.ref(self))
        self._reader.start()

    def close(self) -> None:
        """Stops further passes and closes the checkpoints the reporter holds open (see `Reporter.close`)."""
        self._closed = True
        self._first_pass.kill()
        locked = self._reload_lock.acquire(timeout=EXIT_WAIT_SECONDS)
        try:
            self._reporter.close()
        finally:
            if locked:
                self._reload_lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the reader thread to stop (it stops after one pass when the reload interval is 0); True if it
        was started and has stopped."""
        reader = self._reader
        if reader is None:
            return False
        reader.join(timeout)
        return not reader.is_alive()

    @property
    def started(self) -> bool:
        return self._reader is not None

    def _publish_while_reading(self, run_name: str) -> None:
        # Called as each run has been read, with every run found so far read: a partial report shows no run unread.
        if time.monotonic() - self._published_at >= PUBLISH_INTERVAL:
            self._publish()

    def _published(self, report: Report) -> Report:
        return {**report, "complete": self._read_once}

    def _publish(self) -> None:
        source = self._reporter.report()
        # An unchanged report stays the published object, so what the routes made of it (bytes, ETag) stays valid.
        if source is not self._source or self._report["complete"] != self._read_once:
            report = self._published(source)
            with self._report_lock:
                self._report = report
            self._source = source
        self._published_at = time.monotonic()

    def _read_forever(self) -> None:
        while not self._closed:
            try:
                self.reload()
            except Exception:
                # A failed pass (a logdir on a flaky filesystem) must not stop later passes; like TensorBoard's
                # own reload loop, log it and try again.
                logger.exception("VarScope: reading %s failed", self.index.logdir)
            if not self._reload_interval:
                return
            time.sleep(self._reload_interval)


def _close_at_exit(live: weakref.ref[LiveReport]) -> None:
    report = live()
    if report is not None:
        report.close()
