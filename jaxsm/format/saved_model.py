"""Read ``saved_model.pb`` / ``saved_model.pbtxt``, choose a MetaGraph by tags, and find a SavedModel's files.

Mirrors ``tensorflow/python/saved_model/loader_impl.py`` (``parse_saved_model``) and the tag rules of
``load.py`` / ``load_v1_in_v2.py``. No TensorFlow and no JAX here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pool, message, text_format

from jaxsm._proto import fingerprint_pb2, meta_graph_pb2, saved_model_pb2, versions_pb2
from jaxsm.errors import (
    CorruptFileError,
    FormatError,
    IncompleteSavedModelError,
    JaxsmError,
    TagsNotFoundError,
)

SAVED_MODEL_PB = "saved_model.pb"
SAVED_MODEL_PBTXT = "saved_model.pbtxt"
SAVED_MODEL_CPB = "saved_model.cpb"
VARIABLES_DIR = "variables"
VARIABLES_PREFIX = "variables/variables"
ASSETS_DIR = "assets"
FINGERPRINT_PB = "fingerprint.pb"

_TF_PACKAGE = "tensorflow."
_OUR_PACKAGE = saved_model_pb2.SavedModel.DESCRIPTOR.full_name.rsplit(".", 1)[0] + "."
_SHARD_RE = re.compile(r"\.data-(\d{5})-of-(\d{5})$")

TagsArg = str | Iterable[str] | None


class SavedModelNotFoundError(FormatError, FileNotFoundError):
    """The SavedModel directory does not exist."""


class NotASavedModelError(FormatError, NotADirectoryError):
    """The path is a file, not a SavedModel directory."""


class UnsupportedFormatError(FormatError):
    """A valid but unsupported on-disk variant (e.g. the chunked ``saved_model.cpb`` of >2 GiB models)."""


@dataclass(frozen=True)
class SavedModelFiles:
    """The paths of one SavedModel directory (nothing is read until asked)."""

    export_dir: Path

    @classmethod
    def of(cls, export_dir: str | os.PathLike[str]) -> SavedModelFiles:
        """The files of ``export_dir`` (raises SavedModelNotFoundError / NotASavedModelError if it isn't a dir)."""
        path = Path(os.fspath(export_dir))
        if not path.exists():
            raise SavedModelNotFoundError(f"SavedModel directory {path} does not exist")
        if not path.is_dir():
            raise NotASavedModelError(f"{path} is not a directory (a SavedModel is a directory)")
        return cls(path)

    @property
    def saved_model_pb(self) -> Path:
        return self.export_dir / SAVED_MODEL_PB

    @property
    def saved_model_pbtxt(self) -> Path:
        return self.export_dir / SAVED_MODEL_PBTXT

    @property
    def proto_path(self) -> Path | None:
        """``saved_model.pb`` if present (TF prefers it), else ``saved_model.pbtxt``, else None."""
        for p in (self.saved_model_pb, self.saved_model_pbtxt):
            if p.is_file():
                return p
        return None

    @property
    def variables_dir(self) -> Path:
        return self.export_dir / VARIABLES_DIR

    @property
    def variables_prefix(self) -> str:
        """The tensor-bundle prefix ``<dir>/variables/variables`` (what ``bundle`` readers take)."""
        return str(self.export_dir / VARIABLES_PREFIX)

    @property
    def variables_index(self) -> Path:
        return Path(self.variables_prefix + ".index")

    @property
    def has_variables(self) -> bool:
        """Whether a variables checkpoint exists (its absence is legal: a program-only SavedModel)."""
        return self.variables_index.is_file()

    @property
    def assets_dir(self) -> Path:
        return self.export_dir / ASSETS_DIR

    @property
    def fingerprint(self) -> Path:
        return self.export_dir / FINGERPRINT_PB

    def data_shards(self) -> list[Path]:
        """The ``variables.data-NNNNN-of-MMMMM`` files present on disk, sorted."""
        if not self.variables_dir.is_dir():
            return []
        stem = Path(self.variables_prefix).name
        return sorted(p for p in self.variables_dir.iterdir() if p.name.startswith(stem) and _SHARD_RE.search(p.name))

    def asset_path(self, filename: str) -> Path:
        """The absolute path of asset ``filename`` (``AssetFileDef.filename``), kept inside ``assets/``."""
        base = self.assets_dir.resolve()
        path = (base / filename).resolve()
        if path != base and base not in path.parents:
            raise FormatError(
                f"asset {filename!r} of the SavedModel at {self.export_dir} points outside its assets "
                "directory; refusing to read it"
            )
        return path


def read_saved_model(export_dir: str | os.PathLike[str]) -> saved_model_pb2.SavedModel:
    """Parse the ``SavedModel`` proto of ``export_dir`` (``saved_model.pb``, else ``saved_model.pbtxt``).

    Raises:
      SavedModelNotFoundError: ``export_dir`` does not exist (also a FileNotFoundError).
      IncompleteSavedModelError: the directory has neither file (a writer may still be running).
      CorruptFileError: the file is empty, truncated or does not parse.
      UnsupportedFormatError: only the chunked ``saved_model.cpb``, or a SessionBundle's ``export.meta``, is
        present.
    """
    files = SavedModelFiles.of(export_dir)
    path = files.proto_path
    if path is None:
        if (files.export_dir / SAVED_MODEL_CPB).is_file():
            raise UnsupportedFormatError(
                f"{files.export_dir} holds a chunked {SAVED_MODEL_CPB} (used for protos over 2 GiB), which "
                "jaxsm cannot read yet; re-export without chunking or load it with TensorFlow"
            )
        if (files.export_dir / "export.meta").is_file():  # TF 0.x's session_bundle exporter (no saved_model.pb)
            raise UnsupportedFormatError(
                f"{files.export_dir} holds a SessionBundle export (export.meta), the format before SavedModel, "
                "which neither jaxsm nor TF 2 loads; re-export it as a SavedModel with TF 1.x"
            )
        raise IncompleteSavedModelError(
            f"{files.export_dir} has no {SAVED_MODEL_PB}: the SavedModel is incomplete "
            f"(a writer may still be running; {SAVED_MODEL_PB} is written last)"
        )
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FormatError(f"cannot read {path}: {e}") from e
    if not data:
        raise CorruptFileError(f"{path} is empty (0 bytes): the SavedModel file is truncated")
    saved_model = saved_model_pb2.SavedModel()
    if path.name == SAVED_MODEL_PB:
        try:
            saved_model.ParseFromString(data)
        except message.DecodeError as e:
            raise CorruptFileError(f"cannot parse {path}: {e} (the file is truncated or corrupt)") from e
    else:
        try:
            text_format.Parse(data.decode("utf-8"), saved_model, descriptor_pool=_TFNamePool())
        except (text_format.ParseError, UnicodeDecodeError) as e:
            raise CorruptFileError(f"cannot parse {path}: {e}") from e
        _restore_any_type_urls(saved_model)
    if not saved_model.meta_graphs:
        raise CorruptFileError(f"{path} parsed but holds no MetaGraph: the SavedModel is empty or truncated")
    return saved_model


def contains_saved_model(export_dir: str | os.PathLike[str]) -> bool:
    """``tf.saved_model.contains_saved_model``: whether ``export_dir`` holds a SavedModel file (``.pb``, ``.pbtxt``
    or the chunked ``.cpb``). Reads nothing; True does not promise the model loads."""
    path = Path(os.fspath(export_dir))
    return any((path / name).is_file() for name in (SAVED_MODEL_PB, SAVED_MODEL_PBTXT, SAVED_MODEL_CPB))


@dataclass(frozen=True)
class Fingerprint:
    """``tf.saved_model.experimental.Fingerprint``: the hashes TF writes into ``fingerprint.pb`` when it saves.
    Equality ignores ``saved_model_checksum`` (it changes with immaterial details), as TF's does."""

    saved_model_checksum: int
    graph_def_program_hash: int
    signature_def_hash: int
    saved_object_graph_hash: int
    checkpoint_hash: int
    version: versions_pb2.VersionDef

    def singleprint(self) -> str:
        """TF's canonical ID of the SavedModel: the four regularized hashes joined with '/'."""
        hashes = (self.graph_def_program_hash, self.signature_def_hash, self.saved_object_graph_hash)
        return "/".join(str(h) for h in (*hashes, self.checkpoint_hash))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fingerprint) and self.singleprint() == other.singleprint()

    def __hash__(self) -> int:
        return hash(self.singleprint())


