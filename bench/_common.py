"""The harness every benchmark script shares: what it prints beside its figures (the project's
revision, the machine's state), the child processes it measures in (a result line after a
marker, process groups, timeouts), the memory readers, the private Airflow/mlcycle state,
and the small formatting helpers of its tables.

Only the standard library is imported here: ``bench/evidently_child.py`` imports this module
in the Evidently venv, and ``parse_cost.py``'s children import it before measuring.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
SPECS_DIR = REPO / "include" / "models"
MARKER = "@@RESULT@@"  # a child prints its result as one line: MARKER + JSON
_GIT_ENV = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # read-only: git never rewrites the index


# --- what every table is printed with -------------------------------------------------------


def revision(watch: str | None = None) -> str:
    """The project's commit, with "-dirty" when the working tree has changes; with ``watch`` (a
    path in the repository), also whether that path itself is modified."""
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
            env=_GIT_ENV,
        )
        rev = done.stdout.strip() or "unknown"
        if watch is None:
            return rev
        changed = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", watch],
            capture_output=True,
            text=True,
            check=False,
            env=_GIT_ENV,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return rev + (f" ({watch} modified)" if changed else "")


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    """CPUs, RAM, ``OMP_NUM_THREADS`` and the load average: the figures depend on them."""
    try:
        mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
        ram = f"{int(mem.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration):
        ram = "RAM unknown"
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    return f"nproc {os.cpu_count()}, {ram}, OMP_NUM_THREADS {omp}, load average {load_average()}"


def default_python() -> Path:
    """The project's venv interpreter, else the one running the script."""
    venv = REPO / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def check_python(python: Path, modules: str, *, commands: Iterable[str] = ()) -> None:
    """Exit with a hint unless ``python`` exists, imports ``modules`` (``"a, b.c"``) and has each
    of ``commands`` (e.g. ``airflow``) beside it."""
    if not python.exists():
        sys.exit(f"error: {python} does not exist; create the venv (.venv) or pass --python")
    probe = subprocess.run(
        [str(python), "-c", f"import {modules}"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        sys.exit(
            f"error: {python} cannot import {modules}; install requirements.txt and `pip install -e .` "
            f"into the venv.\n{probe.stderr.strip()[-1500:]}"
        )
    for command in commands:
        if not (python.parent / command).exists():
            sys.exit(f"error: no `{command}` command beside {python}")


# --- child processes ------------------------------------------------------------------------


def emit(result: dict[str, Any]) -> None:
    """Print a child's result: the one line its parent looks for."""
    print(MARKER + json.dumps(result, default=str), flush=True)


def find_result(text: str) -> dict[str, Any] | None:
    """The last result line in a child's output, parsed; None if there is none."""
    line = next((ln for ln in reversed(text.splitlines()) if ln.startswith(MARKER)), None)
    return None if line is None else json.loads(line.removeprefix(MARKER))


def tail(text: str, lines: int = 40) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.strip().splitlines()[-lines:])


def tail_file(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or "(no log)"."""
    try:
        return tail(path.read_text(errors="replace"), lines)
    except OSError:
        return "(no log)"


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """Stop a process started in its own session, with what is left of its process group
    (SIGTERM, then SIGKILL). Returns at once when the group is already gone."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.2)  # let the group's other members handle the signal


@dataclass
class ChildRun:
    """What a child process left: exit status (None if stopped at the timeout), output, result."""

    cmd: list[str]
    returncode: int | None
    stdout: str  # with ``log``: the whole log (stdout and stderr)
    stderr: str
    result: dict[str, Any] | None
    timeout: float | None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.result is not None

    def error(self, lines: int = 8) -> str:
        """Why it failed, with the last lines of its output."""
        if self.returncode is None:
            why = f"timed out after {self.timeout:.0f} s"
        elif self.returncode == -signal.SIGKILL:
            why = "killed by SIGKILL (out of memory?)"
        elif self.returncode == 0:
            why = "exit 0 without a result line"
        else:
            why = f"exit {self.returncode}"
        return f"{why}:\n{tail(self.stderr or self.stdout, lines)}"


def run_child(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    cwd: Path = REPO,
    log: Path | None = None,
) -> ChildRun:
    """Run ``cmd`` in its own session and process group, and read its result line.

    Output is captured, or written to ``log`` (stdout and stderr together) when given. At the
    timeout, and in any case once it has exited, what is left of its group is stopped: its
    leftovers (executor workers, a forkserver) cannot outlive the measurement, nor a Ctrl-C."""
    out = log.open("wb") if log is not None else subprocess.PIPE
    err = subprocess.STDOUT if log is not None else subprocess.PIPE
    timed_out = False
    try:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True, text=True, errors="replace"
        )
        try:
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                stop_group(proc)
                stdout, stderr = proc.communicate()
        finally:
            stop_group(proc)
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]
    if log is not None:
        stdout, stderr = log.read_text(errors="replace"), ""
    return ChildRun(
        cmd=cmd,
        returncode=None if timed_out else proc.returncode,
        stdout=stdout or "",
        stderr=stderr or "",
        result=find_result(stdout or ""),
        timeout=timeout,
    )


class SampledRows:
    """What a benchmark cell with ``rows`` and per-run ``samples`` (dicts with "seconds") reports."""

    rows: int
    samples: list[dict[str, Any]]

    def median(self, key: str) -> float:
        return statistics.median(s[key] for s in self.samples)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.median("seconds")


