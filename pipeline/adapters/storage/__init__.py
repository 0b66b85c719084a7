"""The ``ObjectStore`` port: S3 (and S3-compatible endpoints) through boto3, local folders for
the embedded run, and the in-memory fake; one contract suite runs against all three.
"""
