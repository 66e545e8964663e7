"""The index reads single-value events straight from their bytes: it must find exactly what parsing every event does.

Each file here is indexed twice: by the index, and value by value with the protobuf parser (`histogram_values`)
over the file's records (tests/test_records.py checks they are TensorBoard's); both must give the same values,
in the same order, and the same damage.
"""

import os
import random
import struct
import time

import numpy as np
import pytest
from eventlogs import histogram_event, layered_run, read_records, write_events
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.util import tensor_util

from tb_varscope_plugin.reading import events, fast_path, records, run_index
from tb_varscope_plugin.reading.records import masked_crc32c
from tb_varscope_plugin.reading.run_index import EventFile


def parsed_values(path):
    """`({tag: [(step, wall_time, offset, index, encoding), ...]}, damage offset or None)`, one event at a time;
    a series keeps the encoding of its first value."""
    plugins: dict[str, str] = {}
    found: dict[str, list] = {}
    for offset, payload in read_records(path):
        try:
            event = events.parse_event(payload)
        except DecodeError:
            return found, offset
        values = events.histogram_values(event, plugins)
        if values is not None:
            step, wall_time, tags = values
            for index, tag, encoding in tags:
                if events.value_problem(event.summary.value[index]) is not None:
                    continue  # left out of the index, as a warning
                series = found.setdefault(tag, [])
                series.append((step, wall_time, offset, index, series[0][4] if series else encoding))
    return found, None


def indexed_values(event_file):
    found = {
        tag: [
            (step, wall_time, offset, index, s.encoding)
            for step, wall_time, offset, index in zip(s.steps, s.wall_times, s.offsets, s.indices, strict=True)
        ]
        for tag, s in event_file.series.items()
    }
    damage = event_file.reader.damage
    return found, None if damage is None else damage.offset


def assert_same(path):
    event_file = EventFile(path)
    event_file.reload()
    ours = indexed_values(event_file)
    theirs = parsed_values(path)
    assert ours == theirs
    assert list(ours[0]) == list(theirs[0])  # series created in the order their tags were first written
    return ours


def framed(payloads):
    out = b""
    for payload in payloads:
        length = struct.pack("<Q", len(payload))
        out += length + struct.pack("<I", masked_crc32c(length)) + payload + struct.pack("<I", masked_crc32c(payload))
    return out


def write_payloads(path, payloads):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(framed(payloads))


def field(number, wire, body):
    key = bytes([number << 3 | wire])
    return key + (varint(len(body)) + body if wire == 2 else body)


def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        out += bytes([n & 0x7F | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


def tensor_value(tag, step, with_metadata):
    value = histogram_pb(tag, np.linspace(-1, 1, 20) * (step + 1)).value[0]
    if not with_metadata:
        value.ClearField("metadata")  # as TF2 writers do after a tag's first value in a file
    return value


def mixed_events():
    """Every layout the index has to get right: single values of each encoding, values of other plugins,
    several values per summary, steps absent, negative and large, long and non-ASCII tags."""
    rng = np.random.default_rng(1)
    out = [event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")]
    tags = ["dense/kernel", "é/ünïcode", "x" * 200, "kernel"]
    for step in [0, 1, 2, -1, -(2**40), 2**62, 5, 0]:
        for n, tag in enumerate(tags):
            first = step == 0 and len(out) < 6
            out.append(event_pb2.Event(step=step, wall_time=1e9 + step, summary=summary(tensor_value(tag, n, first))))
        legacy = histogram_event(step, "weight", rng.normal(size=10), legacy=True)
        legacy.wall_time = 0.0 if step == 5 else legacy.wall_time
        out.append(legacy)
        scalar = scalar_pb("loss", 0.5).value[0]
        if step != 0:
            scalar.ClearField("metadata")
        out.append(event_pb2.Event(step=step, wall_time=2e9, summary=summary(scalar)))
        out.append(
            event_pb2.Event(
                step=step, summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="lr", simple_value=0.1)])
            )
        )
        several = summary_pb2.Summary(value=[tensor_value("dense/kernel", 9, False), scalar, legacy.summary.value[0]])
        out.append(event_pb2.Event(step=step, wall_time=3e9, summary=several))
        out.append(event_pb2.Event(step=step, wall_time=4e9, summary=summary_pb2.Summary()))
    # A scalar tag that is later written as a histogram: the first word on a tag stands.
    out.append(event_pb2.Event(step=9, wall_time=5e9, summary=summary(tensor_value("loss", 9, True))))
    return out


