"""The `varscope` TensorBoard plugin: the VarScope tab's ES modules, the report, and one lane of a tag's histograms.

The plugin reads the logdir itself: TensorBoard's data server keeps one value per tag and step, which drops the
very values a collision is made of.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tensorboard import errors
from tensorboard.backend import http_util, json_util
from tensorboard.backend.event_processing import data_ingester
from tensorboard.plugins import base_plugin
from werkzeug import wrappers
from werkzeug.datastructures import ETags

from tb_varscope_plugin.filesystem import READ_ERRORS, error_reason
from tb_varscope_plugin.reading.logdir import LogdirIndex
from tb_varscope_plugin.reading.run_index import RunIndex, ValueRef
from tb_varscope_plugin.report import Reporter
from tb_varscope_plugin.schema import Report, RunReport
from tb_varscope_plugin.server.live import LiveReport

logger = logging.getLogger(__name__)

PLUGIN_NAME = "varscope"

# The files of the frontend folder that are served, by suffix; anything else in the folder stays private.
FRONTEND_TYPES = {".js": "text/javascript", ".css": "text/css"}

# TensorBoard's defaults: `--reload_interval` and the histograms kept per series (`--samples_per_plugin`).
DEFAULT_RELOAD_INTERVAL = 5.0
DEFAULT_HISTOGRAM_SAMPLES = 500

# Bounded so `int()` never meets a number past its digit limit: an int64, as TensorBoard's own integer parameters.
_LANE = re.compile(r"[0-9]{1,18}")


# The tab's ES modules: a link to the repository's frontend/ in a source tree, real files in a wheel.
FRONTEND = Path(__file__).parent.parent / "frontend"


def downsample(items: list, k: int) -> list:
    """At most `k` of `items` in order, always the last, the rest uniformly at random with a fixed seed; all of
    them for `k` 0, which `--samples_per_plugin histograms=0` means in TensorBoard (it keeps every sample).

    Sampled the way TensorBoard samples histograms (a uniform sample that keeps the latest step), though not
    necessarily the same steps as its reservoir picks.
    """
    if k == 0 or k >= len(items):
        return list(items)
    chosen = sorted(random.Random(0).sample(range(len(items) - 1), k - 1))
    return [items[i] for i in chosen] + [items[-1]]


class VarScopePlugin(base_plugin.TBPlugin):
    """Serves the report of TensorBoard's logdir and the histograms of each lane of a colliding tag."""

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        reload_interval = getattr(context.flags, "reload_interval", DEFAULT_RELOAD_INTERVAL)
        checkpoint = getattr(context.flags, "varscope_checkpoint", None)
        # Collisions are made of histogram data, so the user's limit for the histograms tab applies here too.
        self._samples = (context.sampling_hints or {}).get("histograms", DEFAULT_HISTOGRAM_SAMPLES)
        self._frontend = {
            item.name: (item, FRONTEND_TYPES[item.suffix])
            for item in FRONTEND.iterdir()
            if item.is_file() and item.suffix in FRONTEND_TYPES
        }
        self._index = LogdirIndex(*logdir_roots(context), contain_errors=True)
        reporter = Reporter(self._index, checkpoints=[checkpoint] if checkpoint else None)
        self.live = LiveReport(self._index, reporter, reload_interval)
        self._serialised: SerialisedReport | None = None  # the published report last sent, as sent
        # Each run's part as last serialised, with the part itself: a report published again (the first pass
        # publishes one a second) serialises only the parts that are new, not the whole document each time.
        self._run_texts: dict[str, tuple[RunReport, bytes]] = {}

    def get_plugin_apps(self) -> dict:
        # One exact route per frontend file, fixed when TensorBoard starts: no path a request names can
        # reach a file outside the folder.
        apps = {"/" + name: self._frontend_app(name) for name in self._frontend}
        apps["/report"] = self._serve_report
        apps["/histograms"] = self._serve_histograms
        return apps

    def is_active(self) -> bool:
        return False  # TensorBoard enables the tab whenever the logdir has data of `data_plugin_names()`

    def data_plugin_names(self) -> tuple[str, ...]:
        return ("histograms",)

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="VarScope")

    def _frontend_app(self, name: str):
        @wrappers.Request.application
        def serve(request: wrappers.Request) -> wrappers.Response:
            self.live.start()
            return _answer(request, lambda: self.frontend_impl(name))

        return serve

    @wrappers.Request.application  # type: ignore[arg-type]  # werkzeug's stub does not know methods
    def _serve_report(self, request: wrappers.Request) -> wrappers.Response:
        self.live.start()
        return _answer(request, lambda: self.report_answer(request.if_none_match))

    @wrappers.Request.application  # type: ignore[arg-type]  # werkzeug's stub does not know methods
    def _serve_histograms(self, request: wrappers.Request) -> wrappers.Response:
        self.live.start()
        args = request.args
        return _answer(request, lambda: self.histograms_answer(args.get("run"), args.get("tag"), args.get("lane")))

    def frontend_impl(self, name: str) -> tuple[bytes, str]:
        """`(content, mime type)` of a file of the frontend folder, as listed when the plugin was loaded."""
        item, mime_type = self._frontend[name]
        return item.read_bytes(), mime_type

    def report_impl(self) -> Report:
        """The report document as far as the logdir has been read.

        Beside the contract's fields it carries `complete`: false until the first pass over the logdir has
        ended, so the tab can say it is still reading rather than that nothing collides.
        """
        return self.live.report()

    def report_answer(self, if_none_match: ETags) -> Answer:
        """The report as JSON, serialised and gzipped once per published report, with its ETag; a `304` with no
        body when the client already holds that report (the tab polls while the first pass runs)."""
        serialised = self._serialised_report()
        headers = [("ETag", f'"{serialised.etag}"')]
        if if_none_match.contains(serialised.etag):
            return Answer(b"", "application/json", code=304, headers=headers)
        return Answer(serialised.gzipped, "application/json", headers=headers, content_encoding="gzip")

    def _serialised_report(self) -> SerialisedReport:
        report = self.report_impl()
        serialised = self._serialised
        if serialised is None or serialised.report is not report:
            body = self._report_json(report)
            etag = hashlib.blake2b(body, digest_size=16).hexdigest()
            serialised = self._serialised = SerialisedReport(report, etag, _gzip(body))
        return serialised

    def _report_json(self, report: Report) -> bytes:
        """`_json(report)`, `runs` last and made of each run's part serialised once: a run unchanged keeps the very
        same part object from one report to the next, so a part seen before is not serialised again."""
        kept, made, texts = self._run_texts, {}, []
        for part in report["runs"]:
            known = kept.get(part["run"])
            text = known[1] if known is not None and known[0] is part else _json(part)
            made[part["run"]] = (part, text)
            texts.append(text)
        self._run_texts = made  # runs gone from the report are forgotten with their parts
        head = _json({key: value for key, value in report.items() if key != "runs"})
        return b"".join([head[:-1], b', "runs": [', b", ".join(texts), b"]}"])

    def histograms_answer(self, run: str | None, tag: str | None, lane: str | None) -> Answer:
        """`histograms_impl` as JSON (see `_json`)."""
        return Answer(_json(self.histograms_impl(run, tag, lane)), "application/json")

    def histograms_impl(self, run: str | None, tag: str | None, lane: str | None) -> list:
        """`[[wall_time, step, [[left, right, count], ...]], ...]` of one lane of a tag, one entry per step.

        Raises:
          tensorboard.errors.InvalidArgumentError: a parameter is missing, or `lane` is no non-negative integer.
          tensorboard.errors.NotFoundError: no such run or tag, the tag has fewer lanes, or its file has been
            deleted, truncated or replaced since it was read.
        """
        run, tag, lane = _required("run", run), _required("tag", tag), _required("lane", lane)
        if not _LANE.fullmatch(lane):
            shown = lane if len(lane) <= 20 else f"{lane[:20]}... ({len(lane)} characters)"
            raise errors.InvalidArgumentError(f"`lane` must be a non-negative integer below 10^18, not {shown!r}")
        run_index, refs = self._lane_refs(run, tag, int(lane))
        # Decoding reads the event files at recorded offsets only, so it needs no lock.
        try:
            buckets = run_index.decode_all(refs)
        except ValueError as error:  # the file was truncated or replaced since it was read
            message = f"values of tag {tag!r} in run {run!r} can no longer be read: {error}"
            raise errors.NotFoundError(message) from error
        except READ_ERRORS as error:  # the file was deleted, or its directory renamed, since it was read
            message = f"values of tag {tag!r} in run {run!r} can no longer be read: {error_reason(error)}"
            raise errors.NotFoundError(message) from error
        return [[ref.wall_time, ref.step, b.tolist()] for ref, b in zip(refs, buckets, strict=True)]

    def _lane_refs(self, run: str, tag: str, lane: int) -> tuple[RunIndex, list[ValueRef]]:
        with self._index.lock:
            run_index = self._index.runs.get(run)
            if run_index is None:
                raise errors.NotFoundError(f"no run {run!r}")
            lanes = run_index.lane_count(tag)
            if lanes == 0:
                raise errors.NotFoundError(f"no histogram tag {tag!r} in run {run!r}")
            if lane >= lanes:
                raise errors.NotFoundError(f"tag {tag!r} of run {run!r} has {lanes} lane(s), no lane {lane}")
            refs = run_index.lane_refs(tag, lane)
        return run_index, downsample(refs, self._samples)

    def reload_impl(self) -> None:
        """Reads what the logdir has gained since the last call and publishes the new report."""
        self.live.reload()


