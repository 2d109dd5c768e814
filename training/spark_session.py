"""Spark session: `--engine spark`, `--spark-master`, `--spark-conf` and NBA_SPARK_* → a running SparkSession.

PySpark (the `[spark]` extra) is imported only here and only when a session is asked for, so `nba` starts
as fast without it. Everything that stops Spark from starting is one line naming what is missing and how
to fix it (`ComputeEngineError`): PySpark not installed, no Java, a master that cannot be reached, a
settings file that cannot be read.

Settings, each overriding the one before: nba's defaults for the job (`BASE_CONF`, and for a local master
`LOCAL_CONF`), the `--spark-conf` file, NBA_SPARK_* variables, then `--spark-master`. A variable's name
after NBA_SPARK_ is the setting's name with dots as underscores, lower-cased:
NBA_SPARK_EXECUTOR_MEMORY → spark.executor.memory, NBA_SPARK_SQL_SHUFFLE_PARTITIONS →
spark.sql.shuffle.partitions, NBA_SPARK_MASTER → spark.master. Settings whose names have capitals
(spark.driver.bindAddress) go in the file.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml

from nba.errors import ComputeEngineError, DataError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ENV_PREFIX: Final = "NBA_SPARK_"
DEFAULT_MASTER: Final = "local[*]"
APP_NAME: Final = "nba"
INSTALL_PYSPARK: Final = "pip install 'nba[spark]'"
INSTALL_JAVA: Final = "apt-get install openjdk-17-jre-headless (or set JAVA_HOME to a Java 17+)"
# Every job: UTC, so a timestamp's calendar day is its UTC day (the contract's rule, as DuckDB reads it);
# no web UI (nothing listens that a job did not ask for).
BASE_CONF: Final[Mapping[str, str]] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}
# A local master: the driver binds to the loopback only, and a small job does not pay for 200 shuffle
# partitions (adaptive execution coalesces them anyway; this saves the planning).
LOCAL_CONF: Final[Mapping[str, str]] = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.shuffle.partitions": "8",
}
_CONF_KEY_RE: Final = re.compile(r"spark\.[A-Za-z0-9_.\-]+")
_CONNECT_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True)
class SparkSettings:
    """Where Spark runs and with which settings: the master URL and `spark.*` key → value."""

    master: str = DEFAULT_MASTER
    conf: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.master == "local" or self.master.startswith("local[")


def read_spark_conf(path: Path) -> dict[str, str]:
    """Spark settings from a file: a YAML mapping (.yaml, .yml) or `key=value` / `key value` lines.

    Blank lines and lines starting with # are skipped. Raises DataError naming the file and the line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the Spark settings ({exc.strerror or exc})") from None
    pairs: list[tuple[str, object, str]]
    if path.suffix in (".yaml", ".yml"):
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DataError(f"{path}: not valid YAML ({str(exc).strip().splitlines()[0]})") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise DataError(f"{path}: Spark settings must be a mapping of spark.* keys to values")
        pairs = [(str(key), value, f"key {key!r}") for key, value in raw.items()]
    else:
        pairs = []
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            key, sep, text_value = stripped.partition("=")
            if not sep:
                key, _, text_value = stripped.partition(" ")
            pairs.append((key.strip(), text_value.strip(), f"line {number}"))
    conf: dict[str, str] = {}
    for key, value, where in pairs:
        if not _CONF_KEY_RE.fullmatch(key):
            raise DataError(f"{path}, {where}: {key!r} is not a Spark setting (spark.something)")
        if value is None or isinstance(value, dict | list) or value == "":
            raise DataError(f"{path}, {where}: {key} needs one value")
        conf[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return conf


def env_spark_conf(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings NBA_SPARK_* variables give: NBA_SPARK_EXECUTOR_MEMORY=4g → spark.executor.memory=4g."""
    return {
        "spark." + name[len(ENV_PREFIX) :].lower().replace("_", "."): value
        for name, value in environ.items()
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX)
    }


def spark_settings(
    master: str | None = None, conf_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> SparkSettings:
    """The settings of `--spark-master`, `--spark-conf` and NBA_SPARK_* together (see the module's order)."""
    conf = read_spark_conf(conf_file) if conf_file is not None else {}
    conf.update(env_spark_conf(os.environ if environ is None else environ))
    chosen = master or conf.pop("spark.master", None) or DEFAULT_MASTER
    conf.pop("spark.master", None)
    return SparkSettings(master=chosen, conf=conf)


def find_java(environ: Mapping[str, str] | None = None) -> str | None:
    """The java Spark would start: $JAVA_HOME/bin/java when JAVA_HOME is set, else java on the PATH."""
    env = os.environ if environ is None else environ
    home = env.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if os.access(candidate, os.X_OK) else None
    return shutil.which("java", path=env.get("PATH"))


def _standalone_masters(master: str) -> list[tuple[str, int]]:
    """spark://h1:7077,h2:7077 → [(h1, 7077), (h2, 7077)]; other masters → []."""
    if not master.startswith("spark://"):
        return []
    found = []
    for part in master[len("spark://") :].split(","):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise DataError(f"--spark-master {master!r}: expected spark://HOST:PORT[,HOST:PORT...]")
        found.append((host, int(port)))
    return found


def check_master_reachable(master: str) -> None:
    """Raises ComputeEngineError unless one of a standalone master's hosts accepts a connection.

    Spark itself would start, then retry registering for a minute and leave jobs waiting for executors
    that never come; a connection refused or timed out says it in seconds. Other masters (local, yarn,
    k8s) are left to Spark.
    """
    masters = _standalone_masters(master)
    reasons = []
    for host, port in masters:
        try:
            with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
                return
        except OSError as exc:
            reasons.append(f"{host}:{port}: {exc.strerror or type(exc).__name__}")
    if masters:
        raise ComputeEngineError(
            f"cannot reach the Spark master {master} ({'; '.join(reasons)}); check --spark-master "
            "and that the master is running"
        )


def start_spark(settings: SparkSettings) -> SparkSession:
    """A SparkSession for `settings` (getOrCreate: a session already running in this process is reused).

    Raises ComputeEngineError in one line when PySpark is not installed, no Java is found, the master
    cannot be reached, or the JVM does not start.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ComputeEngineError(
            f"--engine spark needs PySpark, which is not installed: {INSTALL_PYSPARK}"
        ) from None
    if find_java() is None:
        where = "JAVA_HOME/bin/java" if os.environ.get("JAVA_HOME") else "java on the PATH"
        raise ComputeEngineError(f"--engine spark needs Java 17 or newer; found no {where}: {INSTALL_JAVA}")
    check_master_reachable(settings.master)
    if settings.is_local:
        # The driver's own address: the loopback, not whatever the host name resolves to.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers (mapInArrow: `nba score --engine spark`) run this interpreter, which has nba and
        # its libraries, not the first python3 on the PATH. A cluster sets spark.pyspark.python itself.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf: dict[str, str] = {**BASE_CONF, **(LOCAL_CONF if settings.is_local else {}), **settings.conf}
    builder: Any = SparkSession.builder.master(settings.master).appName(APP_NAME)
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        session: SparkSession = builder.getOrCreate()
    except Exception as exc:  # PySparkRuntimeError, Py4JError: Spark's own, not ours to type
        raise ComputeEngineError(
            f"Spark did not start with master {settings.master}: {first_line(exc)} (Spark 4 needs Java 17+: "
            f"{INSTALL_JAVA})"
        ) from None
    session.sparkContext.setLogLevel("ERROR")
    return session


def running_spark() -> SparkSession | None:
    """The SparkSession this process runs already, or None (also when PySpark is not installed)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    return SparkSession.getActiveSession()


def first_line(exc: BaseException) -> str:
    """The first meaningful line of a JVM or PySpark error (they run to pages of stack trace).

    A Java exception seen through Py4J says only which call failed ("An error occurred while calling
    o49.collectToPython"); its deepest cause says what went wrong (the file that is not Parquet, the
    scheme with no file system), so that is the line.
    """
    text = str(exc)
    java: Any = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            while java.getCause() is not None:
                java = java.getCause()
            text = str(java.toString())
        except Exception:  # the JVM is gone: keep Py4J's own words
            pass
    for line in text.strip().splitlines():
        line = line.strip()
        if line:
            return line[:300]
    return type(exc).__name__
