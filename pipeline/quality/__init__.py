"""Quality instruments: seeded composite sets with exact alpha (``composer``), the folders of
cut-outs and backgrounds they are made from (``sources``), and a procedural stand-in for those
folders that needs no download (``synthetic``)."""
