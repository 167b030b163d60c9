"""``python -m classifier publish``: upload the model folder to a Hugging Face Hub model repo."""

import os
from pathlib import Path


def add_arguments(p):
    p.add_argument("--repo", required=True, help="Hub model repo id, OWNER/NAME (created if missing)")
    p.add_argument("--folder", type=Path, default=Path("model"), help="model folder to upload (default: model/)")
    p.add_argument("--revision", help="branch to upload to (default: main)")
    p.add_argument("--private", action="store_true", help="create the repo as private")


def run(args):
    from classifier.model_folder import read_config
    from classifier.source import publish

    # A ModelFolderError or ModelSourceError becomes `error: ...`, exit 2 (cli.main).
    read_config(args.folder)  # never publish a folder that would not load
    url = publish(args.folder, args.repo, token=os.environ.get("HF_TOKEN"), private=args.private,
                  revision=args.revision)
    print(f"published {args.folder} to {args.repo}: {url}")
    print(f"serve it with: MODEL_ID={args.repo} python app.py")
