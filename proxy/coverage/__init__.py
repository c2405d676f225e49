"""`turnout coverage`: the two backends' OpenAPI documents joined with the routes and flags.

Pure parts: ``operations`` (a document's operations), ``matching`` (legacy
against new, and which route and flag serve each), ``report`` (totals and the
three output formats), ``draft`` (``--write-routes``). I/O shells: ``source``
(reading a document from a file or URL), ``command`` (the CLI) and ``live``
(the per-flag coverage in ``GET /status``).
"""
