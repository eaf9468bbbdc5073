"""What the container runtimes say of their containers: the name a person knows a
container by, and its image.

A cgroup path gives a container's runtime and id (cgroups.container_of); the name
and the image are in the runtime's own state files, read here.  No runtime's CLI
or socket is asked: a reader must never wait on a daemon, and these files are
what those answer from.
- podman and CRI-O keep containers in containers/storage:
  <graph root>/overlay-containers/containers.json lists each one's id, names and
  metadata (image-name).  The graph root is root's default, /var/lib/containers/storage.
- Docker: /var/lib/docker/containers/<id>/config.v2.json ("Name", "Config.Image").
- containerd (Kubernetes' CRI, nerdctl): each running task's OCI bundle,
  /run/containerd/io.containerd.runtime.v2.task/<namespace>/<id>/config.json, whose
  annotations name it: a Kubernetes container as POD/CONTAINER
  (io.kubernetes.cri.sandbox-name, container-name; image-name), nerdctl's by
  nerdctl/name.
A file that is missing or unreadable (that runtime is not installed, or a
rootless one keeps its state elsewhere) gives no names: a container is then known
by its id alone."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

PODMAN_STORAGE = Path("/var/lib/containers/storage/overlay-containers/containers.json")
DOCKER_CONTAINERS = Path("/var/lib/docker/containers")
CONTAINERD_TASKS = Path("/run/containerd/io.containerd.runtime.v2.task")
# A state file larger than this is not read (a host with that many containers
# still gets ids): reading one is on the reader's path.
_FILE_LIMIT = 64 << 20


class ContainerMeta(NamedTuple):
    name: str | None
    image: str | None


@dataclass
class ContainerCatalog:
    """Names and images by container id, from the runtimes' state files.  A file is
    read again once it has changed (its mtime), and only when an id or a name is
    asked for that the catalog does not know: a reader asks once per new cgroup."""

    podman_storage: Path = PODMAN_STORAGE
    docker_containers: Path = DOCKER_CONTAINERS
    containerd_tasks: Path = CONTAINERD_TASKS
    _known: dict[str, ContainerMeta] = field(default_factory=dict)
    _read_at: dict[Path, int] = field(default_factory=dict)

    def meta(self, container_id: str) -> ContainerMeta | None:
        """The name and image of the container with this full id, if a runtime says."""
        found = self._known.get(container_id)
        if found is None:
            self._refresh()
            found = self._known.get(container_id)
        return found

    def ids_named(self, name: str) -> list[str]:
        """The ids of the containers called `name` (several runtimes may each have one)."""
        self._refresh()
        return sorted(cid for cid, m in self._known.items() if m.name == name)

    def _refresh(self) -> None:
        storage = self.podman_storage
        if self._changed(storage):
            self._known.update(_podman_containers(storage))
        for config in _files(self.docker_containers, "*/config.v2.json"):
            if self._changed(config):
                self._known.update(_docker_container(config))
        for config in _files(self.containerd_tasks, "*/*/config.json"):
            if self._changed(config):
                self._known.update(_containerd_task(config))

    def _changed(self, path: Path) -> bool:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return False
        if self._read_at.get(path) == mtime:
            return False
        self._read_at[path] = mtime
        return True


def _files(root: Path, pattern: str) -> Iterator[Path]:
    try:
        yield from root.glob(pattern)
    except OSError:
        return


def _json_of(path: Path):
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > _FILE_LIMIT:
                return None
            return json.load(f)
    except (OSError, ValueError):
        return None


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _podman_containers(path: Path) -> dict[str, ContainerMeta]:
    found = {}
    for c in _json_of(path) or ():
        if not isinstance(c, dict) or not _text(c.get("id")):
            continue
        names = c.get("names") or ()
        try:
            metadata = json.loads(c.get("metadata") or "{}")
        except ValueError:
            metadata = {}
        image = _text(metadata.get("image-name")) if isinstance(metadata, dict) else None
        found[c["id"]] = ContainerMeta(_text(names[0]) if names else None, image)
    return found


def _docker_container(path: Path) -> dict[str, ContainerMeta]:
    config = _json_of(path)
    if not isinstance(config, dict) or not _text(config.get("ID")):
        return {}
    name = _text(config.get("Name"))
    image = (config.get("Config") or {}).get("Image")
    return {config["ID"]: ContainerMeta(name.lstrip("/") if name else None, _text(image))}


def _containerd_task(path: Path) -> dict[str, ContainerMeta]:
    config = _json_of(path)
    if not isinstance(config, dict):
        return {}
    notes = config.get("annotations") or {}
    pod = _text(notes.get("io.kubernetes.cri.sandbox-name"))
    container = _text(notes.get("io.kubernetes.cri.container-name"))
    name = f"{pod}/{container}" if pod and container else _text(notes.get("nerdctl/name"))
    image = _text(notes.get("io.kubernetes.cri.image-name"))
    return {path.parent.name: ContainerMeta(name, image)}
