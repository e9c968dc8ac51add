"""Put gen/ (generated protobuf code, git-ignored) on the virtualenv's import path (.pth file)."""

import site
from pathlib import Path

GEN_DIR = Path(__file__).resolve().parent.parent / "gen"
(Path(site.getsitepackages()[0]) / "r3mes_generated.pth").write_text(f"{GEN_DIR}\n")
