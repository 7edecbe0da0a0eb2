"""Reusable constructs of the governed data lake. Never name this folder ``constructs/``: it would
shadow the ``constructs`` library and break ``import aws_cdk`` (aws/aws-cdk#19301)."""
