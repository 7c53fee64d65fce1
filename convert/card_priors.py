"""Add the `[classifier] prior` keys and figures to an existing model card, without converting again.

`convert/quantize.py` writes these itself for every new model; this is for a card written before it did
(the model bytes, sha256 and every other figure stay as they are). It counts FER2013 Training's classes
(`train_class_frequencies`), records the prior the model's outputs carry (`output_prior`: from the card's
training config, `logit_adjust_tau`, absent = 0 = "fer2013"), and measures the int8 model through
`device.classifier.EmotionClassifier` on PublicTest and PrivateTest under each prior, single crop and
with the daemon's TTA (`evaluation.splits.<split>.int8.priors`).

    python convert/card_priors.py --model device/models/fer_int8.tflite
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python convert/card_priors.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert.quantize import prior_fields, prior_figures, write_card  # noqa: E402
from device.classifier import EmotionClassifier, ModelError, card_path_for, load_card  # noqa: E402
from training import data  # noqa: E402
from training.balance import class_frequencies, output_prior_power  # noqa: E402
from training.evaluate import OutputPrior  # noqa: E402

log = logging.getLogger("card_priors")


def add_priors(model: Path, root: Path) -> dict:
    """The card of `model` with the prior keys and figures added (not written).

    Raises:
        device.classifier.ModelError: no card, or a card that does not describe `model`.
        OSError, ValueError: FER2013 cannot be read.
    """
    card = load_card(model)
    if card is None:
        raise ModelError(f"{card_path_for(model)}: no model card to add the priors to")
    tau = ((card.get("training_run") or {}).get("config") or {}).get("logit_adjust_tau", 0.0)
    prior = OutputPrior(class_frequencies(data.load(root, "Training").labels), output_prior_power(tau))
    classifier = EmotionClassifier(model, num_threads=os.cpu_count())  # raw outputs: no prior change
    splits = card["evaluation"]["splits"]
    limit = card["evaluation"].get("limit_per_split")
    for name in splits:
        split = data.limit(data.load(root, name), limit)
        splits[name]["int8"]["priors"] = prior_figures(classifier.predict, split, prior)
    fields = prior_fields(prior)
    # The prior keys go before "preprocessing", where convert/quantize.py writes them.
    ordered: dict = {}
    for key, value in card.items():
        if key == "preprocessing":
            ordered.update(fields)
        if key not in fields:
            ordered[key] = value
    return ordered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the .tflite whose card (beside it) to update")
    parser.add_argument("--data", type=Path, default=None, help="FER2013 folder (default $FER2013_DIR or ../shared)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        card = add_priors(args.model, args.data or data.default_root())
    except (OSError, ValueError, ModelError) as err:
        log.error("%s", err)
        return 2
    path = card_path_for(args.model)
    write_card(card, path)
    for split, result in card["evaluation"]["splits"].items():
        for prior, modes in result["int8"]["priors"].items():
            for mode, r in modes.items():
                print(f"{split:<12} prior {prior:<8} {mode:<9} accuracy {r['accuracy']:.2%}  balanced "
                      f"{r['balanced_accuracy']:.2%}  macro-F1 {r['macro_f1']:.4f}  recall "
                      + " ".join(f"{k} {v:.3f}" for k, v in r["per_class_recall"].items()))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
