"""Real servers on 127.0.0.1 for the remote-store tests, started by the tests and stopped after them
(the servers themselves: :mod:`thesislib.testservers`, shared with notebook 03b).

The session fixtures ``http_root`` (a folder nginx serves, and its URL) and ``s3_endpoint`` (an endpoint
whose credentials are in the environment while the tests run) are what the tests use.
"""

import os

import pytest

from thesislib.testservers import (S3Endpoint, environment, forget_filesystems, free_port,  # noqa: F401
                                   nginx_server, s3_server)


@pytest.fixture(scope="session")
def http_root(tmp_path_factory):
    """(folder, URL): nginx serves the folder at the URL for the whole session."""
    root = tmp_path_factory.mktemp("http-root")
    try:
        with nginx_server(root, tmp_path_factory.mktemp("nginx")) as url:
            yield root, url
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """An :class:`S3Endpoint` whose credentials are in ``os.environ`` for the whole session."""
    with s3_server(tmp_path_factory.mktemp("moto")) as endpoint, environment(endpoint.environment()):
        forget_filesystems()
        yield endpoint
    forget_filesystems()
