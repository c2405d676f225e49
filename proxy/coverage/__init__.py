"""`turnout coverage`: the two backends' OpenAPI documents joined with the routes and flags.

Pure parts: ``operations`` (a document's operations), ``matching`` (legacy
against new, and which route and flag serve each), ``report`` (the report as
data: totals, shares, the ``/status`` part), ``render`` (table and Markdown),
``draft`` (``--write-routes``). I/O shells: ``source``
(reading a document from a file or URL), ``command`` (the CLI) and ``live``
(the per-flag coverage in ``GET /status``).

From Python, the map of two documents under a config::

    legacy = load_document("http://127.0.0.1:8000/openapi.json")  # or document_from_data
    new = load_document("http://127.0.0.1:3000/api-json")
    report = report_document(coverage_map(legacy, new, config), config)
"""
