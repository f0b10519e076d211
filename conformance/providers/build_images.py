"""scripts/build-images: ``python -m conformance.providers.build_images [--check] [NAME ...]`` builds the
container targets' images that are missing (or, with --check, says which are present)."""

from __future__ import annotations

import argparse
import json
import time

from .. import __version__
from ..data import checkout_root
from ..errors import HarnessError
from .engine import engine_problem, image_exists
from .images import IMAGES, build_all


def main(argv: list[str] | None = None) -> int:
    """Exit 0 built or present, 1 a build failed, 2 unknown image names, 3 no container engine."""
    ap = argparse.ArgumentParser(prog="build-images", description="build the container targets' images")
    ap.add_argument("names", nargs="*", help=f"images to build (default: all of {', '.join(IMAGES)}); "
                                             "'suite' builds the suite's own image (conformance/suite_image.py)")
    ap.add_argument("--check", action="store_true", help="only say which images are present")
    args = ap.parse_args(argv)
    names = args.names or list(IMAGES)
    suite = "suite" in names
    names = [n for n in names if n != "suite"]
    unknown = [n for n in names if n not in IMAGES]
    if unknown:
        print(f"build-images: unknown image(s) {', '.join(unknown)}; known: {', '.join(IMAGES)}")
        return 2
    problem = engine_problem()
    if problem:
        print(f"build-images: {problem}")
        return 3
    if args.check:
        tags = [IMAGES[n].tag() for n in names]
        if suite:
            from ..suite_image import REPOSITORY, image_tag

            root = checkout_root()
            tags.append(image_tag(root) if root else f"{REPOSITORY}:{__version__}")
        for tag in tags:
            print(f"{tag:40} {'present' if image_exists(tag) else 'missing'}")
        return 0
    t0 = time.monotonic()
    try:
        timings = build_all(names)
        if suite:
            from ..suite_image import build as build_suite

            build_suite(timings=timings)
    except HarnessError as e:
        print(f"build-images: {e}")
        return 1
    timings["total"] = round(time.monotonic() - t0, 1)
    print("build-images: " + json.dumps(timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