def summary(value):
    return summary_pb2.Summary(value=[value])


@pytest.fixture(params=[run_index.LOOKUP_KEYS, 1], ids=["keys-looked-up-by-bytes", "keys-looked-up-by-block"])
def lookup_keys(request, monkeypatch):
    """Each of the two ways a block's tag-and-field keys are looked up in what the file showed before: one by one,
    and (for blocks of many keys) a block at a time, which with 1 every block takes."""
    monkeypatch.setattr(run_index, "LOOKUP_KEYS", request.param)
    return request.param


@pytest.fixture(params=["parsed", "known"], ids=["metadata-parsed", "metadata-known"])
def metadata(request, monkeypatch, tmp_path_factory):
    """Each of the two ways the first value of a tag in a file is read: parsed (no metadata is known, and none is
    learned), or told from its bytes, its metadata's bytes having parsed before (learned from a first file)."""
    monkeypatch.setattr(run_index, "_METADATA", {})
    if request.param == "parsed":
        monkeypatch.setattr(run_index, "METADATA_KEPT", 0)
    else:
        path = str(tmp_path_factory.mktemp("learned") / "events.out.tfevents.1.host")
        write_events(path, mixed_events())
        EventFile(path).reload()
        assert run_index._METADATA
    return request.param


def test_every_layout_is_indexed_as_parsing_finds_it(tmp_path, lookup_keys, metadata):
    path = str(tmp_path / "events.out.tfevents.1.host")
    write_events(path, mixed_events())
    found, damage = assert_same(path)
    assert damage is None
    assert {"dense/kernel", "é/ünïcode", "x" * 200, "kernel", "weight"} <= set(found)
    assert "loss" not in found and "lr" not in found
    assert [value[0] for value in found["kernel"]] == [0, 1, 2, -1, -(2**40), 2**62, 5, 0]


def test_hand_made_layouts_fall_back_to_parsing(tmp_path):
    """Fields in an unusual order, repeated, or not understood: each read as a parser reads it."""
    wall = field(1, 1, struct.pack("<d", 1.5))
    value = tensor_value("t", 0, True)
    histo = histogram_event(0, "h", np.arange(5.0), legacy=True).summary.value[0]
    tag_t, tensor, metadata = field(1, 2, b"t"), field(8, 2, value.tensor.SerializeToString()), None
    metadata = field(9, 2, value.metadata.SerializeToString())
    histo_body = field(5, 2, histo.histo.SerializeToString())

    def event(*value_fields, before=b"", after=b"", step=b""):
        return wall + step + before + field(5, 2, field(1, 2, b"".join(value_fields))) + after

    payloads = [
        event(tag_t, tensor, metadata, step=field(2, 0, varint(3))),
        event(tag_t, metadata, tensor, step=field(2, 0, varint(4))),  # metadata first
        event(tag_t, tensor, step=field(2, 0, b"\x85\x80\x80\x00")),  # a step varint longer than it needs
        event(field(1, 2, b"h"), histo_body, tag_t, tensor),  # a second tag: the last one counts
        event(field(1, 2, b"h"), histo_body, tensor),  # histo then tensor: the oneof keeps the last
        event(field(1, 2, b"h"), histo_body, after=field(5, 2, field(1, 2, field(1, 2, b"h2") + histo_body))),
        event(field(1, 2, b"h"), histo_body, before=field(3, 2, b"brain.Event:2")),
        field(2, 0, varint(7)) + wall + field(5, 2, field(1, 2, field(1, 2, b"h") + histo_body)),  # step first
        event(field(1, 2, b"h"), histo_body, field(9, 2, b"")),  # a legacy histogram with (empty) metadata
        event(field(1, 2, b"h"), histo_body, field(12, 0, varint(1))),  # an unknown field in the value
        event(field(1, 2, b"h"), histo_body, step=field(2, 0, varint(-5))),
    ]
    path = str(tmp_path / "events.out.tfevents.1.host")
    write_payloads(path, payloads)
    found, damage = assert_same(path)
    assert damage is None
    assert (len(found["t"]), len(found["h"]), len(found["h2"])) == (4, 6, 1)


