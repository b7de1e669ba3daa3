"""Write ``.env`` for docker-compose.yaml from ``.env.example``, with fresh secrets (``make env``).

Every empty variable under the ``# ===== Secrets: generated ...`` heading of the example gets a
random value (``secrets.token_urlsafe(32)``; the Fernet key is 32 random bytes in urlsafe base64,
the form Airflow's ``cryptography.fernet.Fernet`` accepts). Every other line is copied as it is:
settings keep their compose defaults, and the S3 credentials stay empty until you set them. The
file is written with mode 0600, and an existing ``.env`` is never replaced without ``--force``:
its secrets are the ones the databases were created with.

Standard library only, so it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADING = re.compile(r"^#\s*=+\s*(?P<title>.*?)\s*=+\s*$")
ASSIGNMENT = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")
GENERATED_HEADING = "Secrets: generated"


def fernet_key() -> str:
    """A valid Fernet key: 32 random bytes, urlsafe base64 (44 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


GENERATORS = {"AIRFLOW_FERNET_KEY": fernet_key}


class EnvError(Exception):
    """A bad example file or a refused write, with what to do about it."""


def render(example: str, source: str = ".env.example") -> tuple[str, list[str]]:
    """The ``.env`` text for ``example``, and the names of the secrets generated in it."""
    lines: list[str] = []
    generated: list[str] = []
    seen: set[str] = set()
    in_generated = False
    for number, line in enumerate(example.splitlines(), start=1):
        heading = HEADING.match(line)
        if heading:
            in_generated = heading["title"].startswith(GENERATED_HEADING)
        elif line.strip() and not line.lstrip().startswith("#"):
            match = ASSIGNMENT.match(line)
            if not match:
                raise EnvError(f"{source}:{number}: expected KEY=VALUE or a # comment, got {line!r}")
            key, value = match["key"], match["value"]
            if key in seen:
                raise EnvError(f"{source}:{number}: {key} is set twice; keep one line")
            seen.add(key)
            if in_generated and not value:
                lines.append(f"{key}={GENERATORS.get(key, lambda: secrets.token_urlsafe(32))()}")
                generated.append(key)
                continue
        lines.append(line)
    if not generated:
        raise EnvError(
            f"{source} has no empty variable under a '# ===== {GENERATED_HEADING} ... =====' "
            "heading: nothing to generate (is it the project's .env.example?)"
        )
    return "\n".join(lines) + "\n", generated


def write_private(path: Path, text: str, force: bool) -> None:
    """Write ``text`` to ``path`` with mode 0600; refuse an existing file unless ``force``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise EnvError(
            f"{path} exists and was left unchanged: its secrets are the ones your databases and "
            "users were created with. Edit it by hand, or run `make env FORCE=1` "
            "(scripts/make_env.py --force) to replace it and lose the old secrets."
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # also when --force replaced a more open file
        out.write(text)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``make_env.py [--example PATH] [--out PATH] [--force]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, default=REPO / ".env.example", help="template to read")
    parser.add_argument("--out", type=Path, default=REPO / ".env", help="file to write (mode 0600)")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    try:
        if not args.example.is_file():
            raise EnvError(f"{args.example} not found: run from the repository or pass --example PATH")
        text, generated = render(args.example.read_text(encoding="utf-8"), str(args.example))
        write_private(args.out, text, args.force)
    except EnvError as err:
        print(f"make_env: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} (mode 0600) with {len(generated)} generated secrets: {', '.join(generated)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
