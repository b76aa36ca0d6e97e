"""Apache Kafka's own command-line tools (real Java clients) as a pytest fixture.

``kafka_tools`` (session scope) installs Kafka's jars once with
``deploy/install-kafka.sh`` (cached in ``${SLUICE_CACHE:-~/.cache/sluice}``) and
runs tools through ``deploy/kafka-tool``. If Java or the jars cannot be had the
fixture FAILS: these tests are never skipped.

Register it from tests/conftest.py with ``pytest_plugins = ["kafka_tools"]``.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "deploy" / "install-kafka.sh"
TOOL = ROOT / "deploy" / "kafka-tool"


def _tail(text: str, n: int = 3000) -> str:
    return text if len(text) <= n else "..." + text[-n:]


@dataclass
class ToolResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.strip()]

    def describe(self) -> str:
        return (f"$ kafka-tool {' '.join(self.args)}\n-> exit {self.returncode} after {self.seconds:.1f}s\n"
                f"--- stdout\n{_tail(self.stdout)}\n--- stderr\n{_tail(self.stderr)}")


class KafkaTools:
    """Runs ``deploy/kafka-tool NAME args...`` with a timeout; the JVM is killed on timeout."""

    def __init__(self, libs: Path):
        self.libs = libs
        self.env = dict(os.environ, KAFKA_LIBS=str(libs))

    def start(self, name: str, *args: str, stdin=subprocess.DEVNULL) -> subprocess.Popen:
        # Own session, so a timeout kills the JVM (kafka-tool execs java) and nothing else.
        return subprocess.Popen([str(TOOL), name, *args], stdin=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env, start_new_session=True)

    def finish(self, proc: subprocess.Popen, name: str, args: tuple[str, ...], started: float,
               input: str | None = None, timeout: float = 60.0, check: bool = True) -> ToolResult:
        try:
            out, err = proc.communicate(input, timeout=max(0.1, started + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            res = ToolResult([name, *args], -9, out, err, time.monotonic() - started)
            raise AssertionError(f"timed out after {timeout}s\n{res.describe()}") from None
        res = ToolResult([name, *args], proc.returncode, out, err, time.monotonic() - started)
        if check and res.returncode != 0:
            raise AssertionError(f"tool failed\n{res.describe()}")
        return res

    def run(self, name: str, *args: str, input: str | None = None, timeout: float = 60.0,
            check: bool = True) -> ToolResult:
        started = time.monotonic()
        proc = self.start(name, *args, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL)
        return self.finish(proc, name, args, started, input=input, timeout=timeout, check=check)

    def run_many(self, calls: list[tuple[str, tuple[str, ...]]], timeout: float = 90.0,
                 check: bool = True) -> list[ToolResult]:
        """Run several tools at once (JVM start-up overlaps); results in call order."""
        started = time.monotonic()
        procs = [(self.start(name, *args), name, args) for name, args in calls]
        return [self.finish(p, name, args, started, timeout=timeout, check=check) for p, name, args in procs]


@pytest.fixture(scope="session")
def kafka_tools() -> KafkaTools:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.fail("java is not installed: Apache Kafka's tools need Java 17+")
    try:
        proc = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"deploy/install-kafka.sh timed out: {e}")
    if proc.returncode != 0:
        pytest.fail(f"deploy/install-kafka.sh failed ({proc.returncode}):\n{_tail(proc.stderr)}")
    libs = Path(proc.stdout.strip().splitlines()[-1])
    if not any(libs.glob("kafka-tools-*.jar")):
        pytest.fail(f"no kafka-tools jar in {libs}")
    return KafkaTools(libs)


@pytest.fixture
def kafka_reference(kafka_tools, tmp_path):
    """A real Apache Kafka KRaft broker (bench/kafka_reference.py) on loopback; stopped after the test."""
    from bench.kafka_reference import KafkaBroker

    kb = KafkaBroker(tmp_path / "kafka", heap="-Xmx512m", libs=str(kafka_tools.libs))
    kb.start(timeout=120)
    try:
        yield kb
    finally:
        rc = kb.stop(timeout=30)
        kb.cleanup()
        assert rc is not None, "Kafka broker did not exit"
