"""Pack the pyroute2 a managed host needs, on the controller, as a tar.gz the host can unpack.

Managed hosts may have no internet and Debian's pyroute2 is too old, so the controller provides
it: from a wheel file the user names (`--wheel`), or else from the pyroute2 this Python imports
(the one Ansible itself runs with). pyroute2 is pure Python, so the files work on any host
Python 3. The archive is deterministic (sorted names, fixed times and owners): the same pyroute2
always gives the same bytes, so copying it again is never a change.

Prints one JSON line: {"archive": path, "version": "0.9.7", "changed": bool}.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path


def version_tuple(text: str) -> tuple:
    return tuple(int(m.group()) for m in (re.match(r"\d+", p) for p in text.split(".")) if m)


def files_of_installed() -> tuple[str, dict[str, bytes]]:
    """Every file of the installed pyroute2 distribution (package and dist-info)."""
    dist = metadata.distribution("pyroute2")
    files = {}
    for entry in dist.files or []:
        name = str(entry)
        if name.startswith("..") or "__pycache__" in name or name.endswith(".pyc"):
            continue
        path = Path(entry.locate())
        if path.is_file():
            files[name] = path.read_bytes()
    return dist.version, files


def files_of_wheel(wheel: str) -> tuple[str, dict[str, bytes]]:
    with zipfile.ZipFile(wheel) as zf:
        files = {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    metas = [n for n in files if re.match(r"pyroute2-[^/]+\.dist-info/METADATA$", n)]
    if not metas:
        raise SystemExit("%s is not a pyroute2 wheel (no pyroute2-*.dist-info/METADATA)" % wheel)
    version = re.search(rb"^Version: (\S+)", files[metas[0]], re.M).group(1).decode()
    return version, files


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dest-dir", required=True)
    parser.add_argument("--wheel", default="")
    parser.add_argument("--min-version", required=True)
    args = parser.parse_args()
    try:
        version, files = files_of_wheel(args.wheel) if args.wheel else files_of_installed()
    except metadata.PackageNotFoundError:
        sys.exit("the controller's Python (%s) has no pyroute2 to give the hosts: pip install 'pyroute2>=%s' "
                 "there, or set pyroute2_wheel to a pyroute2 wheel file" % (sys.executable, args.min_version))
    if version_tuple(version) < version_tuple(args.min_version):
        sys.exit("the controller's pyroute2 is %s (%s); managed hosts need >= %s: pip install -U pyroute2 there, "
                 "or set pyroute2_wheel" % (version, args.wheel or sys.executable, args.min_version))

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid = len(files[name]), 0, 0o644, 0, 0
            tar.addfile(info, io.BytesIO(files[name]))
    import gzip

    data = gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)
    dest = Path(os.path.expanduser(args.dest_dir))
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / ("pyroute2-%s-%s.tar.gz" % (version, hashlib.sha256(data).hexdigest()[:12]))
    changed = not archive.exists()
    if changed:  # atomic: a killed run never leaves half an archive under the final name
        with tempfile.NamedTemporaryFile(dir=dest, delete=False) as tmp:
            tmp.write(data)
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, archive)
    print(json.dumps({"archive": str(archive), "version": version, "changed": changed}))


if __name__ == "__main__":
    main()