@pytest.mark.parametrize("seed", range(4))
def test_bytes_changed_under_valid_checksums_give_what_parsing_gives(tmp_path, seed, lookup_keys, metadata):
    """A writer bug rather than a disk error: the CRCs hold, the bytes are wrong. Whatever the parser makes of
    each such file (other values, fewer values, a record that is no event), the index makes the same."""
    rng = random.Random(seed)
    payloads = [e.SerializeToString() for e in mixed_events()]
    outcomes = set()
    for trial in range(60):
        changed = list(payloads)
        for _ in range(rng.choice([1, 1, 2, 5])):
            at = rng.randrange(1, len(changed))
            payload = bytearray(changed[at])
            position = rng.randrange(min(len(payload), 40 if rng.random() < 0.7 else len(payload)))
            payload[position] = rng.choice([rng.randrange(256), payload[position] ^ 1, 0x80, 0x0A, 0x2A, 0x42])
            changed[at] = bytes(payload)
        path = str(tmp_path / f"events.out.tfevents.{trial}.host")
        write_payloads(path, changed)
        outcomes.add(assert_same(path)[1] is None)
    assert outcomes == {True, False}  # some changes made a record no event, some did not


def test_records_across_many_small_buffers(tmp_path, monkeypatch, lookup_keys, metadata):
    """Buffers smaller than a record, and a file read as it grows: the same values as one read of the whole."""
    monkeypatch.setattr(records, "BLOCK", 300)
    path = str(tmp_path / "events.out.tfevents.1.host")
    layered_run(path, "kernel", [4, 8, 16], steps=6)
    assert_same(path)
    with open(path, "rb") as f:
        whole = f.read()
    growing = str(tmp_path / "events.out.tfevents.2.host")
    event_file = EventFile(growing)
    for cut in range(0, len(whole) + 250, 250):
        with open(growing, "wb") as f:
            f.write(whole[:cut])
        event_file.reload()
    assert indexed_values(event_file)[0] == parsed_values(growing)[0]
    assert event_file.reader.pending == 0


def many_tags(tags: list[str], steps: int) -> list[event_pb2.Event]:
    """Every tag written once a step, its first value with its metadata, as a TF2 writer writes them."""
    out = [event_pb2.Event(wall_time=1.0, file_version="brain.Event:2")]
    for step in range(steps):
        for tag in tags:
            value = tensor_value(tag, step, with_metadata=step == 0)
            out.append(event_pb2.Event(step=step, wall_time=1e9 + step, summary=summary(value)))
    return out


def test_buffers_of_many_tags_look_their_keys_up_a_buffer_at_a_time(tmp_path, monkeypatch):
    """A file of thousands of tags holds thousands of keys in every read buffer: they are looked up all at once
    (no bytes made for each), and the values are those parsing finds."""
    monkeypatch.setattr(records, "BLOCK", 64 << 10)
    lookups = []
    lookup = fast_path.KnownKeys.lookup
    monkeypatch.setattr(
        fast_path.KnownKeys, "lookup", lambda self, keys: lookups.append(len(keys.hashes)) or lookup(self, keys)
    )
    path = str(tmp_path / "events.out.tfevents.1.host")
    write_events(path, many_tags([f"layer_{i}/kernel_0" for i in range(800)], steps=4))
    found, damage = assert_same(path)
    assert damage is None and len(found) == 800
    assert len(lookups) > 10 and sum(lookups) > 2000  # most keys of the later steps, found by block


