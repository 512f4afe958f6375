"""Where the repository and its Hydra configs are (one definition for every room)."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"
