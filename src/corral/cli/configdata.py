"""Building a ConfigMap or Secret from the ``--from-literal``/``--from-file``/``--from-env-file`` flags.

Pure logic: the parsing rules and messages of kubectl's ``create configmap`` and ``create secret generic``
(``ParseLiteralSource``, ``ParseFileSource``, ``AddFromEnvFile`` and the ``addKeyFrom...`` helpers). Files are
read through a small :class:`Files` protocol, so tests pass a dict and the CLI passes the real file system;
the environment (an env-file line without ``=`` takes its value from it) is passed in too. Every failure is a
:class:`SourceError` whose text is kubectl's message (without the ``error: `` prefix).
"""

from __future__ import annotations

import base64
import os
import posixpath
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from corral.api.validation import config_key_errors

JSON = dict[str, Any]

_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
ENV_NAME_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
    "and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used "
    "for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
)
_UTF8_BOM = b"\xef\xbb\xbf"


class SourceError(Exception):
    """A flag value kubectl would refuse; ``str(exc)`` is kubectl's message."""


def env_name_errors(name: str) -> list[str]:
    """``validation.IsEnvVarName``."""
    errs = [] if _ENV_NAME.fullmatch(name) else [ENV_NAME_MSG]
    # the same reserved names as config keys: an env-file key becomes a ConfigMap/Secret key
    return errs + [e for e in config_key_errors(name) if e.startswith("must not")]


# --- flag parsing --------------------------------------------------------------------------------------


def parse_literal(source: str) -> tuple[str, str]:
    """``K=V`` → ``(K, V)``: split at the first ``=``; surrounding quotes on the value are dropped."""
    key, sep, value = source.partition("=")
    if not sep or not key:
        raise SourceError(f"invalid literal source {source}, expected key=value")
    return key, value.strip("\"'")


def parse_file_source(source: str) -> tuple[str, str, bool]:
    """``[KEY=]PATH`` → ``(key, path, key_given)``; without a key the key is the file's base name."""
    count = source.count("=")
    if count == 0:
        return posixpath.basename(source.replace("\\", "/")), source, False
    if count == 1 and source.startswith("="):
        raise SourceError(f"key name for file path {source[1:]} missing")
    if count == 1 and source.endswith("="):
        raise SourceError(f"file path for key name {source[:-1]} missing")
    if count > 1:
        raise SourceError("key names or file paths cannot contain '='")
    key, path = source.split("=")
    return key, path, True