def colliding_tags() -> tuple[str, str]:
    """Two tags whose keys (tag bytes and the tensor field's byte, 32 in all) have one hash: the hash takes a key a
    word at a time, `h = h * P + word`, so raising the top byte of the second word by 1 and that of the third by
    P's low byte (0xB3, less 256) leaves it as it was."""
    first = "ABCDEFGHIJKLMNOaQRSTUVW#YZabcde"  # bytes 15 and 23: `a` and `#`
    second = first[:15] + "b" + first[16:23] + "p" + first[24:]
    return first, second


def test_keys_of_one_hash_are_told_apart(tmp_path, monkeypatch, lookup_keys):
    monkeypatch.setattr(records, "BLOCK", 4 << 10)  # many buffers: later ones look up keys indexed before
    first, second = colliding_tags()
    keys = [tag.encode() + bytes([run_index.TENSOR_FIELD]) for tag in (first, second)]
    data = np.frombuffer(b"".join(keys), dtype=np.uint8)
    hashed = fast_path.Keys.of(data, np.array([0, 32]), np.array([32, 64]))
    assert hashed.hashes[0] == hashed.hashes[1]  # else this test tests nothing
    known = fast_path.KnownKeys({keys[0]: 5})
    assert known.lookup(hashed).tolist() == [5, fast_path.UNKNOWN]
    path = str(tmp_path / "events.out.tfevents.1.host")
    # The one tag known first, then both in every buffer, each a histogram of its own.
    events_in = many_tags([first], 2) + many_tags([second, *(f"t{i}" for i in range(100)), first], 3)[1:]
    write_events(path, events_in)
    indexes = []
    build = fast_path.KnownKeys.__init__

    def kept(self, kinds):
        build(self, kinds)
        indexes.append(self)

    monkeypatch.setattr(fast_path.KnownKeys, "__init__", kept)
    found, _ = assert_same(path)
    assert len(found[first]) == 5 and len(found[second]) == 3
    if lookup_keys == 1:  # an index held both keys, under one hash
        assert any(len(set(known.keys.hashes.tolist())) < known.size for known in indexes)


def test_a_file_whose_tags_keep_growing_is_indexed_a_linear_number_of_keys(tmp_path, monkeypatch):
    """Every buffer brings new tags: the file's keys are indexed anew only once they have grown by an eighth, so
    the keys indexed over the whole reading are a small multiple of the file's, not their square."""
    monkeypatch.setattr(records, "BLOCK", 16 << 10)
    monkeypatch.setattr(run_index, "LOOKUP_KEYS", 1)
    indexed = []
    build = fast_path.KnownKeys.__init__

    def counted(self, kinds):
        indexed.append(len(kinds))
        build(self, kinds)

    monkeypatch.setattr(fast_path.KnownKeys, "__init__", counted)
    path = str(tmp_path / "events.out.tfevents.1.host")
    out = [event_pb2.Event(wall_time=1.0, file_version="brain.Event:2")]
    for n in range(3000):  # a new tag at every step, as a run that names a tag per step would
        out.append(event_pb2.Event(step=n, wall_time=1e9, summary=summary(tensor_value(f"tag_{n}", n, True))))
    write_events(path, out)
    found, _ = assert_same(path)
    assert len(found) == 3000
    assert len(indexed) > 10 and sum(indexed) < 10 * 3000


