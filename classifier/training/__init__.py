"""Training, in TensorFlow/Keras only (``requirements-train.txt``): the training data pipeline and loop,
the backbones and their ImageNet weight conversion, the network, the export of a trained model into a model
folder, and the Keras runtime (the reference LiteRT is checked against). Serving never imports this package;
``tests/test_project.py`` enforces that nothing outside it, except the commands that train or export,
imports it at module level."""