@dataclass(frozen=True)
class Answer:
    """What a route hands to `http_util.Respond`: a body (bytes, or data it serialises), its type, and the rest."""

    body: object
    mime_type: str
    code: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_encoding: str | None = None


@dataclass(frozen=True)
class SerialisedReport:
    """A published report as the `/report` route sends it."""

    report: Report
    etag: str
    gzipped: bytes


def _json(value: object) -> bytes:
    """`value` as `http_util.Respond` serialises it: NaN and infinities as strings, ASCII only. Where every number
    is finite (all but a broken writer's), `json_util.Cleanse` would change nothing, and its walk over every number
    costs four times the serialisation (0.17 s for the report of 1,000 runs), so it is skipped."""
    try:
        return json.dumps(value, allow_nan=False).encode("ascii")
    except ValueError:  # a NaN or an infinity
        return json.dumps(json_util.Cleanse(value)).encode("ascii")


def _gzip(data: bytes) -> bytes:
    # As TensorBoard compresses (level 3, no timestamp), once per report instead of once per request.
    return gzip.compress(data, compresslevel=3, mtime=0)


def _answer(request: wrappers.Request, produce: Callable[[], Answer | tuple[object, str]]) -> wrappers.Response:
    """`produce()`'s answer, or `(body, mime type)`, through TensorBoard's `http_util.Respond` (which unzips a
    gzipped body for a client that does not take gzip), or its failure as plain text: a public error with its
    status, anything else a 500 whose details go to TensorBoard's log, not to the page."""
    try:
        produced = produce()
    except errors.PublicError as error:
        return http_util.Respond(request, str(error), "text/plain", code=error.http_code, headers=error.headers)
    except Exception:
        logger.exception("VarScope: %s failed", request.full_path)
        return http_util.Respond(
            request, "VarScope failed on this request; TensorBoard's log says why", "text/plain", code=500
        )
    answer = produced if isinstance(produced, Answer) else Answer(*produced)
    return http_util.Respond(
        request,
        answer.body,
        answer.mime_type,
        code=answer.code,
        headers=answer.headers,
        content_encoding=answer.content_encoding,
    )


