"""Where a checkpoint lives and what identifies it: locate, hash, read, load.

A checkpoint is a folder written by ``save_pretrained`` (``ssl:/models/my-hubert``), a hub id
found in the local Hugging Face cache, or (online only) a hub id fetched from the hub. Its
identity is the hub commit when known, else the SHA-256 of config.json and the weights.
A fine-tuned folder carries :data:`FINETUNED_FILE`, read for the set's name and provenance.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from extract.base import FINETUNED_FILE  # the one name of a fine-tuned folder's record
from extract.base import SAMPLE_RATE, ExtractorUnavailable
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
HASH_BLOCK = 8 << 20
HUB_PROBE_TIMEOUT_S = 3.0
"""How long the connectivity probe waits for the hub (or its proxy) to accept a connection:
without it, huggingface_hub retries an unreachable hub for about 25 s before failing."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """Where a checkpoint lives.

    Attributes:
        kind: ``folder`` (a local folder or an HF cache snapshot) or ``online`` (the hub).
        directory: the folder holding config.json and the weights (``None`` when online).
        commit: the hub commit when known (cache snapshot, or resolved online).
        weights: the weight files in the folder.
    """

    kind: str
    directory: Path | None
    commit: str | None
    weights: tuple[Path, ...] = ()


def finetuned_info(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The :data:`FINETUNED_FILE` record of a model folder, or ``None`` (absent or unreadable)."""
    path = Path(folder).expanduser() / FINETUNED_FILE
    try:
        info = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """Offline mode, read at call time (huggingface_hub reads it once at import)."""
    from huggingface_hub import constants

    return env_true("HF_HUB_OFFLINE") or env_true("TRANSFORMERS_OFFLINE") or constants.HF_HUB_OFFLINE


def hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the hub cannot be reached (one TCP connection to it, or to the proxy the
    environment names, with a short timeout), or ``None`` when it answers."""
    from huggingface_hub import constants

    url = urllib.parse.urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        purl = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = purl.hostname or "", purl.port or 80
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host}:{port} did not answer within {timeout:g} s ({exc})"
    return None


def how_to_provide(model: str) -> str:
    """The three ways to make a checkpoint available, as one sentence for error messages."""
    return (
        f"To provide {model!r}: (1) pass a local folder, ssl:/path/to/folder, holding config.json "
        f"and the weights written by save_pretrained; or (2) on a machine with network run "
        f"`hf download {model}` (huggingface_hub's command line) and copy ~/.cache/huggingface "
        f"(or the folder HF_HOME names) here, or point HF_HOME at the copy; or (3) go online "
        f"(unset HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."
    )


def folder_weights(directory: Path) -> tuple[Path, ...]:
    """Weight files of a save_pretrained folder (sharded or not); empty when there are none."""
    for index in WEIGHT_INDEXES:
        if (directory / index).is_file():
            shards = sorted(set(json.loads((directory / index).read_text())["weight_map"].values()))
            paths = tuple(directory / s for s in shards)
            if all(p.is_file() for p in paths):
                return paths
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return (directory / name,)
    return ()


def snapshot_commit(directory: Path) -> str | None:
    """The commit of an HF cache snapshot folder (``.../snapshots/<commit>``), else ``None``."""
    if directory.parent.name == "snapshots" and COMMIT_RE.match(directory.name):
        return directory.name
    return None


def sha256_files(paths: Sequence[Path]) -> str:
    """SHA-256 over file names and contents, read in blocks."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as fh:
            while block := fh.read(HASH_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def locate(arg: str) -> Source:
    """Find config + weights: a folder, the HF cache, or (when online) the hub.

    Raises:
        ExtractorUnavailable: the checkpoint is not here and cannot be fetched (the message
            says the three ways to provide it).
    """
    path = Path(arg).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ExtractorUnavailable(
                f"folder {str(path)!r} has no config.json; it must hold a checkpoint written by "
                f"save_pretrained (config.json + model.safetensors). " + how_to_provide(arg)
            )
        weights = folder_weights(path)
        if not weights:
            raise ExtractorUnavailable(
                f"folder {str(path)!r} has no weights (model.safetensors / pytorch_model.bin). "
                + how_to_provide(arg)
            )
        return Source("folder", path, snapshot_commit(path.resolve()), weights)
    if arg.startswith(("/", "./", "../", "~", ".\\")) or path.is_absolute():
        raise ExtractorUnavailable(f"model folder {arg!r} does not exist. " + how_to_provide(arg))

    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(arg, "config.json")
    except Exception as exc:  # noqa: BLE001 - e.g. an id that is not a valid repo name
        raise ExtractorUnavailable(
            f"{arg!r} is neither a local folder nor a valid hub id ({exc}). " + how_to_provide(arg)
        ) from exc
    if isinstance(cached, str):
        directory = Path(cached).parent
        weights = folder_weights(directory)
        if weights:
            return Source("folder", directory, snapshot_commit(directory), weights)
    if hub_offline():
        raise ExtractorUnavailable(
            f"model {arg!r} is not in the local Hugging Face cache and the hub is offline "
            f"(HF_HUB_OFFLINE=1). " + how_to_provide(arg)
        )
    why = hub_unreachable()
    if why is not None:  # offline at once, instead of the hub client's retries
        raise ExtractorUnavailable(
            f"model {arg!r} is not in the local Hugging Face cache and the hub cannot be reached: "
            f"{why}. " + how_to_provide(arg)
        )
    from huggingface_hub import constants, hf_hub_download

    log.info("%s is not in the local Hugging Face cache: downloading it from %s", arg,
             constants.ENDPOINT)
    try:
        config_path = Path(hf_hub_download(arg, "config.json"))
    except Exception as exc:  # noqa: BLE001 - unreachable hub, unknown repo, gated, ...
        raise ExtractorUnavailable(
            f"model {arg!r} is not in the local Hugging Face cache and the hub cannot serve it "
            f"({type(exc).__name__}: {exc}). " + how_to_provide(arg)
        ) from exc
    return Source("online", None, snapshot_commit(config_path.parent))


def load_config(arg: str, source: Source) -> Any:
    """The checkpoint's transformers config.

    Raises:
        ExtractorUnavailable: the config cannot be read.
    """
    from transformers import AutoConfig

    where = str(source.directory) if source.directory else arg
    try:
        return AutoConfig.from_pretrained(
            where, local_files_only=source.kind != "online", revision=source.commit
        )
    except Exception as exc:  # noqa: BLE001 - any failure means the checkpoint is unusable
        raise ExtractorUnavailable(f"cannot read the config of {arg!r}: {exc}") from exc


def model_class(arg: str, config: Any) -> type[nn.Module]:
    """The bare ``AutoModel`` class of a config (``Wav2Vec2Model``, ``HubertModel``, ...).

    Raises:
        ExtractorUnavailable: transformers has none for this model type.
    """
    from transformers import AutoModel

    try:
        return AutoModel._model_mapping[type(config)]
    except KeyError as exc:
        raise ExtractorUnavailable(
            f"transformers has no bare model class for model_type {config.model_type!r} ({arg!r})"
        ) from exc


def attention_implementation(cls: type[nn.Module]) -> str:
    """``sdpa`` where the model class supports it (linear-memory kernels), else ``eager``."""
    return "sdpa" if getattr(cls, "_supports_sdpa", False) else "eager"


def load_model(arg: str, source: Source, attn_implementation: str) -> nn.Module:
    """The checkpoint as a bare float32 model on the CPU (train mode as transformers leaves it).

    Raises:
        ExtractorUnavailable: the weights cannot be loaded.
    """
    from transformers import AutoModel

    where = str(source.directory) if source.directory is not None else arg
    try:
        return AutoModel.from_pretrained(
            where,
            attn_implementation=attn_implementation,
            dtype=torch.float32,
            local_files_only=source.kind != "online",
            revision=source.commit if source.kind == "online" else None,
        )
    except Exception as exc:  # noqa: BLE001
        raise ExtractorUnavailable(f"cannot load the weights of {arg!r}: {exc}") from exc


def read_do_normalize(arg: str, source: Source, config: Any) -> tuple[bool, str]:
    """do_normalize from preprocessor_config.json, else the fairseq training default.

    Returns:
        ``(do_normalize, where it came from)``.

    Raises:
        ExtractorUnavailable: the checkpoint expects another sampling rate.
    """
    path = None
    if source.directory is not None:
        path = source.directory / "preprocessor_config.json"
    elif source.kind == "online":
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(arg, "preprocessor_config.json", revision=source.commit))
        except Exception:  # noqa: BLE001 - the file is optional
            path = None
    if path is not None and path.is_file():
        pre = json.loads(path.read_text())
        rate = pre.get("sampling_rate", SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            raise ExtractorUnavailable(
                f"{arg!r} expects {rate} Hz audio; this pipeline feeds {SAMPLE_RATE} Hz"
            )
        return bool(pre.get("do_normalize", True)), "preprocessor_config.json"
    return getattr(config, "feat_extract_norm", "layer") == "layer", "default (layer-norm conv encoder)"


def weights_identity(source: Source) -> dict[str, str]:
    """``{"hub_commit": ...}`` when the commit is known, else ``{"sha256": ...}`` of the files."""
    if source.commit is not None:
        return {"hub_commit": source.commit}
    return {"sha256": sha256_files([source.directory / "config.json", *source.weights])}


def readable_name(arg: str) -> str:
    """``ssl-<model basename>``; a fine-tuned folder gives the name in its :data:`FINETUNED_FILE`.

    Example:
        >>> readable_name("/models/My HuBERT/")
        'ssl-my-hubert'
    """
    path = Path(arg.rstrip("/\\"))
    base = path.name
    if path.is_dir() and (info := finetuned_info(path)) and info.get("name"):
        base = str(info["name"])
    if COMMIT_RE.match(base) and path.parent.name == "snapshots":
        base = path.parent.parent.name.split("--")[-1]  # models--org--name/snapshots/<commit>
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.").lower() or "model"
    return f"ssl-{base}"
