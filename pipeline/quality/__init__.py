"""Quality per class: evaluation sets, metrics, reports, contact sheets and the gate.

``clipline eval`` is the shell over this package. The modules, in the order data flows:

- ``sets``      an evaluation set on disk (composite with ``set.json``, or real: images + masks),
                validated, with a fingerprint;
- ``metrics``   IoU, alpha MAE, boundary F (3 px) and the re-composite error of one image;
- ``evaluate``  cut-outs made by the engine (through the same path as ``clipline run``), scored;
- ``report``    the JSON report, per-class means and the Markdown table;
- ``gate``      a candidate report against a baseline: which class got worse, by how much;
- ``sheets``    contact sheets of the images that changed most (or the worst ones).

Pure except for reading sets and cut-outs and writing the report folder; nothing here runs a
model itself: the caller passes the function that cuts a folder out.
"""
