"""The script host under its own uid, and ``RQP_REQUIRE_SANDBOX`` checking by trying (issue 23, item 2).

Where the role can (``CAP_SETUID``/``CAP_SETGID``, and the uid can reach the interpreter), a
host runs as an unprivileged uid that owns none of the role's files, holds no capability, and
cannot get the role's uid back; where it cannot, the protections line says so and why.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rqp.sandbox import OK, RAISED, TIMED_OUT, Protections, SandboxConfig, SandboxError, ScriptPool, probe
from rqp.sandbox._identity import DEFAULT_SANDBOX_UID, can_set_ids, parse_uid, plan

WHOAMI = r"""
import os

def process(record):
    if record == "ids":
        return [os.getresuid(), os.getresgid(), os.getgroups()]
    if record == "read_secret":
        return open(SECRET).read()
    if record == "setuid":
        os.setresuid(0, 0, 0)
        return "root again"
    if record == "write_tmp":
        with open(os.path.join(os.environ["TMPDIR"], "scratch"), "w") as fh:
            fh.write("mine")
        return os.stat(os.path.join(os.environ["TMPDIR"], "scratch")).st_uid
"""


def _host_python() -> str | None:
    """An interpreter of this Python version that another uid can run: this one, unless it sits
    in a directory only its owner can search (``/root/.pyenv`` here), else the system's."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")):
        if candidate and plan((DEFAULT_SANDBOX_UID, DEFAULT_SANDBOX_UID), [candidate]).uid is not None:
            return candidate
    return None


