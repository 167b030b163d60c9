# The two commands a newcomer needs (both create or reuse .venv):
#   make demo   set up and start the demo on http://127.0.0.1:7860
#   make test   set up and run the whole test suite (and ruff)
.PHONY: demo test lint bench examples

demo:
	scripts/setup.sh
	.venv/bin/python app.py $(ARGS)

test:
	scripts/setup.sh dev
	.venv/bin/ruff check classifier tests scripts app.py
	.venv/bin/python -m pytest $(ARGS)

lint:
	.venv/bin/ruff check classifier tests scripts app.py

bench:
	.venv/bin/python -m classifier bench $(ARGS)

examples:
	.venv/bin/python -m classifier examples --from $(DATA)
