"""Local stand-in servers for tests and demos: real servers on 127.0.0.1 that hold stores at URLs.

Used by ``tests/servers.py`` (the remote-store tests' fixtures) and ``notebooks/03b_remote_storage.ipynb``.
Both are stand-ins for central storage on one machine (loopback, no network latency):

* :func:`nginx_server`: nginx from the distribution (``apt-get install nginx-light``, done by ``make
  system-deps``), unprivileged, serving a folder read-only with byte ranges and folder listings
  (``autoindex on``: the image-file loader lists class folders); FileNotFoundError where nginx is missing;
* :func:`s3_server`: moto's server mode in its own process, a stand-in for an S3 endpoint (the real S3 API
  over HTTP, in memory), with authentication switched on so that wrong credentials are refused as S3
  refuses them. Needs the ``test`` extra (``moto[server]``).

Each is a context manager that stops its server when the block ends.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

NGINX_CONF = """\
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        autoindex on;
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 20) -> None:
    """Return once something accepts connections on ``port``; fail with the server's log if it exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on port {port} within {seconds} s: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def nginx_server(root: Path, workdir: Path):
    """nginx serving ``root`` at the yielded ``http://127.0.0.1:PORT`` until the block ends."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if nginx is None:
        raise FileNotFoundError("nginx is not installed: run `make system-deps` (apt-get install nginx-light)")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    # as root, nginx's workers would switch to "nobody", who may not read pytest's private temporary folders
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(user=user, dir=workdir, port=port, root=root))
    log = workdir / "error.log"
    log.touch()
    process = subprocess.Popen([nginx, "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=open(log, "a"))
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    bucket: str
    key: str
    secret: str

    def environment(self, key: str = None, secret: str = None) -> dict:
        """The AWS_* variables a client of this endpoint needs (other credentials: to test a refusal)."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": key or self.key,
                "AWS_SECRET_ACCESS_KEY": secret or self.secret, "AWS_DEFAULT_REGION": "us-east-1"}


def create_user(url: str) -> tuple:
    """(access key, secret) of a new IAM user allowed everything, made while moto checks no credentials."""
    import boto3

    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup",
                       aws_secret_access_key="setup")
    iam.create_user(UserName="thesislib")
    iam.put_user_policy(UserName="thesislib", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    created = iam.create_access_key(UserName="thesislib")["AccessKey"]
    return created["AccessKeyId"], created["SecretAccessKey"]


def require_credentials(url: str) -> None:
    """From now on moto refuses every request without valid credentials (its /moto-api/reset-auth)."""
    request = urllib.request.Request(f"{url}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})  # a form body would be parsed away
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@contextlib.contextmanager
def s3_server(workdir: Path, bucket: str = "thesislib"):
    """moto's S3 server (a stand-in for S3) with one bucket and one user; yields an :class:`S3Endpoint`."""
    import boto3

    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "moto.log"
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log)
        url = f"http://127.0.0.1:{port}"
        key, secret = create_user(url)
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                     aws_secret_access_key=secret).create_bucket(Bucket=bucket)
        require_credentials(url)
        yield S3Endpoint(url, bucket, key, secret)
    finally:
        stop(process)


@contextlib.contextmanager
def environment(values: dict):
    """``os.environ`` with ``values`` set inside the block, restored after."""
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def forget_filesystems() -> None:
    """Drop fsspec's cached S3 clients, so that the next one reads the credentials in the environment anew."""
    from s3fs import S3FileSystem

    S3FileSystem.clear_instance_cache()
