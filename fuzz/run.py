"""Run every coverage-guided fuzz target for a bounded time; fail on any finding.

Each target runs as its own process (libFuzzer through atheris) over a scratch corpus directory
(written to) and its seed corpus ``fuzz/corpus/<target>`` (only read), so a CI run never changes
the repository. A crash, an uncaught exception, a failed invariant, a hang past ``--timeout``
or memory past ``--rss-limit-mb`` stops the target; the runner then prints the reproducer: the
artifact file, its bytes, the command that replays it and the end of the target's output::

    .venv/bin/python fuzz/run.py                       # every target, 60 s each, 2 at a time
    .venv/bin/python fuzz/run.py --time 600 --jobs 1 cstp_frame dtls_authenticated

Exit status: 0 when no target found anything, 1 otherwise. See fuzz/README.md for long runs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGETS = HERE / "targets"
CORPUS = HERE / "corpus"
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_COVERAGE = re.compile(r"\bcov: (\d+)")


def target_names() -> list[str]:
    """Every target, by the name after ``fuzz_``."""
    return sorted(p.stem.removeprefix("fuzz_") for p in TARGETS.glob("fuzz_*.py"))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one bounded run of one target gave.

    :param artifacts: files libFuzzer wrote for findings (crash-, timeout-, oom-, leak-...).
    """

    name: str
    returncode: int
    seconds: float
    runs: int | None
    coverage: int | None
    artifacts: tuple[Path, ...]
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.artifacts

    def report(self) -> str:
        """A one-line summary, and for a finding everything needed to reproduce it."""
        runs = "?" if self.runs is None else str(self.runs)
        cov = "?" if self.coverage is None else str(self.coverage)
        line = f"{self.name}: {runs} runs, cov {cov}, {self.seconds:.1f} s"
        if self.ok:
            return line + ", ok"
        lines = [line + f", FINDING (exit {self.returncode})"]
        for artifact in self.artifacts:
            data = artifact.read_bytes()
            lines.append(f"  input {artifact} ({len(data)} bytes): {data[:512].hex()}")
            lines.append(
                f"  reproduce: {sys.executable} {TARGETS / f'fuzz_{self.name}.py'} {artifact}"
            )
        tail = self.output.strip().splitlines()[-40:]
        lines += ["  output (end):", *("    " + t for t in tail)]
        return "\n".join(lines)


def command(
    name: str,
    seconds: int,
    work: Path,
    artifacts: Path,
    *,
    timeout: int,
    rss_limit_mb: int,
    flags: tuple[str, ...] = (),
) -> list[str]:
    """The libFuzzer command line of one bounded run."""
    return [
        sys.executable,
        str(TARGETS / f"fuzz_{name}.py"),
        f"-max_total_time={seconds}",
        f"-timeout={timeout}",
        f"-rss_limit_mb={rss_limit_mb}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
        *flags,
        str(work),
        str(CORPUS / name),
    ]


def run_target(
    name: str,
    seconds: int,
    scratch: Path,
    *,
    timeout: int = 10,
    rss_limit_mb: int = 2048,
    flags: tuple[str, ...] = (),
) -> Outcome:
    """Fuzz one target for ``seconds`` in ``scratch`` (new corpus entries and artifacts)."""
    work = scratch / name / "corpus"
    artifacts = scratch / name / "artifacts"
    work.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = command(
        name, seconds, work, artifacts, timeout=timeout, rss_limit_mb=rss_limit_mb, flags=flags
    )
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    started = time.monotonic()
    proc = subprocess.run(
        argv,
        cwd=scratch,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=seconds + 120 + timeout,
        check=False,
    )
    elapsed = time.monotonic() - started
    done = _DONE.findall(proc.stdout)
    coverage = _COVERAGE.findall(proc.stdout)
    return Outcome(
        name=name,
        returncode=proc.returncode,
        seconds=elapsed,
        runs=int(done[-1][0]) if done else None,
        coverage=int(coverage[-1]) if coverage else None,
        artifacts=tuple(sorted(p for p in artifacts.iterdir() if p.is_file())),
        output=proc.stdout,
    )


def run_all(
    names: list[str],
    seconds: int,
    scratch: Path,
    *,
    jobs: int,
    timeout: int = 10,
    rss_limit_mb: int = 2048,
    flags: tuple[str, ...] = (),
) -> list[Outcome]:
    """Run ``names`` ``jobs`` at a time; the outcomes come back in the order of ``names``."""
    options = {"timeout": timeout, "rss_limit_mb": rss_limit_mb, "flags": flags}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(run_target, n, seconds, scratch, **options) for n in names]
        return [f.result() for f in futures]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    parser.add_argument("--time", type=int, default=60, help="seconds per target (default 60)")
    parser.add_argument("--jobs", type=int, default=2, help="targets at a time (default 2)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    parser.add_argument("--rss-limit-mb", type=int, default=2048, help="memory cap per target")
    parser.add_argument("--scratch", type=Path, help="keep new corpus and artifacts here")
    parser.add_argument(
        "--flag",
        action="append",
        default=[],
        help="extra libFuzzer flag, repeatable (e.g. --flag=-len_control=0)",
    )
    args = parser.parse_args(argv)
    names = args.targets or target_names()
    unknown = sorted(set(names) - set(target_names()))
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="ocgate-fuzz-") as tmp:
        scratch = args.scratch.resolve() if args.scratch else Path(tmp)
        outcomes = run_all(
            names,
            args.time,
            scratch,
            jobs=args.jobs,
            timeout=args.timeout,
            rss_limit_mb=args.rss_limit_mb,
            flags=tuple(args.flag),
        )
        for outcome in outcomes:
            print(outcome.report(), flush=True)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
