"""`strata`: run the server, and talk to it (every client command takes --server and --json).

With --json a command prints exactly one JSON document on stdout; progress bars and
messages go to stderr. One module per command group (`serve`, `backbones`, `collections`,
`index`, `query`, `items`, `labels`), each with its parser next to its handlers; `output`
and `inputs` hold what they share; `main` assembles the parser.
"""

from service.cli.main import main

__all__ = ["main"]
