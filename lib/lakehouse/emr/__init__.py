"""Running the lakehouse on AWS EMR: the job bundle, EMR on EC2, EMR Serverless, the daily schedule,
run notifications and the least-privilege IAM policies.

Definitions live in `emr/*.yaml` (plus `emr/<name>.<env>.yaml` overlays) and are parsed strictly
into the frozen dataclasses of `lakehouse.emr.definitions`. Every request to AWS is built by a pure
function from those definitions and `conf/<env>.yaml`'s `aws` section, so `--dry-run` prints exactly
what would be sent.
"""

from __future__ import annotations
