"""Build the one node image, with or without a container registry.

Every node runs `python3 -m lab.nodes <role> <config.json>` from the same
image, tagged `smtplab-node:<digest>`, the digest covering the project's
sources, the exact dependency versions and the build recipe: an unchanged
project finds its image with one `images.get` and builds nothing.

Two ways to a base with Python 3.11, iproute2 and iptables (`base`): online,
`python:3.11-slim` from a registry plus iproute2/iptables from apt; offline
(CI has no registry), `debootstrap --variant=minbase` a Debian bookworm root
filesystem, `docker import`ed as `smtplab-base:<key>`. Either way the node
image is built by the docker SDK (`build`) from a context of
`compose/node.Dockerfile` plus wheels of pip, the project and its runtime
dependencies (`wheels`), fetched on the host for the image's platform and
installed inside with `--no-index`. What goes in, and the digest, is `sources`.
"""

from __future__ import annotations

from lab.runtime.image.base import BASE_PACKAGES, registry_reachable, rootfs_key
from lab.runtime.image.build import (
    build_node_image,
    node_image_tag,
    present_node_image,
    remove_stale_images,
    why_unbuildable,
)
from lab.runtime.image.sources import (
    DOCKERFILE,
    Dependency,
    ImageBuildError,
    image_digest,
    project_root,
    runtime_dependencies,
    source_files,
)
from lab.runtime.image.wheels import Wheels, build_context

__all__ = [
    "BASE_PACKAGES",
    "DOCKERFILE",
    "Dependency",
    "ImageBuildError",
    "Wheels",
    "build_context",
    "build_node_image",
    "image_digest",
    "node_image_tag",
    "present_node_image",
    "project_root",
    "registry_reachable",
    "remove_stale_images",
    "rootfs_key",
    "runtime_dependencies",
    "source_files",
    "why_unbuildable",
]
