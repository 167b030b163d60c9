"""The model card's training section: the recipe in words and the commands that reproduce it."""

from classifier.model_summary import train_command, training_recipe

CONTINUED = {"size": 224, "epochs": 6, "learning_rate": 1e-4, "schedule": "constant", "optimizer": "adamw",
             "augment": "gentle", "label_smoothing": 0.1, "batch_size": 32, "class_weight_power": 0.5,
             "init_from": ["runs/c/epoch9.weights.h5", "runs/c/epoch10.weights.h5"],
             "weights": "mean of epochs 1-6", "epochs_run": 6}


def test_a_continued_weight_averaging_run_is_reproducible_from_the_card():
    command = train_command(CONTINUED)
    assert "--schedule constant" in command and "--lr 0.0001" in command and "--epochs 6" in command
    assert "--init-from runs/c/epoch9.weights.h5 runs/c/epoch10.weights.h5" in command
    assert command.endswith("--average-last 6")
    recipe = training_recipe(CONTINUED)
    assert "AdamW at a constant lr 0.0001 for 6 epochs" in recipe
    assert "started from the mean of the weights runs/c/epoch9.weights.h5, runs/c/epoch10.weights.h5" in recipe


def test_a_run_from_imagenet_names_no_starting_weights():
    fresh = {**CONTINUED, "init_from": [], "schedule": "cosine", "weights": None, "best_epoch": 4}
    assert "--init-from" not in train_command(fresh) and "started from" not in training_recipe(fresh)
    assert "cosine decay" in training_recipe(fresh)


def test_the_training_command_names_the_compression_and_colour_settings():
    command = train_command({**CONTINUED, "jpeg_consistency": 12.0, "jpeg_share": 0.0, "shades_of_gray_power": 6})
    assert "--jpeg-consistency 12.0" in command and "--shades-of-gray 6" in command and "--jpeg-augment" not in command
