"""Output files of the mlgov commands: one rule for every ``--output``, and an atomic writer.

The rule (`check_output_path`), applied before a command does any work:

* a directory or a special file (device, FIFO, socket, ``/dev/null``) is never replaced, not
  even with ``force``;
* the file must be creatable: its directory must exist (or, with ``make_parents``, the nearest
  existing ancestor must be a directory) and accept a new file, which is tried for real with a
  probe file that is removed at once (so ``/proc/...``, read-only mounts and permission
  problems are found here, whoever runs the command);
* an existing regular file is replaced only with ``force``.

Every refusal is a `ValueError` with one line naming the path; the CLI prints it as
``Error: ...`` and exits 2. The file itself is written to a temporary file in the same directory
and moved into place at the end (`install`, `write_text`), so a failure leaves the previous file
(if any) as it was and no half-written one.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from pathlib import Path

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _absolute(path: str | os.PathLike) -> Path:
    text = os.fspath(path)
    if not str(text).strip():
        raise ValueError("the output path is empty")
    return Path(os.path.abspath(os.path.expanduser(text)))


def _refuse_special(path: Path, st: os.stat_result) -> None:
    if stat.S_ISREG(st.st_mode):
        return
    what = _kind(st.st_mode)
    hint = "; give a file path inside it" if stat.S_ISDIR(st.st_mode) else ""
    raise ValueError(f"output {path} is {what}, not a regular file: it is never replaced, not even with --force{hint}")


def _existing_dir(path: Path, target: Path, make_parents: bool) -> Path:
    """The directory the file will be created in (or, with ``make_parents``, its nearest existing ancestor)."""
    directory = path
    while True:
        try:
            st = os.stat(directory)
        except (FileNotFoundError, NotADirectoryError):
            if directory.parent == directory:
                raise ValueError(f"cannot write {target}: no existing directory above it") from None
            directory = directory.parent
            continue
        except OSError as exc:
            raise ValueError(f"cannot write {target}: {directory}: {_reason(exc)}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise ValueError(f"cannot write {target}: {directory} is not a directory")
        if directory != path and not make_parents:
            raise ValueError(f"cannot write {target}: directory {path} does not exist")
        return directory


def _probe(directory: Path, target: Path) -> None:
    """Create and remove a file in ``directory``: the only reliable test that writing will work."""
    probe = directory / f".{target.name[:64]}.{uuid.uuid4().hex[:12]}.probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ValueError(f"cannot write {target}: cannot create a file in {directory} ({_reason(exc)})") from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass


def check_output_path(path: str | os.PathLike, force: bool = False, *, make_parents: bool = False) -> Path:
    """Refuse (`ValueError`, one line) an output the rule above does not allow; else its absolute path.

    ``make_parents``: the caller creates missing parent directories when it writes (the
    acquisition does), so a missing directory is fine as long as its nearest existing ancestor
    accepts new entries. Nothing is created here except the probe file, removed at once.
    """
    target = _absolute(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        st = None  # a parent is a file: reported by _existing_dir below
    except OSError as exc:
        raise ValueError(f"cannot write {target}: {_reason(exc)}") from None
    if st is not None:
        _refuse_special(target, st)
    directory = _existing_dir(target.parent, target, make_parents)
    _probe(directory, target)
    if st is not None and not force:
        raise ValueError(f"output {target} already exists; pass --force to replace it")
    if st is None and os.path.lexists(target) and not force:
        raise ValueError(f"output {target} is a dangling symbolic link; pass --force to replace it")
    return target


def temporary_path(target: Path) -> Path:
    """A fresh name for the temporary file next to ``target`` (hidden, ``.part``)."""
    return target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.part"


def install(tmp: Path, target: Path, force: bool = False) -> None:
    """Move the finished ``tmp`` to ``target`` in one step, by the same rule as `check_output_path`.

    Without ``force`` the move never replaces anything, even a file that appeared after the
    check (a hard link is created, then ``tmp`` removed; where the file system has no hard links,
    the existence check is repeated right before ``os.replace``). ``tmp`` is removed on refusal.
    """
    try:
        try:
            st = os.stat(target)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is not None:
            _refuse_special(target, st)
        if force:
            os.replace(tmp, target)
            return
        if st is not None or os.path.lexists(target):
            raise ValueError(f"output {target} appeared while it was being written; pass --force to replace it")
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise ValueError(f"output {target} appeared while it was being written; pass --force to replace it") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV, errno.ENOSYS):
                raise ValueError(f"cannot write {target}: {_reason(exc)}") from None
            os.replace(tmp, target)  # no hard links here: checked just above
        else:
            os.unlink(tmp)
    except OSError as exc:
        raise ValueError(f"cannot write {target}: {_reason(exc)}") from None
    finally:
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:
                pass


def write_text(path: str | os.PathLike, text: str, force: bool = False, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, by the rule above; returns the absolute path."""
    target = check_output_path(path, force)
    tmp = temporary_path(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding=encoding) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise ValueError(f"cannot write {target}: {_reason(exc)}") from None
    install(tmp, target, force)
    return target