def test_tags_longer_than_a_key_row_are_told_apart_by_their_bytes(tmp_path, monkeypatch, lookup_keys):
    """Keys of more than KEY_BYTES are not held as words: two tags alike in their first 150 bytes, across many
    buffers, are still two tags, each found as parsing finds it."""
    monkeypatch.setattr(records, "BLOCK", 4 << 10)
    tags = ["p" * 150 + "/a", "p" * 150 + "/b", "short/kernel", "q" * 300]
    path = str(tmp_path / "events.out.tfevents.1.host")
    write_events(path, many_tags(tags, steps=6))
    found, damage = assert_same(path)
    assert damage is None and sorted(found) == sorted(tags) and all(len(v) == 6 for v in found.values())


def test_one_huge_tag_among_many_values_is_read_in_bounded_memory(tmp_path):
    """A tag's bytes are held as words only up to KEY_BYTES: one 1 MB tag in a buffer of 20,000 small values once
    made a 20,000 x 1 MB index (150 GB), now a few megabytes."""
    import tracemalloc

    events_in = many_tags(["t" * (1 << 20)], 1) + many_tags(["small"], 20_000)[1:]
    path = str(tmp_path / "events.out.tfevents.1.host")
    write_events(path, events_in)
    tracemalloc.start()
    try:
        found, damage = assert_same(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert damage is None and len(found["small"]) == 20_000
    assert peak < 200 << 20  # the file is 22 MB; parsing it for the comparison holds its events


@pytest.mark.slow  # tensorboardX imports torch when it is installed
def test_tensorboardx_logs_are_indexed_as_parsing_finds_them(tmp_path, metadata):
    tensorboardX = pytest.importorskip("tensorboardX")
    rng = np.random.default_rng(0)
    with tensorboardX.SummaryWriter(str(tmp_path)) as writer:
        for step in range(5):
            for name in ["weight", "bias", "0.weight"]:
                writer.add_histogram(name, rng.normal(size=50), step)
            writer.add_scalar("loss", 1.0 / (step + 1), step)
    (name,) = [n for n in os.listdir(tmp_path) if "tfevents" in n]
    found, damage = assert_same(str(tmp_path / name))
    assert damage is None and set(found) == {"weight", "bias", "0.weight"}


FUZZ = settings(
    max_examples=int(os.environ.get("VARSCOPE_FUZZ_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def written_histograms() -> list[bytes]:
    """A tag's first value with its metadata, then values without, in both encodings, as writers write them, and
    a tag whose every value carries its metadata (as summaries made with `histogram_pb` and written as they are)."""
    rng = np.random.default_rng(2)
    out = [event_pb2.Event(wall_time=1.0, file_version="brain.Event:2").SerializeToString()]
    for step in range(4):
        for tag in ("dense/kernel", "é/bias", "every/kernel"):
            value = tensor_value(tag, step, with_metadata=step == 0 or tag.startswith("every"))
            out.append(event_pb2.Event(step=step, wall_time=1e9 + step, summary=summary(value)).SerializeToString())
        legacy = histogram_event(step, "weight", rng.normal(size=5), legacy=True)
        out.append(legacy.SerializeToString())
    return out


@FUZZ
@given(st.data())
def test_a_record_the_fast_path_reads_whole_parses_as_an_event(tmp_path, data):
    """The protobuf parser checks only the records the fast path did not read whole: each record it did read
    whole must parse, whatever bytes changed under valid checksums (a wrong tag byte, a count, a length)."""
    payloads = written_histograms()
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(1, len(payloads) - 1))
        payload = bytearray(payloads[at])
        position = data.draw(st.integers(0, len(payload) - 1))
        payload[position] = data.draw(st.sampled_from([0x00, 0x80, 0xFF, 0xC3, 0x0A, 0x2A, 0x42, 0x4A, 0x08]))
        payloads[at] = bytes(payload)
    reads = []

    def spied(*args):
        read = read_fast(*args)
        reads.append((args[0], read))
        return read

    read_fast = run_index._read_fast
    path = str(tmp_path / f"events.out.tfevents.{len(os.listdir(tmp_path))}.host")
    write_payloads(path, payloads)
    # Undone after each example: the fixture's monkeypatch lives across them, and spies would wrap spies.
    with pytest.MonkeyPatch.context() as patch:
        # The metadata of a tag's first value either parsed before, or was never seen (and is not learned).
        patch.setattr(run_index, "_METADATA", {})
        if data.draw(st.booleans()):
            pristine = str(tmp_path / f"pristine.{len(os.listdir(tmp_path))}.tfevents")
            write_payloads(pristine, written_histograms())
            EventFile(pristine).reload()
        patch.setattr(run_index, "METADATA_KEPT", len(run_index._METADATA))
        patch.setattr(run_index, "_read_fast", spied)
        patch.setattr(run_index, "LOOKUP_KEYS", data.draw(st.sampled_from([run_index.LOOKUP_KEYS, 1])))
        # Small buffers too: later ones look their keys up in what the earlier ones indexed.
        patch.setattr(records, "BLOCK", data.draw(st.sampled_from([records.BLOCK, 300])))
        damage = assert_same(path)[1]
    checked = 0
    for (items, read), later in zip(reads, [*reads[1:], None], strict=True):
        if later is not None and later[0] is items:
            # Read again short of a record that is no event: what this read took for whole past it is never used.
            continue
        for record in np.flatnonzero(read.whole).tolist():
            k = int(read.file_of[record])
            events.parse_event(items[k][1].payloads[record - read.firsts[k]])  # raises DecodeError if not
            checked += 1
    assert checked or damage is not None  # a file read to its end holds records read whole, whatever changed


def test_a_tags_first_value_in_each_file_is_parsed_only_until_its_metadata_is_known(tmp_path, monkeypatch):
    """TF2 writers give the first value of each tag in a file the same metadata: once those bytes have parsed,
    a file's first values are read from their bytes, so a run of many small files parses its files' first
    records (their writer's mark) and little else. Counted, not timed."""
    monkeypatch.setattr(run_index, "_METADATA", {})
    tags = [f"layer_{i}/kernel" for i in range(20)]
    for i in range(30):
        write_events(str(tmp_path / f"run_{i}" / "events.out.tfevents.1.host"), many_tags(tags, steps=3))
    paths = [str(tmp_path / f"run_{i}" / "events.out.tfevents.1.host") for i in range(30)]
    records = [events.parse_event(payload) for _, payload in read_records(paths[0])]
    marks = sum(1 for event in records if not event.summary.value)  # events of no value: the writer's marks
    parsed = []
    parse = events.parse_event
    monkeypatch.setattr(events, "parse_event", lambda payload: parsed.append(1) or parse(payload))
    for path in paths:
        found, damage = assert_same(path)
        assert damage is None and list(found) == tags
    # Each file's marks, and the first file's 20 first values; beside them, the check's own parse of every record.
    assert len(parsed) - 30 * len(records) == 30 * marks + 20
    assert len(run_index._METADATA) == 1


def test_metadata_kept_is_bounded(tmp_path, monkeypatch):
    """Metadata of many kinds (a description per tag, say) is kept up to METADATA_KEPT, each of at most
    METADATA_BYTES; past that, first values are parsed as before."""
    monkeypatch.setattr(run_index, "_METADATA", {})
    monkeypatch.setattr(run_index, "METADATA_KEPT", 5)
    out = [event_pb2.Event(wall_time=1.0, file_version="brain.Event:2")]
    for i in range(12):
        value = tensor_value(f"t{i}", 0, with_metadata=True)
        value.metadata.summary_description = "d" * (i if i < 8 else 2000)  # the last ones past METADATA_BYTES
        out.append(event_pb2.Event(step=0, wall_time=1e9, summary=summary(value)))
    path = str(tmp_path / "events.out.tfevents.1.host")
    write_events(path, out)
    assert_same(path)
    assert len(run_index._METADATA) == 5
    assert all(len(blob) <= run_index.METADATA_BYTES for blob in run_index._METADATA)


@pytest.mark.parametrize("counts", [[1.0, 1.0, 2.0**53], [2.0**52, 2.0**52, 1.0], [2.0**52, 1.0, 2.0**52 - 1.0]])
def test_counts_adding_up_to_about_the_limit_are_judged_as_parsing_judges_them(tmp_path, counts):
    """numpy adds a value's counts in another order than `value_problem` does: around 2^53 the two totals can fall
    on either side of the limit ([1, 1, 2^53] is 2^53 one way, 2^53 + 2 the other). The index keeps a value only
    where parsing would."""
    rows = np.stack([np.arange(3.0), np.arange(3.0) + 1, counts], axis=1)
    value = summary_pb2.Summary.Value(tag="kernel", tensor=tensor_util.make_tensor_proto(rows))
    value.metadata.plugin_data.plugin_name = "histograms"
    ordinary = tensor_value("kernel", 1, with_metadata=False)
    out = [event_pb2.Event(step=0, wall_time=1.0, summary=summary(tensor_value("kernel", 0, with_metadata=True)))]
    out += [
        event_pb2.Event(step=1, wall_time=2.0, summary=summary(value)),
        event_pb2.Event(step=2, summary=summary(ordinary)),
    ]
    path = str(tmp_path / "events.out.tfevents.1.host")
    write_events(path, out)
    assert_same(path)


_COUNT = st.sampled_from([0.0, 1.0, 3.0, 7.5, -1.0, float("nan"), float("inf"), 2.0**52, 2.0**53, 1e300])


@FUZZ
@given(st.lists(st.lists(_COUNT, min_size=3, max_size=3), min_size=1, max_size=12), st.integers(1, 4), st.booleans())
def test_histograms_of_one_layout_are_checked_as_those_of_several(counts, buckets, legacy):
    """Values that share one layout (as many buckets, one encoding) have their counts gathered a row at a time;
    the same values beside one of another layout are gathered a count at a time: both must judge each alike."""

    def body(value_counts):
        bucket_counts = (value_counts * buckets)[:buckets]
        if legacy:
            histo = summary_pb2.HistogramProto(bucket_limit=np.arange(buckets) + 1.0, bucket=bucket_counts)
            return histo.SerializeToString()
        rows = np.stack([np.arange(buckets), np.arange(buckets) + 1.0, bucket_counts], axis=1)
        return tensor_util.make_tensor_proto(rows.astype(np.float64)).SerializeToString()

    def judged(bodies, is_legacy):
        data = b"".join(bodies)
        ends = np.cumsum([len(b) for b in bodies])
        starts = ends - [len(b) for b in bodies]
        return fast_path.plain_histograms(np.frombuffer(data, np.uint8), starts, ends, np.array(is_legacy)).tolist()

    bodies = [body(c) for c in counts]
    alone = judged(bodies, [legacy] * len(bodies))
    different = (
        tensor_util.make_tensor_proto(np.ones((buckets + 1, 3))).SerializeToString()
        if legacy
        else summary_pb2.HistogramProto(bucket_limit=[1.0], bucket=[1.0]).SerializeToString()
    )
    beside = judged([*bodies, different], [legacy] * len(bodies) + [not legacy])
    assert beside[:-1] == alone and beside[-1]
    for value_counts, plain in zip(counts, alone, strict=True):
        mine = (value_counts * buckets)[:buckets]
        sound = all(0 <= c <= fast_path.MAX_COUNT for c in mine)
        # Shown plain only where the value decodes; every value of sound counts well below the limit is.
        assert (sound and sum(mine) <= fast_path.MAX_COUNT) if plain else not (sound and sum(mine) <= 2.0**51)