def parse_env_file(content: bytes, path: str, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """kubectl's env-file syntax: ``KEY=VALUE`` per line, taken verbatim (no quoting, no ``export``);
    blank lines and ``#`` comments skipped; a bare ``KEY`` takes its value from ``environ``."""
    pairs: list[tuple[str, str]] = []
    for number, raw in enumerate(content.splitlines()):
        if number == 0:
            raw = raw.removeprefix(_UTF8_BOM)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SourceError(
                f"env file {path} contains invalid utf8 bytes at line {number + 1}: {list(raw)}"
            ) from None
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        errs = env_name_errors(key)
        if errs:
            raise SourceError(f'"{key}" is not a valid key name: {";".join(errs)}')
        pairs.append((key, value if sep else environ.get(key, "")))
    return pairs


# --- file access ---------------------------------------------------------------------------------------


class Files(Protocol):
    """What building an object reads: a path's kind, a directory's regular files, a file's bytes.
    Methods raise :class:`SourceError` with kubectl's ``error reading PATH: ...`` text."""

    def is_dir(self, path: str) -> bool: ...

    def regular_files(self, path: str) -> list[tuple[str, str]]: ...

    def read(self, path: str) -> bytes: ...


class LocalFiles:
    """:class:`Files` over the real file system."""

    def _stat_error(self, path: str, exc: OSError) -> SourceError:
        reason = (exc.strerror or str(exc)).lower()
        return SourceError(f"error reading {path}: {reason}")

    def is_dir(self, path: str) -> bool:
        try:
            return stat.S_ISDIR(os.stat(path).st_mode)
        except OSError as exc:
            raise self._stat_error(path, exc) from None

    def regular_files(self, path: str) -> list[tuple[str, str]]:
        """``(name, path)`` of the directory's regular files, by name; symlinks and subdirectories are
        skipped, as kubectl skips them (it looks at the entry's own type, not its target's)."""
        try:
            entries = sorted(Path(path).iterdir(), key=lambda p: p.name)
            return [(p.name, str(p)) for p in entries if p.is_file() and not p.is_symlink()]
        except OSError as exc:
            raise self._stat_error(path, exc) from None

    def read(self, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise self._stat_error(path, exc) from None


# --- building ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Sources:
    """The data flags of one ``create configmap`` / ``create secret generic`` command, in flag order."""

    literals: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)


def _pairs(sources: Sources, files: Files, environ: Mapping[str, str]) -> list[tuple[str, bytes]]:
    """Every ``(key, bytes)`` the flags name, in kubectl's order: files, then literals, then env files."""
    if sources.env_files and (sources.files or sources.literals):
        raise SourceError("from-env-file cannot be combined with from-file or from-literal")
    out: list[tuple[str, bytes]] = []
    for source in sources.files:
        key, path, key_given = parse_file_source(source)
        if files.is_dir(path):
            if key_given:
                raise SourceError("cannot give a key name for a directory path")
            out.extend((name, files.read(item)) for name, item in files.regular_files(path))
        else:
            out.append((key, files.read(path)))
    for literal in sources.literals:
        key, value = parse_literal(literal)
        out.append((key, value.encode()))
    for env_file in sources.env_files:
        if files.is_dir(env_file):
            raise SourceError("env config file cannot be a directory")
        out.extend((k, v.encode()) for k, v in parse_env_file(files.read(env_file), env_file, environ))
    return out


def _base(kind: str, name: str, namespace: str | None) -> JSON:
    meta: JSON = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": kind, "metadata": meta}


def build_configmap(
    name: str, sources: Sources, files: Files, environ: Mapping[str, str], namespace: str | None = None
) -> JSON:
    """The ConfigMap the flags describe: UTF-8 content in ``data``, anything else base64 in ``binaryData``."""
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    for key, content in _pairs(sources, files, environ):
        errs = config_key_errors(key)
        if errs:
            raise SourceError(f'"{key}" is not a valid key name for a ConfigMap: {",".join(errs)}')
        for taken, label in ((data, "Data"), (binary, "BinaryData")):
            if key in taken:
                raise SourceError(
                    f'cannot add key "{key}", another key by that name already exists in {label} for '
                    f'ConfigMap "{name}"'
                )
        try:
            data[key] = content.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(content).decode("ascii")
    obj = _base("ConfigMap", name, namespace)
    if data:
        obj["data"] = data
    if binary:
        obj["binaryData"] = binary
    return obj


def build_secret(
    name: str,
    sources: Sources,
    files: Files,
    environ: Mapping[str, str],
    namespace: str | None = None,
    secret_type: str = "",
) -> JSON:
    """The Secret the flags describe: every value base64 in ``data``; ``type`` only when given (the server
    defaults it to ``Opaque``), as kubectl's ``--dry-run=client -o yaml`` shows."""
    data: dict[str, str] = {}
    for key, content in _pairs(sources, files, environ):
        errs = config_key_errors(key)
        if errs:
            raise SourceError(f'"{key}" is not valid key name for a Secret {";".join(errs)}')
        if key in data:
            raise SourceError(f"cannot add key {key}, another key by that name already exists")
        data[key] = base64.b64encode(content).decode("ascii")
    obj = _base("Secret", name, namespace)
    if data:
        obj["data"] = data
    if secret_type:
        obj["type"] = secret_type
    return obj
