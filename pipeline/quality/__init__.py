"""Quality per class: sets made with exact alpha, metrics, reports, contact sheets and the gate.

``clipline datasets`` and ``clipline eval`` are the shells over this package. The modules, in
the order data flows:

- ``synthetic``    procedural cut-outs and backgrounds that need no download (tests, CI's gate);
- ``sources``      folders of cut-outs and backgrounds, each file on the train or eval side;
- ``compositing``  studio and photo backgrounds, shadows, placing objects, the blurred distractor;
- ``composer``     the class recipes (product-plain, product-scene, illustration, multi, people);
- ``set_writer``   a composite set written to disk, ``set.json`` last;
- ``sets``         an evaluation set on disk (composite with ``set.json``, or real: images +
                   masks), validated, with a fingerprint;
- ``metrics``      IoU, alpha MAE, boundary F (3 px) and the re-composite error of one image;
- ``evaluate``     cut-outs made by the engine (through the same path as ``clipline run``), scored;
- ``report``       the JSON report, per-class means and the Markdown table;
- ``gate``         a candidate report against a baseline: which class got worse, by how much;
- ``sheets``       contact sheets of the images that changed most (or the worst ones).

Pure except for reading and writing set and report folders; nothing here runs a model itself:
the caller passes the function that cuts a folder out.
"""
