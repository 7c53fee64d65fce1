"""The README's figures are the project's own outputs: its result blocks match the model card and report."""

from tests.conftest import REPO
from training.results_table import BLOCKS, blocks, replace_block


def test_readme_blocks_match_the_model_card_and_benchmark_report():
    readme = (REPO / "README.md").read_text()
    for block, content in blocks().items():
        assert replace_block(readme, block, content) == readme, (
            f"README block {block!r} is stale: run python -m training.results_table --write")
    assert set(blocks()) == set(BLOCKS)  # both the card and the benchmark report are committed


def test_readme_names_the_two_setup_commands():
    readme = (REPO / "README.md").read_text()
    assert "scripts/demo.sh" in readme and "scripts/test.sh" in readme
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text()
