"""Seed 004's Keras CNN in archlab: summary, parameter count and training with archlab's trainer.

Seed 004 builds its sixth model in TensorFlow Keras::

    Conv2D(32, 3, relu) BatchNorm MaxPool(2)  Conv2D(64, 3, relu) BatchNorm MaxPool(2)
    Conv2D(128, 3, relu) BatchNorm GlobalAveragePooling2D  Dense(256, relu) Dropout(0.5) Dense(10, softmax)

Here it is the same Keras code on Keras 3's torch backend (``KERAS_BACKEND=torch``; no
TensorFlow), wrapped by :func:`archlab.models.keras_adapter.from_keras`. This example is a
Python file, not a YAML run file, because its point is a model written in Keras by the user:
a YAML file names registry presets, and a registry preset would make it an archlab model.

Two changes from the seed, both for archlab's trainer: the last Dense has no softmax (archlab's
classification loss takes logits, as ``from_logits=True`` would in Keras), and for the 8x8
digits the convolutions use ``padding="same"`` (with the seed's "valid" convolutions an 8x8
image is too small for three blocks). ``python examples/keras_cnn.py`` prints the summary of
the seed's 32x32x3 model and its ``count_params()``, then trains the digits variant for 5 epochs
(100 steps) and prints its test accuracy.

Keras's ``BatchNormalization`` keeps 99% of its moving statistics per step (``momentum=0.99``):
after 100 steps 37% of the initial mean 0 / variance 1 remain, and the evaluation, which uses
them, scored 0.29 to 0.78. The digits run therefore wraps the model with
``batchnorm_momentum="torch"`` (0.9, PyTorch's convention; archlab logs it and records it in the
run's config.yaml); without it archlab warns before the first step and names the fix. The Keras
seed is set before the model is built, so its initial weights, like the run, follow the seed.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

SEED = 0


def keras_cnn(input_shape=(32, 32, 3), num_classes: int = 10, padding: str = "valid", softmax: bool = False):
    """Seed 004's Keras CNN (channels-last input ``input_shape``), layers named so that its
    weights' names are the same in every build."""
    import keras
    from keras import layers

    blocks = []
    for i, width in enumerate((32, 64, 128), start=1):
        blocks += [
            layers.Conv2D(width, (3, 3), activation="relu", padding=padding, name=f"conv{i}"),
            layers.BatchNormalization(name=f"bn{i}"),
        ]
        blocks.append(
            layers.MaxPooling2D((2, 2), name=f"pool{i}") if i < 3 else layers.GlobalAveragePooling2D(name="gap")
        )
    return keras.Sequential(
        [
            keras.Input(input_shape),
            *blocks,
            layers.Dense(256, activation="relu", name="fc1"),
            layers.Dropout(0.5, name="dropout"),
            layers.Dense(num_classes, activation="softmax" if softmax else None, name="fc2"),
        ],
        name="keras_cnn",
    )


def main() -> None:
    import archlab
    from archlab.models.keras_adapter import from_keras

    seed_model = keras_cnn()  # the seed's (32, 32, 3) model
    module = from_keras(seed_model, channels_first=True)  # takes (B, 3, 32, 32), like archlab's image data
    print(archlab.render(archlab.summary(module), "text"))
    print(f"Keras count_params(): {seed_model.count_params():,}")

    import keras

    keras.utils.set_random_seed(SEED)  # the initial weights are drawn when the model is built
    digits = from_keras(
        keras_cnn(input_shape=(8, 8, 1), padding="same"), channels_first=True, batchnorm_momentum="torch"
    )
    result = archlab.fit(
        digits,
        "digits",
        task="classification",
        out_dir="runs",
        run_name="keras_cnn_digits",
        epochs=5,
        batch_size=64,
        lr=3e-3,
        seed=SEED,
    )
    print(
        f"digits test accuracy after 5 epochs ({result.steps} steps): {result.metrics['test_accuracy']:.3f} ({result.run_dir})"
    )


if __name__ == "__main__":
    main()
