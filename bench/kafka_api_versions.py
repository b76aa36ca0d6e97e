"""Record what Apache Kafka advertises in ApiVersions: every API with its
version range, and the supported and finalized features, as JSON.

    python -m bench.kafka_api_versions --write docs/kafka-4.4-api-versions.json

Starts a one-node KRaft broker (``kafka_reference.KafkaBroker``, the jars
cached by deploy/install-kafka.sh), sends one ApiVersions v4 request, stops
it. The file is the reference the README's API coverage table
(``broker/apis/coverage.py``) is generated against.
"""
from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any

from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse

from .kafka_reference import KafkaBroker, kafka_libs, kafka_version

API_VERSIONS_VERSION = 4


def api_versions(port: int, host: str = "127.0.0.1") -> Any:
    """One ApiVersions v4 exchange with the broker at ``host:port``."""
    req = ApiVersionsRequest(client_software_name="sluice-reference", client_software_version="1")
    req.API_VERSION = API_VERSIONS_VERSION
    req.with_header(correlation_id=1, client_id="sluice-reference")
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(bytes(req.encode(header=True, framed=True)))
        size = struct.unpack(">i", _read(s, 4))[0]
        frame = _read(s, size)
    # response header v0 (ApiVersions never has tagged header fields): the correlation id
    return ApiVersionsResponse.decode(frame[4:], version=API_VERSIONS_VERSION)


def _read(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return bytes(buf)


def api_names(libs: str) -> dict[int, str]:
    """API key -> name, from the message specs inside Kafka's kafka-clients jar
    (kafka-python's ``ApiKey`` does not know Kafka 4.4's newest APIs)."""
    [jar] = Path(libs).glob("kafka-clients-*.jar")
    names = {}
    with zipfile.ZipFile(jar) as z:
        for entry in z.namelist():
            if entry.startswith("common/message/") and entry.endswith("Request.json"):
                text = "\n".join(line for line in z.read(entry).decode().splitlines()
                                 if not line.lstrip().startswith("//"))
                spec = json.loads(text)
                names[spec["apiKey"]] = spec["name"].removesuffix("Request")
    return names


def as_json(resp: Any, version: str, names: dict[int, str]) -> dict:
    return {
        "kafka_version": version,
        "how": "python -m bench.kafka_api_versions --write docs/kafka-4.4-api-versions.json: "
               "ApiVersions v4 from a one-node KRaft broker (process.roles=broker,controller, defaults)",
        "apis": [{"key": k.api_key, "name": names[k.api_key], "min": k.min_version, "max": k.max_version}
                 for k in sorted(resp.api_keys, key=lambda k: k.api_key)],
        "supported_features": {f.name: [f.min_version, f.max_version]
                               for f in sorted(resp.supported_features, key=lambda f: f.name)},
        "finalized_features": {f.name: [f.min_version_level, f.max_version_level]
                               for f in sorted(resp.finalized_features, key=lambda f: f.name)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", metavar="FILE", help="write the JSON here (default: print it)")
    args = ap.parse_args(argv)
    libs = kafka_libs()
    kb = KafkaBroker(heap="-Xmx512m", libs=libs)
    try:
        kb.start()
        doc = as_json(api_versions(kb.port), kafka_version(libs), api_names(libs))
    finally:
        kb.stop()
        kb.cleanup()
    text = json.dumps(doc, indent=1) + "\n"
    if args.write:
        Path(args.write).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
