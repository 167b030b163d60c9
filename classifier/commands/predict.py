"""``python -m classifier predict``."""


def add_arguments(p):
    pass


def run(args):
    raise SystemExit("not yet")
