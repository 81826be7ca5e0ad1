#!/usr/bin/env bash
# Dependency audit: every package installed in the project's virtualenv (what the roles run with)
# and every package of the wheelhouse the container images are built from (wheels/requirements.lock,
# when `make wheels` has made it: the console's Flask and waitress too), checked for known vulnerabilities
# with pip-audit (PyPI's vulnerability data), and a report a
# person can read: what was audited, what is vulnerable and how to fix it, what could NOT be
# audited and why. pip-audit alone says "No known vulnerabilities found" even when it reached no
# vulnerability service at all; this report never does.
#
#   tools/audit.sh            report; exit 0 unless the audit itself is broken
#   tools/audit.sh --strict   exit 1 when a known vulnerability is found
#
# Network trouble (no PyPI, no vulnerability service) is reported as "not audited" and never fails
# the run. Environment: VENV (default .venv), AUDIT_VENV (default .tools/audit-venv), AUDIT_REPORT
# (default .tools/audit-report.txt).
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_ROOT}"
VENV="${VENV:-.venv}"
AUDIT_VENV="${AUDIT_VENV:-.tools/audit-venv}"
AUDIT_REPORT="${AUDIT_REPORT:-.tools/audit-report.txt}"
WHEELS_LOCK="${WHEELS_LOCK:-wheels/requirements.lock}"
STRICT=0
[ "${1:-}" = "--strict" ] && STRICT=1

if [ ! -x "${VENV}/bin/python" ]; then
    echo "audit: no project virtualenv at ${VENV}; run 'make install' first" >&2
    exit 2
fi
mkdir -p "$(dirname "${AUDIT_REPORT}")" .tools
PYTHON="${PYTHON:-python3}"

# the tool, in its own virtualenv, pinned in requirements-audit.txt
stamp="${AUDIT_VENV}/.requirements-audit.txt"
if [ ! -x "${AUDIT_VENV}/bin/pip-audit" ] || ! cmp -s requirements-audit.txt "${stamp}"; then
    rm -rf "${AUDIT_VENV}"
    if ! { "${PYTHON}" -m venv "${AUDIT_VENV}" && "${AUDIT_VENV}/bin/python" -m pip install -q -r requirements-audit.txt; } >"${AUDIT_VENV}.log" 2>&1; then
        {
            echo "rqp dependency audit: NOT AUDITED"
            echo "pip-audit could not be installed (network trouble?); see ${AUDIT_VENV}.log:"
            tail -5 "${AUDIT_VENV}.log" | sed 's/^/    /'
        } | tee "${AUDIT_REPORT}"
        rm -rf "${AUDIT_VENV}"
        exit 0
    fi
    cp requirements-audit.txt "${stamp}"
fi

SITE="$("${VENV}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
INSTALLED="$(mktemp)"
RAW="$(mktemp)"
RAW2="$(mktemp)"
trap 'rm -f "${INSTALLED}" "${RAW}" "${RAW2}"' EXIT
"${VENV}/bin/python" - >"${INSTALLED}" <<'PY'
import importlib.metadata as md, json, sys
out = {}
for d in md.distributions():
    name = d.metadata["Name"]
    direct = d.read_text("direct_url.json") or "{}"
    editable = json.loads(direct).get("dir_info", {}).get("editable", False)
    key = name.lower().replace("_", "-")
    # an editable install is also seen through its source tree's .egg-info: editable wins
    editable = editable or out.get(key, {}).get("editable", False)
    out[key] = {"name": name, "version": d.version, "editable": editable}
json.dump({"python": sys.version.split()[0], "packages": out}, sys.stdout)
PY

"${AUDIT_VENV}/bin/pip-audit" --path "${SITE}" --skip-editable --progress-spinner off --desc on --timeout 20 \
    -f json -o "${RAW}" >/dev/null 2>"${RAW}.err"
rc=$?
rc2=0
if [ -f "${WHEELS_LOCK}" ]; then
    # the images' packages: pinned, so no resolution is needed (--no-deps --disable-pip)
    "${AUDIT_VENV}/bin/pip-audit" -r "${WHEELS_LOCK}" --no-deps --disable-pip --progress-spinner off --desc on --timeout 20 \
        -f json -o "${RAW2}" >/dev/null 2>"${RAW2}.err"
    rc2=$?
fi

"${AUDIT_VENV}/bin/python" - "${INSTALLED}" "${RAW}" "${RAW}.err" "${rc}" "${STRICT}" "${AUDIT_REPORT}" "${WHEELS_LOCK}" "${RAW2}" "${rc2}" <<'PY'
import json, re, sys, time, urllib.request

