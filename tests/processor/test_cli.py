"""The roles fail fast, in one line, on what every worker would fail on."""

import subprocess

from harness import bin_path
from redis_server import free_port


def _run(cmd, env):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_processor_and_scheduler_refuse_unreachable_redis(tmp_path, kek):
    env = {
        "PATH": "/usr/bin:/bin",
        "RQP_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "RQP_KEK_FILE": str(kek[0]),
        "RQP_BLOB_URL": str(tmp_path),
    }
    for cmd in ([bin_path("rqp-processor"), "--workers", "1"], [bin_path("rqp-scheduler"), "run", "w1"]):
        cp = _run(cmd, env)
        assert cp.returncode == 6, cp.stderr
        lines = cp.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot reach Redis at redis://127.0.0.1:" in lines[0], cp.stderr


def test_processor_refuses_missing_key(tmp_path, redis_url):
    env = {
        "PATH": "/usr/bin:/bin",
        "RQP_REDIS_URL": redis_url,
        "RQP_KEK_FILE": str(tmp_path / "gone.pem"),
        "RQP_BLOB_URL": str(tmp_path),
        "RQP_ALLOW_INSECURE_REDIS": "true",
    }
    cp = _run([bin_path("rqp-processor"), "--workers", "1"], env)
    assert cp.returncode == 3
    assert (
        cp.stderr.strip()
        == f"rqp-processor: error: private key file {tmp_path / 'gone.pem'} does not exist; create one with 'rqp keygen' or fix the path"
    )


def test_scheduler_names_an_unknown_workload(tmp_path, redis_url, kek, signer):
    env = {
        "PATH": "/usr/bin:/bin",
        "RQP_REDIS_URL": redis_url,
        "RQP_KEK_FILE": str(kek[0]),
        "RQP_BLOB_URL": str(tmp_path),
        "RQP_ALLOW_INSECURE_REDIS": "true",
        "RQP_TRUSTED_SIGNERS_FILE": str(signer.trusted),
    }
    cp = _run([bin_path("rqp-scheduler"), "run", "nosuch"], env)
    assert cp.returncode == 7
    assert "workload nosuch not found in file://" in cp.stderr and "pack it with 'rqp pack'" in cp.stderr


def test_roles_refuse_to_start_without_trusted_signers(tmp_path, redis_url, kek):
    """No list of trusted submitters, no work: a role never falls back to running anything."""
    env = {
        "PATH": "/usr/bin:/bin",
        "RQP_REDIS_URL": redis_url,
        "RQP_KEK_FILE": str(kek[0]),
        "RQP_BLOB_URL": str(tmp_path),
        "RQP_ALLOW_INSECURE_REDIS": "true",
    }
    for cmd, prog in (
        ([bin_path("rqp-processor"), "--workers", "1"], "rqp-processor"),
        ([bin_path("rqp-scheduler"), "run", "w1"], "rqp-scheduler"),
    ):
        cp = _run(cmd, env)
        assert cp.returncode == 2, cp.stderr
        assert cp.stderr.strip() == (
            f"{prog}: error: no trusted signers configured: set RQP_TRUSTED_SIGNERS_FILE to the submitters' public keys "
            "(the .pub.pem of 'rqp keygen --signing'); rqp runs only signed workloads"
        )
    (tmp_path / "empty.pem").write_text("# nobody yet\n")
    cp = _run(
        [bin_path("rqp-scheduler"), "run", "w1"], {**env, "RQP_TRUSTED_SIGNERS_FILE": str(tmp_path / "empty.pem")}
    )
    assert cp.returncode == 2 and f"trusted signers file {tmp_path / 'empty.pem'} holds no public key" in cp.stderr


def test_roles_refuse_a_redis_without_password_unless_allowed(tmp_path, redis_url, kek):
    env = {
        "PATH": "/usr/bin:/bin",
        "RQP_REDIS_URL": redis_url,
        "RQP_KEK_FILE": str(kek[0]),
        "RQP_BLOB_URL": str(tmp_path),
    }
    for cmd in ([bin_path("rqp-processor"), "--workers", "1"], [bin_path("rqp-scheduler"), "run", "w1"]):
        cp = _run(cmd, env)
        assert cp.returncode == 6
        assert "is used without a password; set RQP_REDIS_PASSWORD_FILE, or RQP_ALLOW_INSECURE_REDIS=true" in cp.stderr


def test_processor_reports_its_own_host_metrics(cluster):
    p = cluster.start_processor(1, "--report-host", "1")
    blobs = cluster.root / "blobs" / "metrics"
    cluster.wait_for(
        lambda: any(blobs.rglob("*.jsonl")) if blobs.exists() else False, 60, "host metrics from the processor"
    )
    import json as _json

    samples = [_json.loads(line) for f in blobs.rglob("*.jsonl") for line in f.read_text().splitlines()]
    metrics = {s["metric"] for s in samples}
    assert {"cpu_percent"} & metrics or any("cpu" in m for m in metrics), metrics
    assert p.poll() is None
