"""The trainer image's tag: a content hash of exactly what goes into the image.

The image holds the trainer package, the trainer configs, constraints.txt and is built by
containers/trainer/Dockerfile with the repository root as context (.dockerignore picks the files).
Hashing those files, and nothing else, gives a tag that changes when the image would change and
only then: an orchestrator-only commit keeps the tag, so it never makes a launch look for an image
that was not built. `make image` (containers/build-image.sh) tags with it; the orchestrator derives
the same tag from the same checkout and checks that the image exists before a swarm asks its tuner
for anything.

Run as a module: ``python -m orchestrator.image_tag [--root DIR] [--files | --sources]`` prints the
tag of the checkout at DIR (default this one), or the hashed files, or the source paths.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
# What the image is built from, relative to the repository root; keep in step with .dockerignore
# (a test checks both list the same sources).
IMAGE_SOURCES = (
    ".dockerignore",
    "containers/trainer/Dockerfile",
    "constraints.txt",
    "trainer",
    "configs/trainer",
    "configs/smoke.yaml",
)
# Build debris that .dockerignore keeps out of the context inside those folders.
_DEBRIS_DIRS = {"__pycache__", "build", ".pytest_cache"}
_DEBRIS_SUFFIXES = (".pyc", ".egg-info")


def _debris(path: Path) -> bool:
    return any(part in _DEBRIS_DIRS or part.endswith(_DEBRIS_SUFFIXES) for part in path.parts)


def image_files(root: Path = REPO_ROOT) -> list[Path]:
    """The files the image is built from, relative to root, sorted.

    Raises:
        FileNotFoundError: a source in IMAGE_SOURCES is missing (not a full checkout).
    """
    files: list[Path] = []
    for source in IMAGE_SOURCES:
        path = root / source
        if path.is_file():
            files.append(Path(source))
        elif path.is_dir():
            files += [p.relative_to(root) for p in path.rglob("*") if p.is_file()]
        else:
            raise FileNotFoundError(f"{path}: an image source is missing")
    return sorted(p for p in files if not _debris(p))


def content_tag(root: Path = REPO_ROOT) -> str:
    """16 hex digits of the sha256 over every image file's path and content."""
    h = hashlib.sha256()
    for rel in image_files(root):
        h.update(rel.as_posix().encode() + b"\0")
        h.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.image_tag", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the checkout (default: this one)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--files", action="store_true", help="print the hashed files instead")
    what.add_argument("--sources", action="store_true", help="print IMAGE_SOURCES instead")
    args = parser.parse_args(argv)
    try:
        if args.sources:
            print("\n".join(IMAGE_SOURCES))
        elif args.files:
            print("\n".join(p.as_posix() for p in image_files(args.root)))
        else:
            print(content_tag(args.root))
    except FileNotFoundError as e:
        print(f"image_tag: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
