"""S3 event intake: "object created" notifications received from an SQS queue through boto3,
with vendor errors translated here. The parsing and the rules are pure, in ``pipeline.events``.
"""
