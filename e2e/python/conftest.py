"""Shared fixtures: the agent binary and the Garage server started by e2e/test.sh."""
import os
import secrets

import boto3
import pytest
from botocore.config import Config


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through e2e/test.sh, which starts Garage")
    return value


@pytest.fixture(scope="session")
def tablesnap_bin():
    path = _env("TABLESNAP_BIN")
    assert os.access(path, os.X_OK), f"{path} is not an executable; build with cargo build"
    return path


@pytest.fixture(scope="session")
def endpoint():
    return _env("TABLESNAP_TEST_S3_ENDPOINT")


@pytest.fixture(scope="session")
def s3(endpoint):
    """An independent S3 client (boto3), path-style, against the test Garage."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=_env("AWS_REGION"),
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def bucket(s3):
    name = "py-" + secrets.token_hex(8)
    s3.create_bucket(Bucket=name)
    return name


def _target_bin(name):
    path = os.path.join(_env("TABLESNAP_TARGET_DIR"), name)
    assert os.access(path, os.X_OK), f"{path} is not an executable; build with cargo build"
    return path


@pytest.fixture(scope="session")
def tableslurp_bin():
    return _target_bin("tableslurp")


@pytest.fixture(scope="session")
def tablechop_bin():
    return _target_bin("tablechop")
