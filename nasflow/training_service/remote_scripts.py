"""The shell and Python snippets the remote service runs over SSH, and the parsing of their output.

Kept as data (formatted with ``str.format``) so that what runs on a machine can be read in one place.
"""

from __future__ import annotations

__all__ = ["CHECK_SCRIPT", "START_SCRIPT", "STOP_SCRIPT", "TAG_VAR", "MARK", "idle_gpus"]

TAG_VAR = "NASFLOW_RAY_TAG"  # set in the environment of every Ray process the service starts
MARK = "NASFLOW_CHECK "  # prefixes the check script's JSON line


def idle_gpus(gpu_table: str, busy_table: str) -> list[int]:
    """GPU indices with no compute process, from ``nvidia-smi --query-gpu=index,uuid`` and
    ``--query-compute-apps=gpu_uuid`` (both ``--format=csv,noheader``)."""
    busy = {line.strip() for line in busy_table.splitlines() if line.strip()}
    idle = []
    for line in gpu_table.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0].isdigit() and parts[1] not in busy:
            idle.append(int(parts[0]))
    return idle


CHECK_SCRIPT = r"""
PY={python}
if [ -d "$PY" ]; then
  for name in python python3; do if [ -x "$PY/$name" ]; then PY="$PY/$name"; break; fi; done
fi
if ! RESOLVED=$(command -v "$PY" 2>/dev/null) || [ -d "$RESOLVED" ]; then echo "NASFLOW_NO_PYTHON $PY"; exit 3; fi
"$RESOLVED" - {port} <<'NASFLOW_EOF'
import json, shutil, socket, subprocess, sys
info = {{"executable": sys.executable, "python": "%d.%d.%d" % sys.version_info[:3]}}
for name in ("nasflow", "ray", "cloudpickle"):
    try:
        info[name] = getattr(__import__(name), "__version__", "unknown")
    except Exception as err:
        info[name + "_error"] = "%s: %s" % (type(err).__name__, err)
port = int(sys.argv[1])
if port:
    with socket.socket() as s:
        s.settimeout(2)
        info["port_open"] = s.connect_ex(("127.0.0.1", port)) == 0
    with socket.socket() as s:  # a port for Ray's runtime-env agent, which Ray Client needs to know
        s.bind(("", 0))
        info["free_port"] = s.getsockname()[1]
if shutil.which("nvidia-smi"):
    def query(arg):
        try:
            return subprocess.run(["nvidia-smi", arg, "--format=csv,noheader"], capture_output=True, text=True,
                                  timeout=30).stdout
        except Exception:
            return ""
    info["gpu_table"] = query("--query-gpu=index,uuid")
    info["busy_table"] = query("--query-compute-apps=gpu_uuid")
print("NASFLOW_CHECK " + json.dumps(info))
NASFLOW_EOF
"""

START_SCRIPT = r"""
export RAY_USAGE_STATS_ENABLED=0 {tag_var}={tag} RAY_AUTH_MODE=token RAY_AUTH_TOKEN={token}
export PATH="$(dirname {python}):$PATH"
{cuda}
LOG=$(mktemp)
{python} -m ray.scripts.scripts start {args} >"$LOG" 2>&1 </dev/null
STATUS=$?
cat "$LOG"; rm -f "$LOG"
exit $STATUS
"""

STOP_SCRIPT = r"""
{python} - <<'NASFLOW_EOF'
import os, shutil, signal, time
# Ray's own processes carry the tag in their environment; workers and agents rename themselves
# (which clobbers /proc/PID/environ), so their parents (raylet, client server) lead to them.
tag = b"{tag_var}={tag}"
def table():
    parents, tagged = {{}}, set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.stat("/proc/" + entry).st_uid != os.getuid():
                continue
            with open("/proc/%s/stat" % entry, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if fields[0] == b"Z":
                continue
            parents[int(entry)] = int(fields[1])
            with open("/proc/%s/environ" % entry, "rb") as f:
                if tag in f.read().split(b"\0"):
                    tagged.add(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return parents, tagged
def ours(known):
    parents, found = table()
    found |= known & set(parents)
    grew = True
    while grew:
        children = {{pid for pid, parent in parents.items() if parent in found}} - found
        grew = bool(children)
        found |= children
    return found
def send(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
found = ours(set())
count = len(found)
send(found, signal.SIGTERM)
deadline = time.time() + {grace}
while found and time.time() < deadline:
    time.sleep(0.2)
    found = ours(found)
send(found, signal.SIGKILL)
deadline = time.time() + 10
while found and time.time() < deadline:
    time.sleep(0.2)
    found = ours(found)
shutil.rmtree({temp_dir!r}, ignore_errors=True)
print("NASFLOW_STOPPED %d %d" % (count, len(found)))
NASFLOW_EOF
"""