def read_fingerprint(export_dir: str | os.PathLike[str]) -> Fingerprint:
    """``tf.saved_model.experimental.read_fingerprint``: the ``fingerprint.pb`` of ``export_dir`` (TF >= 2.12
    writes one; an IncompleteSavedModelError, also a FileNotFoundError, where there is none)."""
    path = SavedModelFiles.of(export_dir).fingerprint
    if not path.is_file():
        raise IncompleteSavedModelError(
            f"{path.parent} has no {FINGERPRINT_PB} (TensorFlow before 2.12 did not write one)"
        )
    proto = fingerprint_pb2.FingerprintDef()
    try:
        proto.ParseFromString(path.read_bytes())
    except message.DecodeError as e:
        raise CorruptFileError(f"cannot parse {path}: {e} (the file is truncated or corrupt)") from e
    except OSError as e:
        raise FormatError(f"cannot read {path}: {e}") from e
    return Fingerprint(
        proto.saved_model_checksum,
        proto.graph_def_program_hash,
        proto.signature_def_hash,
        proto.saved_object_graph_hash,
        proto.checkpoint_hash,
        proto.version,
    )


def tag_sets(saved_model: saved_model_pb2.SavedModel) -> list[list[str]]:
    """The tag-set of every MetaGraph, in file order."""
    return [list(mg.meta_info_def.tags) for mg in saved_model.meta_graphs]


