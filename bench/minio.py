"""``MinioServer``: one real MinIO subprocess, for the tests and the benches.

``install_minio()`` runs deploy/install-minio.sh (a pinned MinIO built from its
Go module, cached in ``~/.cache/sluice``; minutes on a cold Go cache, instant
once cached) and returns the binary. ``MinioServer(binary, data_dir)`` serves
``data_dir`` on a free loopback port below the ephemeral range; it keeps its
data dir and port across ``stop()``/``kill()`` and ``start()``, so clients
configured with its endpoint reconnect after an outage. ``env()`` is the
AWS-chain variables that point a client (or ``sluice serve``) at it.

``python -m bench.minio ensure-bucket NAME`` waits (bounded) until the MinIO
named by the AWS-chain variables (``AWS_ENDPOINT_URL_S3``, the access key, the
secret) is ready and creates the bucket unless it exists: what
deploy/cluster.sh and deploy/compose.yaml run before their brokers. It needs
botocore only, which serving already installs (not boto3, a test extra).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from .ports import free_port

ROOT = Path(__file__).resolve().parent.parent
INSTALL_SCRIPT = ROOT / "deploy" / "install-minio.sh"


def install_minio() -> Path:
    """Run deploy/install-minio.sh (reuses the cached build) and return the binary."""
    res = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True,
                         timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(f"deploy/install-minio.sh failed:\n{res.stderr[-3000:]}")
    return Path(res.stdout.strip().splitlines()[-1])


def healthy(endpoint: str, what: str = "ready") -> bool:
    """MinIO's ``/minio/health/<what>`` (live, ready) answers 200."""
    try:
        with urllib.request.urlopen(f"{endpoint}/minio/health/{what}", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def ensure_bucket(endpoint: str, bucket: str, access_key: str, secret_key: str,
                  region: str = "us-east-1", timeout: float = 60.0) -> bool:
    """Wait until the MinIO at ``endpoint`` is ready (at most ``timeout`` s), then
    create ``bucket`` unless it exists. True if this call created it."""
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + timeout
    while not healthy(endpoint, "ready"):
        if time.monotonic() >= deadline:
            raise RuntimeError(f"MinIO at {endpoint} not ready after {timeout:.0f}s")
        time.sleep(0.2)
    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, region_name=region,
        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as e:      # another creator won the race
        if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        return False
    return True


@dataclass
class MinioServer:
    binary: Path
    data_dir: Path
    port: int = 0
    access_key: str = "sluice-test"
    secret_key: str = "sluice-test-secret"
    region: str = "us-east-1"
    proc: subprocess.Popen | None = None
    log_path: Path | None = None      # default: DATA_DIR-minio.log next to the data dir

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def env(self) -> dict[str, str]:
        """The AWS-chain variables that point a client (or `sluice serve`) here."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def start(self, timeout: float = 60.0) -> "MinioServer":
        if self.running:
            return self
        self.data_dir = Path(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()   # below the ephemeral range: restarts find it free
        if self.log_path is None:
            self.log_path = self.data_dir.parent / f"{self.data_dir.name}-minio.log"
        env = dict(os.environ,
                   MINIO_ROOT_USER=self.access_key, MINIO_ROOT_PASSWORD=self.secret_key,
                   MINIO_BROWSER="off", MINIO_UPDATE="off")
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [str(self.binary), "server", str(self.data_dir),
                 "--address", f"127.0.0.1:{self.port}", "--quiet"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._healthy("live") and self._healthy("ready"):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"MinIO did not become ready on {self.endpoint}; "
                           f"log: {self.log_text()[-3000:]}")

    def _healthy(self, what: str) -> bool:
        return healthy(self.endpoint, what)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait (MinIO shuts down cleanly)."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: an abrupt outage."""
        if self.running:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> "MinioServer":
        self.stop()
        return self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def client(self):
        """A synchronous boto3 S3 client with root credentials."""
        import boto3
        from botocore.config import Config
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str, prefix: str = "") -> list[dict]:
        """Every object of ``bucket`` under ``prefix`` (ListObjectsV2 entries: Key, Size, ...)."""
        out, token = [], None
        c = self.client()
        while True:
            kw = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            resp = c.list_objects_v2(**kw)
            out += resp.get("Contents", [])
            if not resp.get("IsTruncated"):
                return out
            token = resp["NextContinuationToken"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.minio")
    sub = parser.add_subparsers(dest="command", required=True)
    eb = sub.add_parser("ensure-bucket", help="wait for MinIO, create the bucket unless it exists; "
                        "endpoint and credentials from AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), "
                        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION")
    eb.add_argument("bucket")
    eb.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for MinIO (default 60)")
    args = parser.parse_args(argv)
    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    missing = [k for k, v in (("AWS_ENDPOINT_URL_S3", endpoint), ("AWS_ACCESS_KEY_ID", env.get("AWS_ACCESS_KEY_ID")),
                              ("AWS_SECRET_ACCESS_KEY", env.get("AWS_SECRET_ACCESS_KEY"))) if not v]
    if missing:
        print(f"bench.minio: set {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        created = ensure_bucket(endpoint, args.bucket, env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
                                env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
                                args.timeout)
    except Exception as e:
        print(f"bench.minio: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"bucket {args.bucket} {'created' if created else 'exists'} on {endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
