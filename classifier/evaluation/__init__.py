"""Measuring a model, in numpy and scikit-learn (never on the serving path): the metrics, the runs over labelled
images (``measure``), the fits made on the validation split, the robustness checks and the model speed bench."""