def _required(name: str, value: str | None) -> str:
    if value is None:
        raise errors.InvalidArgumentError(f"missing query parameter `{name}`")
    return value


class VarScopeLoader(base_plugin.TBLoader):
    """Adds `--varscope_checkpoint` to TensorBoard's flags and makes the plugin."""

    def define_flags(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group(PLUGIN_NAME)
        group.add_argument(
            "--varscope_checkpoint",
            metavar="PATH",
            default=None,
            help="Checkpoint the VarScope tab names colliding variables from, for every run (a TF checkpoint "
            "prefix, `*.weights.h5`, `*.keras` or `*.safetensors`). Default: found beside each run's logs.",
        )

    def load(self, context: base_plugin.TBContext) -> VarScopePlugin | None:
        if not context.logdir and not getattr(context.flags, "logdir_spec", None):
            # A remote data server and other sources without directories to read: VarScope reads event files itself.
            return None
        return VarScopePlugin(context)


def logdir_roots(context: base_plugin.TBContext) -> tuple[str, None, dict[str, str | None]]:
    """`(logdir, run filter, roots)` for `LogdirIndex`: TensorBoard's `--logdir`, or its `--logdir_spec` parsed as
    TensorBoard parses it (`name:dir,name2:dir2`, each directory's runs put under its name)."""
    if context.logdir:
        return context.logdir, None, {context.logdir: None}
    spec = context.flags.logdir_spec
    return spec, None, data_ingester._parse_event_files_spec(spec)
