"""Output folders the tool may write, replace or lock, and nothing else.

Rules (the README's "Guarantees" section states them to users):

- A results folder carries a marker file (``MARKER``). ``run --out DIR`` replaces DIR only
  when DIR is missing, empty, or holds that marker (or only this tool's result files, as
  folders written before the marker existed do). Any other folder or file is refused with
  one line naming it, before any simulation starts.
- The new results are written to a hidden sibling ``.<name>.tmp-<pid>-*`` and swapped in:
  with one atomic exchange where the kernel offers it (Linux ``renameat2``), else with two
  renames. If a process is killed between the two renames, the old results sit in
  ``.<name>.old-<pid>-*`` and the next run puts them back before doing anything else.
  Leftovers of dead processes are removed; those of live ones are left alone.
- A sweep folder is locked (``flock`` on ``DIR/.lock``) for as long as a sweep writes it.
- Folders are created with the user's umask (``tempfile.mkdtemp`` alone gives 0700).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ecofed_sim.errors import ScenarioError

MARKER = ".ecofed-sim-results"
RUN_FILES = frozenset({"rounds.csv", "rounds.parquet", "transfers.parquet", "timeline.parquet",
                       "energy.parquet", "participation.parquet",
                       "updates.parquet", "scenario.resolved.yaml",
                       "manifest.json", "figures", MARKER})
SWEEP_FILES = frozenset({"runs", "summary.parquet", "metrics.csv", "metrics.parquet",
                         "sweep.resolved.yaml",
                         "failed.yaml", "figures", ".lock", MARKER})
MAX_NAME_CHARS = 120


def safe_component(name: str) -> str:
    """``name`` as one harmless path component: no separators, no leading dots, bounded
    length (a scenario named ``../../x`` must not write outside ``results/``)."""
    text = re.sub(r"[^A-Za-z0-9._+=-]+", "_", name).lstrip(".")[:MAX_NAME_CHARS]
    return text or "unnamed"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_dir(path: Path) -> None:
    """``mkdir -p`` that names the blocking file when a parent is not a folder."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ScenarioError(f"{path}: a parent of the output folder is a file") from None
    except OSError as err:
        raise ScenarioError(f"{path}: cannot create the output folder "
                            f"({err.strerror or err.__class__.__name__})") from None


def is_ours(path: Path, known: frozenset[str]) -> bool:
    """A folder this tool may replace: marked, empty, or holding only its own files."""
    names = {p.name for p in path.iterdir()}
    return MARKER in names or names <= known


def check_target(out: Path, known: frozenset[str] = RUN_FILES) -> None:
    """Before any work: ``out`` may be written (its parent can take a sibling folder with
    the temporary name) and, if it exists, is a results folder. One-line error if not."""
    try:
        _check_target(out, known)
    except OSError as err:  # a name too long, a folder we may not list, ...
        raise ScenarioError(f"{out}: cannot write here "
                            f"({err.strerror or err.__class__.__name__})") from None


def refuse_foreign(out: Path, known: frozenset[str]) -> None:
    """One line unless ``out`` is missing or a results folder of this tool (and not the
    current, home or root folder)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ScenarioError(f"{out}: exists and is not a results folder; refusing to "
                            "replace it (choose another --out)")
    if out.is_dir() and not is_ours(out, known):
        raise ScenarioError(f"{out}: folder holds files that are not this tool's results; "
                            "refusing to replace it (choose another --out or empty it)")
    if out.resolve() in (Path.cwd().resolve(), Path.home().resolve(), Path("/")):
        raise ScenarioError(f"{out}: refusing to use the current, home or root folder as "
                            "a results folder (choose a subfolder)")


def open_sweep_dir(out: Path) -> None:
    """Create or reuse a sweep's folder (marked as results); refuse anyone else's."""
    try:
        refuse_foreign(out, SWEEP_FILES)
        make_dir(out)
        if not (out / MARKER).exists():
            (out / MARKER).write_text("ecofed_sim sweep\n")
    except OSError as err:
        raise ScenarioError(f"{out}: cannot write here "
                            f"({err.strerror or err.__class__.__name__})") from None


def _check_target(out: Path, known: frozenset[str]) -> None:
    recover(out)
    refuse_foreign(out, known)
    make_dir(out.parent)
    shutil.rmtree(new_tmp(out))  # the sibling the results will be written to can be made


def new_tmp(out: Path) -> Path:
    """A fresh hidden sibling of ``out`` with the user's umask, to write results into."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    (tmp / MARKER).write_text("ecofed_sim results\n")
    return tmp


def _renameat2_exchange():
    """libc's ``renameat2`` when this is Linux with glibc >= 2.28, else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                   ctypes.c_uint]
    return fn


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_EXCHANGE = _renameat2_exchange()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the system or filesystem cannot."""
    if _EXCHANGE is None:
        return False
    rc = _EXCHANGE(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(a))


def swap_in(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out``; the old ``out`` (if any) is removed.
    At every instant ``out`` holds the old or the new results (see module docstring)."""
    if not out.exists():
        tmp.rename(out)
        return
    if _exchange(tmp, out):  # tmp now holds the old results
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = out.with_name(f".{out.name}.old-{tmp.name.split('.tmp-', 1)[1]}")
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(leftover: Path) -> int | None:
    match = re.search(r"\.(?:tmp|old)-(\d+)-", leftover.name)
    return int(match.group(1)) if match else None


def recover(out: Path) -> None:
    """Undo what a killed writer of ``out`` left: put back old results that were moved
    aside but not replaced, and remove dead processes' temporary folders."""
    if not out.parent.is_dir():
        return
    prefix = f".{out.name}."
    for leftover in sorted(out.parent.glob(f"{glob.escape(prefix)}*")):
        rest = leftover.name[len(prefix):]
        pid = _owner_pid(leftover)
        if not rest.startswith(("tmp-", "old-")) or pid is None or _pid_alive(pid):
            continue
        if rest.startswith("old-") and not out.exists():
            leftover.rename(out)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a sweep's results) while writing it."""
    lock = folder / ".lock"
    with lock.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ScenarioError(f"{folder}: another sweep is writing this folder "
                                f"(pid {holder}); wait for it or choose another --out"
                                ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