def normalize_tags(tags: TagsArg) -> set[str] | None:
    """TF's reading of ``tags=``: None, one tag as a str, or any (nested) collection of tags."""
    if tags is None:
        return None
    if isinstance(tags, str | bytes):
        return {tags.decode() if isinstance(tags, bytes) else tags}
    out: set[str] = set()
    for t in tags:
        out |= normalize_tags(t) or set()
    return out


def select_meta_graph(saved_model: saved_model_pb2.SavedModel, tags: TagsArg = None) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraph whose tag-set equals ``tags`` (as a set), chosen the way ``tf.saved_model.load`` does.

    ``tags=None`` takes the only MetaGraph and is an error when there are several.

    Raises:
      TagsNotFoundError: (a ValueError) no MetaGraph matches, or ``tags=None`` is ambiguous; the message lists
        the available tag-sets.
    """
    wanted = normalize_tags(tags)
    metas = list(saved_model.meta_graphs)
    available = _format_tag_sets(saved_model)
    if wanted is None:
        if len(metas) != 1:
            raise TagsNotFoundError(
                f"the SavedModel has {len(metas)} MetaGraphs, with tag-sets {available}; pass tags= to choose one"
            )
        return metas[0]
    for mg in metas:
        if set(mg.meta_info_def.tags) == wanted:
            return mg
    raise TagsNotFoundError(
        f"no MetaGraph with tags {sorted(wanted)} in the SavedModel; available tag-sets: {available}"
    )


def load_meta_graph(export_dir: str | os.PathLike[str], tags: TagsArg = None) -> meta_graph_pb2.MetaGraphDef:
    """:func:`read_saved_model` then :func:`select_meta_graph`, naming ``export_dir`` in a tag error."""
    saved_model = read_saved_model(export_dir)
    try:
        return select_meta_graph(saved_model, tags)
    except TagsNotFoundError as e:
        raise TagsNotFoundError(f"{export_dir}: {e}") from None


@dataclass(frozen=True)
class Problem:
    """One integrity problem of a SavedModel directory: the file it concerns and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def find_problems(export_dir: str | os.PathLike[str], check_shards: bool = True) -> list[Problem]:
    """Integrity problems visible without reading tensor data: every one found, not just the first.

    Checks that the SavedModel proto parses, that variable data shards named ``-of-N`` are all present,
    that a MetaGraph whose object graph has variables comes with a checkpoint, and that referenced assets
    exist inside ``assets/``. Tensor-level checks (crc32c, offsets) are left to
    :func:`jaxsm.format.bundle.check` (pass ``check_shards=False`` when it runs too: it checks shards).
    """
    try:
        files = SavedModelFiles.of(export_dir)
        saved_model = read_saved_model(export_dir)
    except (JaxsmError, OSError) as e:
        return [Problem(str(export_dir), str(e))]
    problems: list[Problem] = []
    if check_shards:
        problems += _shard_problems(files)
    for mg in saved_model.meta_graphs:
        label = f"MetaGraph {list(mg.meta_info_def.tags)}"
        has_vars = any(n.WhichOneof("kind") == "variable" for n in mg.object_graph_def.nodes)
        if has_vars and not files.has_variables:
            problems.append(Problem(str(files.variables_index), f"missing, but the {label} object graph has variables"))
        for asset in mg.asset_file_def:
            try:
                path = files.asset_path(asset.filename)
            except FormatError as e:
                problems.append(Problem(str(files.assets_dir), str(e)))
                continue
            if not path.is_file():
                problems.append(Problem(str(path), f"asset file of the {label} is missing"))
    return problems


