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


def test_training_sentence_names_every_stage_and_the_summed_wall_clock():
    from training.results_table import REPRODUCE, training_sentence

    run = {"hardware": {"cores": 2, "cpu": "AMD EPYC", "keras_backend": "tensorflow"},
           "stages": [{"command": "train.py --out runs/stage1", "train_seconds": 600.0, "best_epoch": 9, "epochs": 10},
                      {"command": "train.py --init-from runs/stage1/model.keras", "train_seconds": 1200.0,
                       "best_epoch": 5, "epochs": 6}]}
    sentence = training_sentence(run)
    assert sentence.startswith("Training: 30 min wall clock on a 2-core AMD EPYC CPU")
    assert "`train.py --out runs/stage1` (10 min, best PublicTest epoch 9 of 10)" in sentence
    assert "then `train.py --init-from runs/stage1/model.keras` (20 min" in sentence
    assert f"`{REPRODUCE}` runs them all" in sentence


def test_a_single_or_unfinished_run_is_described_as_it_is():
    from training.results_table import REPRODUCE, training_sentence

    hardware = {"cores": 2, "cpu": "AMD EPYC", "keras_backend": "tensorflow"}
    stage = {"run": "runs/long", "command": "train.py --config long.toml --out runs/long", "train_seconds": 6000.0,
             "best_epoch": 190, "epochs": 200}
    finished = training_sentence({"hardware": hardware, "stages": [stage]})
    assert finished.startswith("Training: 100 min wall clock") and finished.count(" min") == 1
    assert "(best PublicTest epoch 190 of 200)" in finished and finished.endswith(f"`{REPRODUCE}` runs it.")
    unfinished = training_sentence({"hardware": hardware, "stages": [stage | {"epochs_done": 80, "best_epoch": 78}]})
    assert "stopped after epoch 80 of 200, this model" in unfinished and unfinished.count(" min") == 1
    assert "best PublicTest epoch so far, 78" in unfinished and "--out runs/long --resume" in unfinished
    assert REPRODUCE not in unfinished
