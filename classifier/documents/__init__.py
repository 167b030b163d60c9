"""Documents about a model and its data, written from measured figures (matplotlib; never on the serving path):
the model card, the evaluation report and the data set description."""