def _shard_problems(files: SavedModelFiles) -> list[Problem]:
    shards = files.data_shards()
    if files.has_variables and not shards:
        return [Problem(files.variables_prefix + ".data-*", "the variables index has no data shard next to it")]
    counts = {int(_SHARD_RE.search(p.name).group(2)) for p in shards}  # type: ignore[union-attr]
    if len(counts) > 1:
        return [Problem(str(files.variables_dir), f"data shards of different counts {sorted(counts)}")]
    problems = []
    for total in counts:
        for i in range(total):
            path = Path(f"{files.variables_prefix}.data-{i:05d}-of-{total:05d}")
            if not path.is_file():
                problems.append(Problem(str(path), "data shard is missing"))
    return problems


def _format_tag_sets(saved_model: saved_model_pb2.SavedModel) -> str:
    return ", ".join(str(sorted(ts)) for ts in tag_sets(saved_model)) or "(none)"


class _TFNamePool:
    """Resolves ``tensorflow.X`` type names in text-format ``Any`` fields to our renamed ``jaxsm.tf.X``."""

    def __init__(self) -> None:
        self._pool = descriptor_pool.Default()

    def FindMessageTypeByName(self, name: str):  # noqa: N802 (the DescriptorPool method name)
        if name.startswith(_TF_PACKAGE):
            name = _OUR_PACKAGE + name[len(_TF_PACKAGE) :]
        return self._pool.FindMessageTypeByName(name)


def _restore_any_type_urls(saved_model: saved_model_pb2.SavedModel) -> None:
    # text_format re-packs expanded Any fields under our package name; binary files keep TF's, so match them.
    def fix(any_msg) -> None:
        prefix, _, name = any_msg.type_url.rpartition("/")
        if name.startswith(_OUR_PACKAGE):
            any_msg.type_url = f"{prefix}/{_TF_PACKAGE}{name[len(_OUR_PACKAGE) :]}"

    for mg in saved_model.meta_graphs:
        if mg.meta_info_def.HasField("any_info"):
            fix(mg.meta_info_def.any_info)
        for coll in mg.collection_def.values():
            for any_msg in coll.any_list.value:
                fix(any_msg)
        for node in mg.object_graph_def.nodes:
            if node.HasField("serialized_user_proto"):
                fix(node.serialized_user_proto)
