"""The Model Monitor analyzer image (``sagemaker-model-monitor-analyzer``) by region.

SageMaker publishes the pre-built container in one service account per region ("Amazon
SageMaker Model Monitor prebuilt container", SageMaker Developer Guide); the table below is
that list. ``MODEL_MONITOR_IMAGE_URI`` overrides it (a region missing here, or a mirror).
"""

from __future__ import annotations

IMAGE_NAME = "sagemaker-model-monitor-analyzer"
ANALYZER_ACCOUNTS: dict[str, str] = {
    "af-south-1": "875698925577",
    "ap-east-1": "001633400207",
    "ap-northeast-1": "574779866223",
    "ap-northeast-2": "709848358524",
    "ap-south-1": "126357580389",
    "ap-southeast-1": "245545462676",
    "ap-southeast-2": "563025443158",
    "ca-central-1": "536280801234",
    "cn-north-1": "453000072557",
    "cn-northwest-1": "453252182341",
    "eu-central-1": "048819808253",
    "eu-north-1": "895015795356",
    "eu-south-1": "933208885752",
    "eu-west-1": "468650794304",
    "eu-west-2": "749857270468",
    "eu-west-3": "680080141114",
    "me-south-1": "607024016150",
    "sa-east-1": "539772159869",
    "us-east-1": "156813124566",
    "us-east-2": "777275614652",
    "us-gov-west-1": "362178532790",
    "us-west-1": "890145073186",
    "us-west-2": "159807026194",
}


def model_monitor_image_uri(region: str, override: str | None = None) -> str:
    """The analyzer image for ``region``; ValueError for a region the table lacks."""
    if override:
        return override
    account = ANALYZER_ACCOUNTS.get(region)
    if account is None:
        raise ValueError(
            f"no Model Monitor analyzer image is known for region {region!r}: "
            "set MODEL_MONITOR_IMAGE_URI"
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/{IMAGE_NAME}:latest"
