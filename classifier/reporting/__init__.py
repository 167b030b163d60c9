"""Measuring and describing a model, in numpy, scikit-learn and matplotlib (never on the serving path):
metrics, the runs over labelled images and the fits made on the validation split, the evaluation report, the
data set description, the model card and the speed benchmarks."""