class CappedChild:
    """Runs ``script --child KIND --job JSON`` children under one deadline for the whole run."""

    def __init__(self, script: Path, python: Path, deadline: float, env: dict[str, str]) -> None:
        self.script = script.resolve()
        self.python = python
        self.deadline = deadline
        self.env = env

    def run(self, kind: str, job: dict[str, Any], *, capped: bool = True) -> dict[str, Any]:
        """The child's result, or {"error": ...} (time cap, crash, OOM kill)."""
        left = self.deadline - time.monotonic()
        if capped and left < 5:
            return {"error": "skipped: time cap reached"}
        cmd = [str(self.python), str(self.script), "--child", kind, "--job", json.dumps(job)]
        done = run_child(cmd, env=self.env, timeout=left if capped else None)
        if done.returncode is None:
            return {"error": "killed: time cap reached during the run"}
        if not done.ok:
            return {"error": f"{kind} failed ({done.error(12)})"}
        return done.result or {}


def add_child_args(parser: argparse.ArgumentParser, children: Iterable[str]) -> None:
    """The options every child-running script shares: where state goes, the venv, --keep, and
    the hidden --child/--job a parent passes to its children."""
    parser.add_argument(
        "--tmp-dir", type=Path, default=Path("/tmp"), help="where the temporary directory goes"
    )
    parser.add_argument("--python", type=Path, default=default_python(), help="interpreter of the venv")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--child", choices=sorted(children), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)


def parse_sizes(parser: argparse.ArgumentParser, text: str) -> list[int]:
    """``--sizes`` (comma-separated row counts), sorted and unique, or the parser's error."""
    try:
        sizes = sorted({int(n) for n in text.split(",")})
    except ValueError:
        parser.error("--sizes takes comma-separated row counts")
    if sizes[0] < 1:
        parser.error("--sizes must be positive")
    return sizes


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now (for a server the script starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- private state --------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_dir(prefix: str, *, keep: bool = False, parent: Path | None = None) -> Iterator[Path]:
    """A temporary directory for all of a run's state, removed at the end unless ``keep``."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield tmp
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def require_disk(folder: Path, need_bytes: float, hint: str) -> float:
    """Exit unless ``folder`` has ``need_bytes`` free; returns the free bytes."""
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        sys.exit(
            f"error: {folder} has {free / 2**30:.1f} GiB free, this run needs about "
            f"{need_bytes / 2**30:.1f} GiB; {hint}"
        )
    return free


def airflow_env(
    home: Path, *, dags_folder: Path = REPO / "dags", specs_dir: Path = SPECS_DIR, **extra: str
) -> dict[str, str]:
    """The environment of a child running Airflow and mlcycle: the caller's, without any
    ``AIRFLOW*``, ``MLCYCLE_*`` or ``MLFLOW_*`` variable (never a developer's Airflow, MLflow or
    lake), with ``home`` as ``AIRFLOW_HOME`` (SQLite metadata DB in it), the project's plugins
    on the path, and ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLCYCLE_", "MLFLOW_"))}
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "GX_ANALYTICS_ENABLED": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLCYCLE_HOME": str(REPO),
            "MLCYCLE_SPECS_DIR": str(specs_dir),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "plugins"), env.get("PYTHONPATH")])),
            **extra,
        }
    )
    return env


def mlcycle_state(root: Path) -> dict[str, str]:
    """The variables that put mlcycle's lake, MLflow store, artifacts and ledger under ``root``."""
    return {
        "MLCYCLE_LAKE_ROOT": str(root / "lake"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "MLCYCLE_ARTIFACT_ROOT": str(root / "mlartifacts"),
        "MLCYCLE_LEDGER_URI": f"sqlite:///{root / 'ledger.db'}",
    }


# --- memory ---------------------------------------------------------------------------------


def maxrss_mb(*, children: bool = False) -> float:
    """Peak RSS (``ru_maxrss``, MB) of this process, or of its largest waited-for child.

    Linux copies the exec'ing parent's RSS into a new program's ``ru_maxrss``: a child of a
    parent holding 250 MB starts with a 250 MB "peak". Use ``mark_before``/``peak_mb`` when the
    parent is not small."""
    import resource

    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def proc_status_mb() -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak since exec or the last reset) of this process, in MB.
    VmHWM belongs to this address space, unlike ``ru_maxrss``."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def mark_before() -> dict[str, Any]:
    """RSS now, then reset the peak (``/proc/self/clear_refs`` 5) so that ``peak_mb`` measures
    what follows (``peak_reset`` False where the kernel refused)."""
    before = proc_status_mb()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        reset = True
    except OSError:
        reset = False
    return {"rss_before_mb": before["VmRSS"], "peak_before_mb": before["VmHWM"], "peak_reset": reset}


def peak_mb() -> float:
    """VmHWM in MB: the peak since exec or since ``mark_before``."""
    return proc_status_mb()["VmHWM"]


# --- tables ---------------------------------------------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are not None; None if there are none."""
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def fmt(value: float | None, spec: str = ".2f", missing: str = "-") -> str:
    """``value`` formatted with ``spec``, or ``missing`` for None."""
    return missing if value is None else format(value, spec)


def fmt_rows(n: int) -> str:
    """A row count as a table shows it: 10M, 100k, 12,345."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def print_header(header: str) -> None:
    """A table's header line and a rule as wide as it."""
    print(header)
    print("-" * len(header))
