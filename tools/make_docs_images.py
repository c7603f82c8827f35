"""Make docs/blockmap.png and docs/explore.svg from a cmsfs-fuse image in ../shared/images/cms.

    .venv/bin/python tools/make_docs_images.py [--shared DIR]

The image is decompressed into a temp dir (the shared copy is never touched). The PNG is
``fsproto map --png`` of edf512-mixed with TREEV.DATA highlighted; the SVG is the explorer after
the keys / TREEV.DATA, space, down, space, down (its second-level pointer block).
"""

from __future__ import annotations

import argparse
import asyncio
import lzma
import tempfile
from pathlib import Path

from fsproto.formats.cms import FORMAT
from fsproto.rawdev import ImageFile
from fsproto.view.explore import ExplorerApp
from fsproto.view.png import write_png

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared/ directory")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        img = Path(tmp) / "edf512-mixed.img"
        img.write_bytes(lzma.decompress((args.shared / "images/cms/edf512-mixed.img.xz").read_bytes()))
        with ImageFile(img) as dev:
            bmap = FORMAT.block_map(dev)
            write_png(bmap, ROOT / "docs/blockmap.png", highlight="TREEV.DATA")
            app = ExplorerApp(bmap, FORMAT.outline(dev, bmap))

            async def run() -> None:
                async with app.run_test(size=(150, 48)) as pilot:
                    await pilot.press("slash", *"TREEV.DATA", "enter", "space", "down", "space", "down")
                    await pilot.pause()
                    (ROOT / "docs/explore.svg").write_text(app.export_screenshot())

            asyncio.run(run())
    print("wrote docs/blockmap.png and docs/explore.svg")


if __name__ == "__main__":
    main()
