"""The fast path: single-value events read straight from their record bytes, a whole read buffer at a time.

Every known writer lays out an event holding one summary value the same way; for those records the step, wall time
and tag are read with numpy instead of a protobuf parse. The index still parses every record that this does not
read in full (see `run_index._read_fast`), so damage is found the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Counts count a tensor's elements: their total is a whole number no tensor can exceed, and float64 counts stay
# exact up to 2^53 (a 72-petabyte tensor of bytes).
MAX_COUNT = float(2**53)


@dataclass(frozen=True)
class SingleValues:
    """Events laid out as every known writer writes one summary value, read straight from the record bytes.

    `simple[i]` says record i is `wall_time, [step,] summary{value{tag, <one field>, [metadata]}}` and nothing else,
    each field once, so its wall time, step and tag are the ones a protobuf parser would find. The tag's bytes
    followed by the byte that opens the value's field are `data[tag_start[i] : tag_end[i] + 1]`: together they
    decide whether the value is a histogram, given what the file said about the tag before.
    """

    simple: np.ndarray  # bool
    wall_time: np.ndarray  # float64
    step: np.ndarray  # int64
    tag_start: np.ndarray  # int64, into data
    tag_end: np.ndarray  # int64, into data
    key_of: np.ndarray  # int64: which of `key_first` has record i's tag and field bytes; -1 where not simple
    key_first: np.ndarray  # int64: the first record of each distinct tag-and-field key
    keys: Keys  # each distinct key's bytes, as `KnownKeys.lookup` takes them
    value_start: np.ndarray  # int64, into data: where the body of the value's one field starts
    value_end: np.ndarray  # int64, into data: where it ends
    metadata_start: np.ndarray  # int64, into data: where the body of the value's metadata starts (value_end if none)


def single_values(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> SingleValues:
    """Reads every record `data[starts[i]:ends[i]]` (event payloads) as `SingleValues`, all at once."""
    at = starts
    simple = (ends - at >= 9) & (_byte(data, at) == 0x09)  # wall_time: field 1, fixed64
    wall_time = data.take(at[:, None] + np.arange(1, 9), mode="clip").view("<f8").ravel()
    at = at + 9
    has_step = _byte(data, at) == 0x10  # step: field 2, varint; absent when 0
    step, size, ok = _varints(data, at + 1, 10)
    simple &= ok | ~has_step
    step = np.where(has_step, step, 0).view(np.int64)
    at = np.where(has_step, at + 1 + size, at)
    simple &= _byte(data, at) == 0x2A  # summary: field 5, to the end of the event
    at, length = _length_delimited(data, at, simple)
    simple &= at + length == ends
    simple &= _byte(data, at) == 0x0A  # its one value: field 1, to the end of the summary
    at, length = _length_delimited(data, at, simple)
    simple &= at + length == ends
    simple &= _byte(data, at) == 0x0A  # the value's tag: field 1
    tag_start, length = _length_delimited(data, at, simple)
    tag_end = tag_start + length
    # One length-delimited field (field 2..15: histo, tensor, image, ...), then metadata (field 9) or the end.
    field = _byte(data, tag_end)
    simple &= ((field & 0x07) == 2) & (field >= 0x12) & (field < 0x80) & (tag_end < ends)
    value_start, length = _length_delimited(data, tag_end, simple)
    at = value_end = value_start + length
    metadata = (at < ends) & (_byte(data, at) == 0x4A)
    after, length = _length_delimited(data, at, metadata)
    simple &= (at == ends) | (metadata & (after + length == ends))
    metadata_start = np.where(metadata, after, at)  # its body runs to the end of the event in a simple one
    key_of, key_first, keys = _distinct_keys(data, tag_start, tag_end + 1, simple)
    return SingleValues(
        simple, wall_time, step, tag_start, tag_end, key_of, key_first, keys, value_start, value_end, metadata_start
    )


def plain_histograms(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, legacy: np.ndarray) -> np.ndarray:
    """Which of the histogram values `data[starts[i]:ends[i]]` (a HistogramProto where `legacy`, else a
    TensorProto) are laid out as writers lay them out and hold sound counts, read from their bytes all at once.

    True means the value certainly decodes: a float64 tensor of shape [k, 3] (k > 0) whose content is 24k bytes,
    or a legacy histogram with as many counts as limits; and every count finite, not negative, and their total at
    most half of `MAX_COUNT` (so within it in whatever order they are added). False means only "not shown here":
    `events.value_problem` decides, one value at a time.
    """
    plain_tensor, content, k = _plain_tensors(data, starts, ends)
    plain_legacy, buckets, n = _plain_legacy(data, starts, ends)
    plain = np.where(legacy, plain_legacy, plain_tensor)
    count_start = np.where(legacy, buckets, content + 16)  # a tensor's counts are its every third float64
    counts = np.where(legacy, n, k)
    stride = np.where(legacy, 8, 24)
    chosen = np.flatnonzero(plain)
    if not len(chosen):
        return plain
    sizes = counts[chosen]
    first = np.cumsum(sizes) - sizes
    strides = stride[chosen]
    size, step = int(sizes[0]), int(strides[0])
    if (sizes == size).all() and (strides == step).all():
        # One layout for all (a writer's histograms mostly have as many buckets): each value's counts are a row
        # of a view whose rows start at every byte, so they are gathered a row at a time, not a count at a time.
        rows = np.ndarray((len(data) - step * (size - 1) - 7, size), dtype="<f8", buffer=data, strides=(1, step))
        values = rows[count_start[chosen]].ravel()
    else:
        # Count j of value i lies at count_start[i] + stride[i] * j; j = position - first[i], so one repeat each.
        total = int(first[-1] + sizes[-1])
        at = np.repeat(count_start[chosen] - strides * first, sizes) + np.repeat(strides, sizes) * np.arange(total)
        # The float64 at every byte offset, as a view with a one-byte stride: counts are gathered without copying.
        at_byte = np.ndarray((len(data) - 7,), dtype="<f8", buffer=data, strides=(1,))
        values = at_byte[at]
    # A count past MAX_COUNT takes its total past it too, and NaN is neither of these: every count is then finite
    # and not negative, and a total of such counts finite; where one is not, its value's total does not matter.
    sound = (values >= 0) & (values <= MAX_COUNT)
    with np.errstate(over="ignore", invalid="ignore"):
        totals = np.add.reduceat(values, first)
    # numpy adds in another order than `value_problem` does (pairwise, not left to right), and near MAX_COUNT the
    # two totals can fall on either side of it ([1, 1, 2^53]: 2^53 here, 2^53 + 2 there). Up to half of it, no
    # order's rounding reaches MAX_COUNT; a larger total is left to `value_problem`.
    plain[chosen] = np.logical_and.reduceat(sound, first) & (totals <= MAX_COUNT / 2)
    return plain


def _plain_tensors(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(plain, content start, k)`: `08 02` (float64), shape `12 L {12 l {08 k}} {12 02 08 03}`, `22 24k content`."""
    at = starts
    plain = (ends - at >= 12) & (_byte(data, at) == 0x08) & (_byte(data, at + 1) == 0x02)
    plain &= (_byte(data, at + 2) == 0x12) & (_byte(data, at + 4) == 0x12) & (_byte(data, at + 6) == 0x08)
    plain &= (_byte(data, at + 3) < 0x80) & (_byte(data, at + 5) < 0x80)  # one-byte lengths, as read below
    shape_end = at + 4 + _byte(data, at + 3).astype(np.int64)
    dim_end = at + 6 + _byte(data, at + 5).astype(np.int64)
    k, size, ok = _varints(data, at + 7, 5)
    plain &= ok & (at + 7 + size == dim_end) & (shape_end == dim_end + 4)
    plain &= (_byte(data, dim_end) == 0x12) & (_byte(data, dim_end + 1) == 0x02)
    plain &= (_byte(data, dim_end + 2) == 0x08) & (_byte(data, dim_end + 3) == 0x03)
    plain &= _byte(data, shape_end) == 0x22
    content, length = _length_delimited(data, shape_end, plain)
    k = np.where(plain, k, 0).astype(np.int64)
    plain &= (k > 0) & (content + length == ends) & (length == 24 * k)
    return plain, content, np.where(plain, k, 0)