installed_file, raw_file, err_file, rc, strict, report_file, lock_file, raw2_file, rc2 = sys.argv[1:]
rc, rc2, strict = int(rc), int(rc2), strict == "1"
env = json.load(open(installed_file))
pkgs = {k: v for k, v in env["packages"].items() if not v["editable"]}
# the wheelhouse the images ship: name==version lines (the project's own packages are built there too)
image_only = 0
try:
    for line in open(lock_file):
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line.strip())
        if not m:
            continue
        key = m.group(1).lower().replace("_", "-")
        if key.startswith("rqp"):
            continue
        if key not in pkgs or pkgs[key]["version"] != m.group(2):
            image_only += key not in pkgs
            pkgs.setdefault(key, {"name": m.group(1), "version": m.group(2), "editable": False})
except OSError:
    lock_file = ""
lines: list[str] = []
say = lines.append

try:
    raw = json.load(open(raw_file))
except (OSError, ValueError):
    raw = None
try:
    raw2 = json.load(open(raw2_file)) if lock_file else {"dependencies": []}
except (OSError, ValueError):
    raw2 = {"dependencies": []}
if raw is not None:
    raw.setdefault("dependencies", []).extend(raw2.get("dependencies", []))
err = open(err_file, errors="replace").read().strip()

vulnerable: dict[str, list[dict]] = {}
audited: set[str] = set()
not_audited: dict[str, str] = {}
if raw is not None:
    for dep in raw.get("dependencies", []):
        key = dep["name"].lower().replace("_", "-")
        if key not in pkgs:
            continue  # the project's own editable packages
        if "skip_reason" in dep:
            not_audited[key] = dep["skip_reason"]
            continue
        audited.add(key)
        if dep.get("vulns"):
            vulnerable[key] = dep["vulns"]
else:
    not_audited = {k: "pip-audit failed: " + (err.splitlines()[-1] if err else f"exit {rc}") for k in pkgs}
for key in pkgs:
    if key not in audited and key not in not_audited:
        not_audited[key] = "pip-audit did not report on it"

# PyPI's per-release JSON (what pip-audit asks) may be unreachable where the project page is not:
# the project page lists the vulnerabilities of the latest release, which covers every package
# installed at its latest version.
fallback: set[str] = set()
outdated: dict[str, str] = {}
for key in sorted(not_audited):
    p = pkgs.get(key)
    if p is None:
        continue
    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{p['name']}/json", timeout=20) as resp:
            doc = json.load(resp)
    except Exception:  # noqa: BLE001 - any network trouble means "not audited", never a failure
        continue
    latest = doc.get("info", {}).get("version")
    if latest == p["version"]:
        fallback.add(key)
        audited.add(key)
        del not_audited[key]
        vulns = [{"id": v.get("id"), "fix_versions": v.get("fixed_in") or [], "aliases": v.get("aliases") or [], "description": v.get("summary") or v.get("details") or ""} for v in doc.get("vulnerabilities") or []]
        if vulns:
            vulnerable[key] = vulns
    else:
        outdated[key] = latest or "?"
        not_audited[key] = f"the vulnerability data for {p['name']} {p['version']} could not be fetched (latest is {latest})"

n_vulns = sum(len(v) for v in vulnerable.values())
status = "VULNERABLE" if vulnerable else ("PARTIAL" if not_audited else "CLEAN")
say(f"rqp dependency audit: {status}  ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python {env['python']}, pip-audit + PyPI vulnerability data)")
say(f"  {len(pkgs)} packages: the project's virtualenv (its own editable packages excluded)"
    + (f" and the images' wheelhouse {lock_file} ({image_only} of them only there)" if lock_file else "; no wheelhouse lock (run 'make wheels' to audit the images' packages too)"))
say(f"  {len(audited)} audited ({len(fallback)} of them from PyPI's project page, as the installed version is the latest)")
say(f"  {len(vulnerable)} with known vulnerabilities ({n_vulns} advisories)")
say(f"  {len(not_audited)} NOT audited (see below: no vulnerability data could be fetched for them)")
if vulnerable:
    say("")
    say("Known vulnerabilities -- upgrade to a fixed version:")
    for key in sorted(vulnerable):
        p = pkgs.get(key, {"name": key, "version": "?"})
        for v in vulnerable[key]:
            fixes = ", ".join(v.get("fix_versions") or []) or "no fixed release yet"
            desc = " ".join((v.get("description") or "").split())
            say(f"  {p['name']} {p['version']}: {v.get('id')} ({', '.join(v.get('aliases') or []) or 'no aliases'}); fixed in: {fixes}")
            if desc:
                say(f"      {desc[:300]}{'...' if len(desc) > 300 else ''}")
if not_audited:
    say("")
    say("Not audited (network trouble or a package PyPI does not know; this is NOT a clean bill of health):")
    for key in sorted(not_audited):
        say(f"  {pkgs.get(key, {'name': key})['name']} {pkgs.get(key, {}).get('version', '?')}: {not_audited[key]}")
if err and raw is None:
    say("")
    say("pip-audit said: " + " ".join(err.split())[:500])
text = "\n".join(lines) + "\n"
sys.stdout.write(text)
open(report_file, "w").write(text)
print(f"(report written to {report_file})")
sys.exit(1 if (strict and vulnerable) else 0)
PY