@pytest.fixture
def shared_tmp() -> Iterator[str]:
    """A scratch root the sandbox uid can search (pytest's own is 0700 root)."""
    d = tempfile.mkdtemp(prefix="rqp-uid-test-", dir="/tmp")
    os.chmod(d, 0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_rqp_sandbox_uid_values():
    assert parse_uid("65534") == (65534, 65534)
    assert parse_uid("20000:20001") == (20000, 20001)
    assert parse_uid("off") is None
    for bad in ("0", "root", "1:0"):
        with pytest.raises(ValueError, match="RQP_SANDBOX_UID"):
            parse_uid(bad)


def test_no_other_uid_where_it_cannot_reach_the_interpreter(shared_tmp):
    private = Path(shared_tmp) / "private"
    (private / "bin").mkdir(parents=True)
    private.chmod(0o700)
    got = plan((DEFAULT_SANDBOX_UID, DEFAULT_SANDBOX_UID), [str(private / "bin")])
    assert got.uid is None
    if can_set_ids():
        assert got.reason == f"uid 65534 cannot reach {private / 'bin'} ({private} is not searchable by it)"
    else:
        assert got.reason == "the role has no CAP_SETUID/CAP_SETGID to give it one"
    assert plan(None, []).reason == "RQP_SANDBOX_UID=off"


def test_a_role_without_another_uid_says_so_and_still_refuses(shared_tmp):
    """Where hosts keep the role's uid, the protections line says so and why, and the refusals
    that are tried are the same."""
    protections = probe(SandboxConfig(sandbox_ids=None, tmp_root=shared_tmp))
    line = protections.describe()
    assert "same uid as the role (RQP_SANDBOX_UID=off; the allowlist alone holds)" in line, line
    assert protections.report["denials"] and protections.report["no_capabilities"], protections.report
    assert set(protections.report["denials_tried"]) >= {"chmod", "socket", "read outside", "fork"}


@pytest.mark.skipif(not can_set_ids(), reason="needs CAP_SETUID and CAP_SETGID (run as root)")
def test_the_host_runs_as_its_own_uid_and_cannot_touch_the_roles_files(shared_tmp, tmp_path):
    python = _host_python()
    if python is None:
        pytest.skip("no interpreter of this Python version that uid 65534 can run")
    # a role's file the host's Landlock rules let it read (a read path the operator granted),
    # readable by its owner only: the uid, not Landlock, is what keeps the host out
    granted = Path(tempfile.mkdtemp(prefix="rqp-granted-", dir="/tmp"))
    try:
        granted.chmod(0o755)
        secret = granted / "settings.toml"
        secret.write_text("password = 'x'\n")
        secret.chmod(0o600)
        config = SandboxConfig(
            record_timeout=10, memory_mb=512, python=python, tmp_root=shared_tmp, read_paths=(str(granted),)
        )
        protections = probe(config)
        assert protections.report["sandbox_uid"] == DEFAULT_SANDBOX_UID, protections.describe()
        assert "own uid 65534" in protections.describe()
        assert "back to the role's uid" in protections.report["denials_tried"]
        assert protections.missing == []
        pool = ScriptPool(config, warm=False)
        try:
            src = f"SECRET = {str(secret)!r}\n" + WHOAMI
            got = pool.run(
                "uid", src.encode, [json.dumps(r).encode() for r in ("ids", "read_secret", "setuid", "write_tmp")]
            )
        finally:
            pool.close()
        ids, read_secret, setuid, write_tmp = got
        assert ids == (OK, json.dumps([[65534] * 3, [65534] * 3, []], separators=(",", ":")).encode())
        assert read_secret[0] == RAISED and b"PermissionError" in read_secret[1]
        assert setuid[0] == RAISED and b"PermissionError" in setuid[1]
        assert write_tmp == (OK, b"65534")  # its scratch directory is its own
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and secret.stat().st_uid == os.geteuid()
        assert [p for p in Path(shared_tmp).iterdir()] == []  # and gone with the host
    finally:
        shutil.rmtree(granted, ignore_errors=True)


def test_require_sandbox_refuses_a_host_whose_refusals_failed():
    """What ``RQP_REQUIRE_SANDBOX`` checks is what the host found when it tried: a denial that did
    not hold is missing even when every layer reports itself active."""
    report = {
        "no_new_privs": True,
        "seccomp": True,
        "landlock_fs": True,
        "rlimits": True,
        "no_capabilities": True,
        "denials": False,
        "denials_failed": ["chmod"],
        "missing": ["refusals (chmod not refused)"],
    }
    with pytest.raises(SandboxError, match=r"missing: refusals \(chmod not refused\)"):
        Protections(report).check(True, "this host")


def test_an_interpreter_behind_an_unreachable_link_is_unreachable(shared_tmp):
    """A virtualenv's ``bin/python`` is a link: the uid must reach the link as well as where it
    points (here the interpreter is public, the virtualenv is not)."""
    if not can_set_ids():
        pytest.skip("needs CAP_SETUID and CAP_SETGID (run as root)")
    public = Path(shared_tmp) / "bin"
    public.mkdir(mode=0o755)
    (public / "python").write_text("")
    venv = Path(shared_tmp) / "venv"
    venv.mkdir(mode=0o700)
    (venv / "python").symlink_to(public / "python")
    assert plan((DEFAULT_SANDBOX_UID, DEFAULT_SANDBOX_UID), [str(public / "python")]).uid == DEFAULT_SANDBOX_UID
    got = plan((DEFAULT_SANDBOX_UID, DEFAULT_SANDBOX_UID), [str(venv / "python")])
    assert got.uid is None and f"({venv} is not searchable by it)" in got.reason, got.reason


# What a role in the images runs as: uid 10001 holding only CAP_SETUID/CAP_SETGID as ambient
# capabilities (docker/as-role.sh), no CAP_CHOWN or CAP_KILL, scratch root a mode-1777 tmpfs.
ROLE_IN_IMAGES = r"""
import json, os, sys
from pathlib import Path
from rqp.sandbox import ScriptPool, SandboxConfig, probe

python, root = sys.argv[1], sys.argv[2]
config = SandboxConfig(record_timeout=2, memory_mb=512, python=python, tmp_root=root)
out = {"role": [os.getuid(), os.getgid()], "line": probe(config).describe()}
src = b'''
import os, time

def process(record):
    if record == "loop":
        while True:
            time.sleep(1)
    path = os.path.join(os.environ["TMPDIR"], "plaintext")
    with open(path, "w") as fh:
        fh.write("record plaintext")
    return [os.getresuid(), os.stat(path).st_uid, os.getcwd() == os.environ["TMPDIR"]]
'''
pool = ScriptPool(config, warm=False)
try:
    out["results"] = [[k, v.decode()] for k, v in pool.run("w", lambda: src, [b'"a"', b'"loop"', b'"b"'])]
    out["during"] = [[e.stat().st_uid, oct(e.stat().st_mode & 0o777)] for e in Path(root).iterdir()]
finally:
    pool.close()
out["after"] = [e.name for e in Path(root).iterdir()]
print(json.dumps(out))
"""


@pytest.mark.skipif(not can_set_ids() or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_a_role_with_only_setuid_and_setgid_runs_hosts_as_their_uid(tmp_path):
    """The images' role: uid 10001 with only CAP_SETUID/CAP_SETGID. Its hosts still run as 65534
    in a scratch directory that uid made (the role cannot chown one over), a runaway one is
    killed as its uid (the role cannot signal another uid), and the scratch goes with the host."""
    import rqp

    python = _host_python()
    src = str(Path(rqp.__file__).resolve().parents[1])
    import redis  # a dependency of rqp, wherever this environment keeps it

    site = str(Path(redis.__file__).resolve().parents[1])
    if python is None or plan((10001, 10001), [python, src, site]).uid is None:
        pytest.skip("no interpreter, rqp sources and dependencies that uid 10001 can reach")
    root = tempfile.mkdtemp(prefix="rqp-images-scratch-", dir="/tmp")
    try:
        os.chmod(root, 0o1777)  # as the images' /tmp tmpfs
        proc = subprocess.run(
            [
                "setpriv", "--reuid=10001", "--regid=10001", "--clear-groups",
                "--inh-caps=-all,+setuid,+setgid", "--ambient-caps=-all,+setuid,+setgid",
                "env", f"PYTHONPATH={src}:{site}", python, "-s", "-c", ROLE_IN_IMAGES, python, root,
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        got = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert got["role"] == [10001, 10001]
    assert "own uid 65534" in got["line"] and "MISSING" not in got["line"], got["line"]
    a, loop, b = got["results"]
    assert a == [OK, json.dumps([[65534] * 3, 65534, True], separators=(",", ":"))], a
    assert loop[0] == TIMED_OUT, loop  # killed as its uid, and a new host took the next record
    assert b == a, b
    assert got["during"] and all(d == [65534, "0o700"] for d in got["during"]), got["during"]
    assert got["after"] == [], got["after"]
