"""``python -m course_site [--out DIR] [--serve [PORT]]``: build the site, optionally serve it."""

from __future__ import annotations

import argparse
import functools
import http.server
from pathlib import Path

from course_site.build import DEFAULT_OUT, build


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m course_site", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--serve",
        nargs="?",
        const=8000,
        type=int,
        metavar="PORT",
        help="after building, serve the site on http://127.0.0.1:PORT/ (default 8000)",
    )
    args = parser.parse_args(argv)
    pages = build(args.out)
    print(f"Built {len(pages)} pages into {args.out}/; open {args.out / 'index.html'}")
    if args.serve is not None:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=args.out)
        with http.server.ThreadingHTTPServer(("127.0.0.1", args.serve), handler) as server:
            print(f"Serving on http://127.0.0.1:{args.serve}/ (Ctrl-C stops)")
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
