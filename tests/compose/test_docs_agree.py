"""The deploy docs agree with the code and with each other (issue 24 item 18): the settings'
defaults they quote, the Azure role they ask for, every section they point at, what cloud-init
sets that the manual walkthrough must explain, and the console README's commands run from where
it says to run them."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

from rqp.config import DEFAULT_CHUNK_TARGET_SECONDS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
#: every file that points readers at a section of a README or SECURITY.md
POINTING = [
    ROOT / "README.md",
    ROOT / "SECURITY.md",
    COMPOSE / "README.md",
    COMPOSE / ".env.example",
    COMPOSE / "init-secrets.sh",
    *sorted(COMPOSE.glob("*.yml")),
    *sorted((COMPOSE / "cloud-init").glob("*.yaml")),
    ROOT / "console" / "README.md",
    ROOT / "metrics-logger" / "README.md",
    *sorted((ROOT / "docker").glob("*.sh")),
    *sorted((ROOT / "tools").glob("*.sh")),
]
REFERENCE = re.compile(r'(?P<doc>(?:[\w-]+/)*(?:README|SECURITY)(?:\.md)?)\s*,?\s*\(?"(?P<title>[^"]{2,80})"')


def _prose(path: Path) -> str:
    """The file's text with comment markers gone and lines joined, so a reference broken across
    two comment lines reads as one."""
    lines = path.read_text().splitlines()
    if path.suffix != ".md":
        lines = [re.sub(r"^\s*#\s?", "", line) for line in lines]
    return " ".join(line.strip() for line in lines)


def _headings(doc: Path) -> set[str]:
    """Markdown headings, and the bold run-in titles paragraphs start with (``**The script's uid.**``)."""
    text = doc.read_text()
    found = {m.group(1) for m in re.finditer(r"(?m)^#{1,6}\s+(.+?)\s*$", text)}
    found |= {m.group(1) for m in re.finditer(r"(?m)^\*\*(.+?)\.?\*\*", text)}
    return {_norm(t) for t in found}


def _norm(title: str) -> str:
    return re.sub(r"\s+", " ", title.replace("`", "").replace("*", "")).strip().lower()


def _slug(title: str) -> str:
    return re.sub(r"[^\w\- ]", "", _norm(title)).replace(" ", "-")


def test_every_section_the_docs_point_at_exists():
    """`.env.example` and `init-secrets.sh` sent readers to "Deploy on plain VMs", a section
    that no longer existed."""
    checked, broken = 0, []
    for path in POINTING:
        for m in REFERENCE.finditer(_prose(path)):
            doc, title = m.group("doc"), m.group("title")
            name = doc if doc.endswith(".md") else doc + ".md"
            candidates = [ROOT / name] if "/" in name else [ROOT / name, path.parent / name]
            checked += 1
            if not any(c.exists() and _norm(title) in _headings(c) for c in candidates):
                broken.append(f'{path.relative_to(ROOT)}: {doc} "{title}"')
        for m in re.finditer(r"\]\((?P<doc>[\w./-]*?)#(?P<anchor>[\w-]+)\)", path.read_text()):
            target = (path.parent / m.group("doc")).resolve() if m.group("doc") else path
            checked += 1
            if not target.exists() or m.group("anchor") not in {_slug(h) for h in _headings(target)}:
                broken.append(f"{path.relative_to(ROOT)}: link {m.group(0)}")
    assert checked >= 5, "the reference pattern finds nothing: the test no longer reads the docs"
    assert not broken, "pointers to sections that do not exist:\n" + "\n".join(broken)


def test_env_example_quotes_the_chunk_target_and_the_azure_role_the_code_and_its_readme_use():
    env = (COMPOSE / ".env.example").read_text()
    target = re.search(r"adapted toward ~([\d.]+) s per chunk", env)
    assert target and float(target.group(1)) == DEFAULT_CHUNK_TARGET_SECONDS, target
    role = re.search(r"needs the\s+(?:#\s*)?([A-Z][\w ]*?) role", env)
    readme_role = re.search(r"--role (\w+)", (ROOT / "metrics-logger" / "README.md").read_text())
    assert role and readme_role and role.group(1) == readme_role.group(1), (role, readme_role)


def test_the_walkthrough_explains_what_cloud_init_sets_differently():
    """cloud-init sets RQP_QUEUE_URL=azure-queue on both VMs; the manual steps must say why they
    do not, and how to do the same."""
    walkthrough = (COMPOSE / "README.md").read_text()
    for vm in ("scheduler-vm", "processor-vm"):
        url = re.search(r"(?m)^\s+RQP_QUEUE_URL=(\S+)$", (COMPOSE / "cloud-init" / f"{vm}.yaml").read_text())
        assert url, vm
        scheme = url.group(1).split("://")[0]
        assert f"RQP_QUEUE_URL={scheme}://" in walkthrough, f"the walkthrough never mentions {url.group(0).strip()}"


def test_step_3_says_what_init_secrets_needs_and_leaves():
    text = (COMPOSE / "README.md").read_text()
    step3 = text[text.index("**3. Secrets") : text.index("**4. ")]
    assert "rqp-scheduler" in step3 and "make images" in step3, "step 3: init-secrets.sh needs the scheduler image"
    assert "signer.pem" in step3 and "10001" in step3 and "0400" in step3 and "sudo" in step3
    assert "install -d -o 10001 -g 10001 -m 0700 submitter" in step3, "step 3: how to build the submitter's directory"


def test_the_console_readmes_secret_commands_run_from_the_repository_root(tmp_path):
    """`openssl rand -hex 32 > secrets/console_password` failed from the repo root (no secrets/)."""
    text = (ROOT / "console" / "README.md").read_text()
    run = text[text.index("## Run") :]
    block = run[run.index("```sh\n") + 6 : run.index("```", run.index("```sh\n") + 6)]
    assert "From the repository's root" in run[: run.index("```sh")]
    # the lines that make files here (not pip, not sudo copies of init-secrets' files, not the server)
    local = [line for line in block.splitlines() if line.startswith(("install -d", "openssl", "mkdir"))]
    assert any("console_password" in line for line in local), block
    cp = subprocess.run(["bash", "-euc", "\n".join(local)], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    pw = tmp_path / "secrets" / "console_password"
    assert re.fullmatch(r"[0-9a-f]{64}\n?", pw.read_text()) and stat.S_IMODE(pw.stat().st_mode) == 0o400
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700


def test_engine_is_documented_where_the_deploy_steps_use_it():
    """init-secrets.sh and make push honour ENGINE as make images does; the steps say so."""
    text = (COMPOSE / "README.md").read_text()
    assert "`ENGINE` (`docker`, the default, or `podman`)" in text