def _plain_legacy(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(plain, counts start, n)`: min, max, num, sum, sum_squares (fixed64 fields 1-5, each left out when 0), then
    packed `bucket_limit` (`32`) and `bucket` (`3a`) of n doubles each, and nothing else."""
    at = starts
    for key in (0x09, 0x11, 0x19, 0x21, 0x29):
        at = np.where((at < ends) & (_byte(data, at) == key), at + 9, at)
    plain = (at < ends) & (_byte(data, at) == 0x32)
    limits, length = _length_delimited(data, at, plain)
    at = limits + length
    plain &= (length > 0) & (length % 8 == 0) & (_byte(data, at) == 0x3A)
    counts, count_length = _length_delimited(data, at, plain)
    plain &= (count_length == length) & (counts + count_length == ends)
    return plain, counts, np.where(plain, length // 8, 0)


def _distinct_keys(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, where: np.ndarray
) -> tuple[np.ndarray, np.ndarray, Keys]:
    """Groups the byte strings `data[starts[i]:ends[i]]` for i in `where` by content: the group of each (-1 outside
    `where`), the first i of each group, and each group's bytes. A few tags repeat over thousands of records, so
    this is done at once."""
    key_of = np.full(len(starts), -1, dtype=np.int64)
    chosen = np.flatnonzero(where)
    lengths = ends[chosen] - starts[chosen]
    short = chosen[lengths <= KEY_BYTES]
    keys = Keys.of(data, starts[short], ends[short])
    first = np.zeros(0, dtype=np.int64)
    if len(short):
        # Grouped by hash, then every key compared with its group's first: equal hashes of unequal keys are caught.
        _, first, group = np.unique(keys.hashes, return_index=True, return_inverse=True)
        words, held = keys.words, keys.lengths
        if not ((words == words[first[group]]).all() and (held == held[first[group]]).all()):
            rows = np.concatenate([words.view(np.uint8), held[:, None].view(np.uint8)], axis=1)
            _, first, group = np.unique(
                rows.view(np.dtype((np.void, rows.shape[1]))).ravel(), return_index=True, return_inverse=True
            )
        key_of[short] = group
    # Longer keys (a tag of more than KEY_BYTES - 1 bytes, rare) by their bytes, one by one: a 2 MB buffer holds
    # 16,000 at most.
    groups: dict[bytes, int] = {}
    long_rows: list[int] = chosen[lengths > KEY_BYTES].tolist()
    long_groups: list[int] = []  # each long row's group
    long_first: list[int] = []  # each long group's first row
    for i in long_rows:
        found = groups.setdefault(data[starts[i] : ends[i]].tobytes(), len(first) + len(groups))
        if found == len(first) + len(long_first):
            long_first.append(i)
        long_groups.append(found)
    key_of[long_rows] = long_groups
    long_keys = Keys.too_long(np.array([ends[i] - starts[i] for i in long_first], dtype=np.int64), keys.words.shape[1])
    return key_of, np.concatenate([short[first], long_first]).astype(np.int64), keys.take(first).then(long_keys)


# A key is a tag's bytes and the byte opening its value's field. Those of up to this many bytes are held as 8-byte
# words for batch comparisons; longer ones (a tag of over 127 bytes) only by their bytes, so that memory stays
# within rows x KEY_BYTES whatever a file's tags are.
KEY_BYTES = 128
# Keys made into words at once: a buffer of tiny records holds 100,000 of them, and each costs its index matrix.
KEY_ROWS = 8192


@dataclass(frozen=True)
class Keys:
    """Byte strings of at most KEY_BYTES as rows of whole 8-byte words (zero past each string's end), with their
    lengths and a hash of each that does not depend on how many words the rows have: so strings of two batches
    compare as they are. A longer string is a row of zeros with its length, which compares equal to nothing."""

    words: np.ndarray  # uint64, (strings, words)
    lengths: np.ndarray  # int64
    hashes: np.ndarray  # uint64

    @staticmethod
    def of(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Keys:
        """The strings `data[starts[i]:ends[i]]`, each of at most KEY_BYTES bytes."""
        lengths = ends - starts
        if not len(lengths):
            return Keys.too_long(lengths, 0)
        columns = np.arange(-(-int(lengths.max()) // 8) * 8)
        chunks = []
        for at in range(0, len(lengths), KEY_ROWS):
            chars = data.take(starts[at : at + KEY_ROWS, None] + columns, mode="clip")
            chars[columns >= lengths[at : at + KEY_ROWS, None]] = 0
            chunks.append(chars.view(np.uint64).reshape(len(chars), -1))
        words = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        hashes = lengths.astype(np.uint64)
        for j, word in enumerate(words.T):  # a word at a time, each string over its own words only
            hashes = np.where(lengths > 8 * j, hashes * np.uint64(0x100000001B3) + word, hashes)
        return Keys(words, lengths, hashes)

    @staticmethod
    def too_long(lengths: np.ndarray, width: int) -> Keys:
        """Strings held by their lengths only (see the class), as rows `width` words wide."""
        return Keys(np.zeros((len(lengths), width), dtype=np.uint64), lengths, np.zeros(len(lengths), dtype=np.uint64))

    def take(self, rows: np.ndarray) -> Keys:
        return Keys(self.words[rows], self.lengths[rows], self.hashes[rows])

    def then(self, later: Keys) -> Keys:
        """These strings, then `later`'s (rows as wide as these)."""
        if not len(later.lengths):
            return self
        words = np.concatenate([self.words, later.words])
        return Keys(words, np.concatenate([self.lengths, later.lengths]), np.concatenate([self.hashes, later.hashes]))


UNKNOWN = -2  # `KnownKeys.lookup`: a key not among those known


class KnownKeys:
    """A file's tag-and-field keys seen so far with what each is (`EventFile._kinds`: a tag id, or -1), indexed for
    lookups a whole batch at a time: a file of 10,000 tags has a few thousand keys in every read buffer, and making
    each key's bytes to look it up in the dictionary cost about a tenth of reading such a file."""

    def __init__(self, kinds: dict[bytes, int]) -> None:
        self.source = kinds
        self.size = len(kinds)  # what `serves` weighs; keys longer than KEY_BYTES are left to the dictionary
        strings = [key for key in kinds if len(key) <= KEY_BYTES]
        lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
        ends = np.cumsum(lengths)
        keys = Keys.of(np.frombuffer(b"".join(strings), dtype=np.uint8), ends - lengths, ends)
        order = np.argsort(keys.hashes, kind="stable")
        self.keys = keys.take(order)
        self.kinds = np.array([kinds[key] for key in strings], dtype=np.int64)[order]

    def serves(self, kinds: dict[bytes, int]) -> bool:
        """Whether this is still worth looking `kinds` up in. Keys are only ever added to it, never changed, so
        what this found stays right, and a key added since is looked up by its bytes; once they are more than an
        eighth of what this holds, a new index pays (so a file whose keys keep growing is indexed anew only
        log-many times)."""
        return self.source is kinds and len(kinds) <= self.size + self.size // 8

    def lookup(self, keys: Keys) -> np.ndarray:
        """What each of `keys` is, UNKNOWN where not known (or where its hash is shared by another known key: the
        caller then looks it up by its bytes)."""
        found = np.full(len(keys.hashes), UNKNOWN, dtype=np.int64)
        held = len(self.kinds)
        if not held or not len(found):
            return found
        at = np.minimum(np.searchsorted(self.keys.hashes, keys.hashes), held - 1)
        # Strings of one length fill as many words, within both row widths; the words past them are zero. A key
        # too long to be held as words is never found here.
        width = min(keys.words.shape[1], self.keys.words.shape[1])
        same = (self.keys.hashes[at] == keys.hashes) & (self.keys.lengths[at] == keys.lengths)
        same &= keys.lengths <= KEY_BYTES
        same &= (self.keys.words[at, :width] == keys.words[:, :width]).all(axis=1)
        found[same] = self.kinds[at[same]]
        return found


def _byte(data: np.ndarray, at: np.ndarray) -> np.ndarray:
    return data.take(at, mode="clip")


def _varints(data: np.ndarray, at: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The varint at each of `at`: value (uint64), size in bytes, and whether it ends within `width` bytes."""
    byte = data.take(at, mode="clip")
    value = (byte & 0x7F).astype(np.uint64)
    size = np.ones(len(at), dtype=np.int64)
    going = byte >= 0x80
    ok = np.ones(len(at), dtype=bool)
    # Byte by byte, and only as far as the longest varint goes: here mostly one or two bytes.
    for k in range(1, width):
        if not going.any():
            break
        byte = data.take(at + k, mode="clip")
        if k == 9:  # the 10th byte of a 64-bit varint carries one bit
            ok &= ~going | (byte <= 1)
        value |= np.where(going, byte & 0x7F, 0).astype(np.uint64) << np.uint64(7 * k)
        size += going
        going &= byte >= 0x80
    return value, size, ok & ~going


def _length_delimited(data: np.ndarray, at: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the body of the field whose key is at `at` starts, and its length; `valid` is cleared in place where
    the length is no varint of at most 5 bytes (so sums of positions cannot overflow)."""
    length, size, ok = _varints(data, at + 1, 5)
    valid &= ok
    return at + 1 + size, np.where(ok, length, 0).astype(np.int64)
