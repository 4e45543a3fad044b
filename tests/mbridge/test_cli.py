"""The `mbridge` CLI: listings answer without importing torch or megatron-core."""

import subprocess
import sys

import pytest

from mbridge.recipe_index import find_recipes

NO_HEAVY_IMPORTS = (
    "import sys\n"
    "from mbridge.cli import main\n"
    "try:\n    code = main({argv!r})\nexcept SystemExit as exit:\n    code = exit.code\n"
    "heavy = [m for m in ('torch', 'megatron', 'mbridge_config') if m in sys.modules]\n"
    "assert not heavy, heavy\n"
    "sys.exit(code or 0)\n"
)


@pytest.mark.parametrize("argv, expected", [(["--help"], "usage: mbridge"),
                                             (["recipes"], "recipes"),
                                             (["data", "--help"], "preprocess")])
def test_listings_import_nothing_heavy(argv, expected):
    done = subprocess.run([sys.executable, "-c", NO_HEAVY_IMPORTS.format(argv=argv)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def test_recipes_are_found_by_reading_sources(tmp_path):
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "__init__.py").write_text("")
    (tmp_path / "llama" / "llama3_8b.py").write_text(
        "import torch  # never imported by the scan\n"
        "def pretrain_config(**overrides):\n    '''Llama 3 8B pretraining.\n\n    More.'''\n"
        "def finetune_config():\n    pass\n"
        "def _private_config():\n    pass\n"
        "def helper():\n    pass\n"
        "class NotARecipe_config:\n    pass\n")
    (tmp_path / "tiny.py").write_text("def smoke_config():\n    '''Seconds on a CPU.'''\n")
    (tmp_path / "_internal.py").write_text("def hidden_config():\n    pass\n")
    recipes = {r.name: r.summary for r in find_recipes(tmp_path)}
    assert recipes == {"llama.llama3_8b.pretrain_config": "Llama 3 8B pretraining.",
                       "llama.llama3_8b.finetune_config": "",
                       "tiny.smoke_config": "Seconds on a CPU."}
