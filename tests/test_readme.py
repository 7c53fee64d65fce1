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


def test_a_distilled_model_names_its_teacher_its_members_and_the_whole_recipe():
    from training.results_table import teacher_sentence

    stage = {"command": "train.py --seed 4", "train_seconds": 6000.0}
    member = {"model": "device/models/fer_int8.tflite", "sha256": "ab" * 32, "PublicTest": 0.7, "PrivateTest": 0.71,
              "stages": [stage]}
    run = {"config": {"distill_alpha": 0.7, "distill_temperature": 4.0}, "recipe_train_seconds": 12600.0,
           "teacher": {"file": "runs/teacher.npz", "command": "python training/distill.py teacher --private",
                       "seconds": 120.0, "ensemble_accuracy": {"PublicTest": 0.72, "PrivateTest": 0.73},
                       "accuracy": [member, member | {"model": "runs/s4/model.keras", "PrivateTest": 0.7}]}}
    sentence = teacher_sentence(run)
    assert sentence.startswith(" Distilled (Hinton et al. 2015; alpha 0.7, temperature 4.0) from a teacher of 2 "
                               "models with flip TTA (PublicTest 72.00%, PrivateTest 73.00%)")
    assert "made by `python training/distill.py teacher --private` (2 min)" in sentence
    assert "`device/models/fer_int8.tflite`, sha256 abababababab (PublicTest 70.00%, PrivateTest 71.00%; trained by " \
           "`train.py --seed 4` (100 min))" in sentence
    assert "`runs/s4/model.keras` (PublicTest 70.00%, PrivateTest 70.00%;" in sentence
    assert sentence.endswith("The whole recipe, teacher included: 210 min.")
    assert teacher_sentence({"stages": []}) == ""
    unread = teacher_sentence({"config": {}, "teacher": {"file": "runs/teacher.npz"}})
    assert "`runs/teacher.npz`, whose record was not found" in unread
