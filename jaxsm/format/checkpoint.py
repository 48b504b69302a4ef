"""``load_checkpoint``: find a checkpoint like ``tf.train.load_checkpoint`` does and open it."""

from __future__ import annotations

import codecs
import os
import re

from jaxsm.errors import CheckpointNotFoundError, CorruptFileError
from jaxsm.format.bundle import CheckpointReader, normalize_prefix

CHECKPOINT_STATE_FILE = "checkpoint"

# CheckpointState is written in protobuf text format; its string fields are C-escaped, quoted either way.
_FIELD = re.compile(r"""^\s*(\w+)\s*:\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\s*$""")


def _read_checkpoint_state(path: str) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise CorruptFileError(f"{path}: cannot read the checkpoint state file: {e}") from e
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _FIELD.match(line)
        if m is None:
            raise CorruptFileError(f"{path}: cannot parse line {line!r} of the checkpoint state file")
        raw = m.group(2) if m.group(2) is not None else m.group(3)
        value = codecs.escape_decode(raw.encode("utf-8", "surrogateescape"))[0]
        fields.setdefault(m.group(1), []).append(value.decode("utf-8", "surrogateescape"))
    return fields


def latest_checkpoint(checkpoint_dir: str | os.PathLike[str]) -> str | None:
    """The prefix named by ``model_checkpoint_path`` in ``<dir>/checkpoint`` (like
    ``tf.train.latest_checkpoint``), resolved against ``dir`` when relative; None when there is no state
    file or the checkpoint it names has no ``.index`` file."""
    checkpoint_dir = os.fspath(checkpoint_dir)
    state = os.path.join(checkpoint_dir, CHECKPOINT_STATE_FILE)
    if not os.path.isfile(state):
        return None
    paths = _read_checkpoint_state(state).get("model_checkpoint_path")
    if not paths:
        return None
    prefix = paths[-1]
    if not os.path.isabs(prefix):
        prefix = os.path.join(checkpoint_dir, prefix)
    return prefix if os.path.exists(prefix + ".index") else None


def find_checkpoint(path: str | os.PathLike[str]) -> str:
    """Resolve a checkpoint prefix, checkpoint directory, SavedModel directory or ``variables/`` directory
    to the prefix of the checkpoint to read."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        prefix = normalize_prefix(path)
        if os.path.exists(prefix + ".index"):
            return prefix
        if os.path.exists(prefix):
            return prefix  # not a V2 bundle: CheckpointReader explains
        raise CheckpointNotFoundError(f"{path}: no checkpoint here (no {prefix}.index)")
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest
    for prefix in (os.path.join(path, "variables", "variables"), os.path.join(path, "variables")):
        if os.path.exists(prefix + ".index"):
            return prefix
    state = os.path.join(path, CHECKPOINT_STATE_FILE)
    indexes = sorted(f for f in os.listdir(path) if f.endswith(".index"))
    if os.path.isfile(state):
        why = f"its {CHECKPOINT_STATE_FILE} file names no checkpoint whose .index file exists"
    else:
        why = f"it has no {CHECKPOINT_STATE_FILE} file, variables/variables.index or variables.index"
    hint = f"; pass a prefix, e.g. {os.path.join(path, indexes[-1][: -len('.index')])}" if indexes else ""
    raise CheckpointNotFoundError(f"{path}: couldn't find a checkpoint in this directory: {why}{hint}")


def load_checkpoint(ckpt_dir_or_file: str | os.PathLike[str], verify_checksums: bool = True) -> CheckpointReader:
    """Open a TF checkpoint; mirrors ``tf.train.load_checkpoint``.

    **Arguments:**

    - ``ckpt_dir_or_file``: a checkpoint prefix (``/x/ckpt-1``; ``.index`` and data-shard paths are accepted
      too), a directory holding a ``checkpoint`` state file (the latest checkpoint is read), a SavedModel
      directory (its ``variables/variables``) or a SavedModel's ``variables/`` directory.
    - ``verify_checksums``: verify the crc32c of index blocks and of each tensor as it is read.

    **Returns:** a :class:`~jaxsm.format.bundle.CheckpointReader`.

    Raises :class:`~jaxsm.errors.CheckpointNotFoundError` (a ``ValueError`` and ``FileNotFoundError``, as TF
    raises ValueError) when nothing is found.
    """
    return CheckpointReader(find_checkpoint(ckpt_dir_or_file), verify_checksums=verify_checksums)
