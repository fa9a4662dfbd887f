"""A private Docker engine for the deployment check, and the local images it stands in.

The machine may have no Docker, no image registry and no PyTorch index. The engine is
Debian's dockerd run as root on its own socket, data root and exec root (overlay2 where the
kernel allows the mounts, else vfs; no iptables, no default bridge: compose's own networks
are enough), stopped when the check ends however it ends. The data root outlives a run
(under the cache folder), so that the base images, the stand-ins and Docker's build cache
make a second run fast.
Base images come from Debian's archive (debootstrap, then `docker import`), tagged by what
made them; the stand-ins for python:3.11-slim, postgres:16 and nginx are built from them
(deploy/check/standins/).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

STANDINS = Path(__file__).resolve().parent / "standins"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SUITES = ("bookworm", "forky")  # Python 3.11 and PostgreSQL; nginx 1.27.3+
CA_BUNDLE = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI_INDEX = "https://pypi.org/simple"


class CheckFailed(RuntimeError):
    """A step of the check did not give what it must; the message says which and why."""


def run(
    args: list[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: IO[bytes] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`args`, bounded by `timeout` seconds; a non-zero exit raises CheckFailed with its stderr."""
    try:
        result = subprocess.run(
            args,
            env=env,
            cwd=cwd,
            stdin=stdin,
            text=True,
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as error:
        raise CheckFailed(f"{' '.join(args[:4])}...: no end after {timeout:.0f} s") from error
    if result.returncode != 0:
        tail = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}".strip()
        raise CheckFailed(f"{' '.join(args)} exited {result.returncode}:\n{tail}")
    return result


@dataclass(frozen=True)
class Engine:
    """A running dockerd: the environment that points the docker CLI and compose at it."""

    socket: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "DOCKER_HOST": f"unix://{self.socket}",
        }

    def docker(self, *args: str, timeout: float = 120) -> str:
        """`docker ARGS` against this engine; its stdout."""
        return run(["docker", *args], env=self.env, timeout=timeout).stdout

    def has_image(self, tag: str) -> bool:
        result = subprocess.run(
            ["docker", "image", "inspect", tag], env=self.env, capture_output=True, timeout=60
        )
        return result.returncode == 0


def storage_driver(cache: Path) -> str:
    """overlay2 when this kernel mounts an overlay on `cache` (layers and containers share
    their files); else vfs, where every layer and every container is a full copy of its
    image (with a CUDA torch, gigabytes each: a disk fills up)."""
    with tempfile.TemporaryDirectory(prefix="overlay-probe-", dir=cache) as probe:
        folders = [Path(probe) / name for name in ("lower", "upper", "work", "merged")]
        for folder in folders:
            folder.mkdir()
        lower, upper, work, merged = folders
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        mounted = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
            capture_output=True,
            timeout=30,
        )
        if mounted.returncode != 0:
            return "vfs"
        subprocess.run(["umount", str(merged)], capture_output=True, timeout=30)
        return "overlay2"


@contextlib.contextmanager
def private_dockerd(cache: Path, log: Path) -> Iterator[Engine]:
    """dockerd on `cache`/docker as its data root (overlay2 where possible, else vfs); its
    socket and exec root in a short /tmp folder (unix socket paths are limited to 107
    bytes). Stopped on the way out: SIGTERM, which stops its containers, then SIGKILL after
    a minute."""
    if shutil.which("dockerd") is None:
        raise CheckFailed("dockerd is not installed: `apt-get install -y docker.io` (or make)")
    runtime = Path(tempfile.mkdtemp(prefix="cdc-", dir="/tmp"))
    socket = runtime / "docker.sock"
    command = [
        "dockerd",
        f"--storage-driver={storage_driver(cache)}",
        "--iptables=false",
        "--ip-masq=false",
        "--bridge=none",
        "--log-driver=json-file",  # `compose logs` reads it (Debian's default may not be)
        f"--data-root={cache / 'docker'}",
        f"--exec-root={runtime / 'exec'}",
        f"--pidfile={runtime / 'dockerd.pid'}",
        f"--host=unix://{socket}",
    ]
    with log.open("ab") as log_file:
        daemon = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    engine = Engine(socket)
    try:
        deadline = time.monotonic() + 90
        while subprocess.run(
            ["docker", "info"], env=engine.env, capture_output=True, timeout=30
        ).returncode:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise CheckFailed(f"dockerd did not start (its log: {log})")
            time.sleep(1)
        yield engine
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=30)
        unmount_below(runtime)
        shutil.rmtree(runtime, ignore_errors=True)


def unmount_below(folder: Path) -> None:
    """What dockerd left mounted under `folder` (its network namespace), deepest first."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{folder}/")), reverse=True):
        subprocess.run(["umount", "--lazy", mount], capture_output=True, timeout=60)


# Like Docker's official Debian images: packages installed later leave out documentation
# (but their copyright), manuals and translations; the image carries no package lists.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
"""


def debian_image(engine: Engine, cache: Path, suite: str) -> str:
    """A minimal Debian `suite` (debootstrap --variant=minbase, from Debian's archive) as an
    image, tagged by what made it (suite, mirror, debootstrap's version, the trimming);
    made once per cache."""
    version = run(["dpkg-query", "-W", "-f=${Version}", "debootstrap"], timeout=30).stdout
    recipe = f"{suite} minbase {DEBIAN_MIRROR} {version} {DPKG_EXCLUDES}"
    tag = f"coldstart-check/debian:{suite}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    if engine.has_image(tag):
        return tag
    if shutil.which("debootstrap") is None:
        raise CheckFailed("debootstrap is not installed: `apt-get install -y debootstrap`")
    root = cache / f"rootfs-{suite}"
    shutil.rmtree(root, ignore_errors=True)
    script = Path("/usr/share/debootstrap/scripts") / suite
    if not script.exists():  # a suite newer than this debootstrap: unstable's script fits
        script = script.with_name("sid")
    run(
        ["debootstrap", "--variant=minbase", suite, str(root), DEBIAN_MIRROR, str(script)],
        timeout=1800,
    )
    (root / "etc/dpkg/dpkg.cfg.d/excludes").write_text(DPKG_EXCLUDES)
    for folder in ("var/cache/apt", "var/lib/apt/lists"):  # files only: apt needs the folders
        for entry in (root / folder).rglob("*"):
            if not entry.is_dir():
                entry.unlink()
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    try:
        run(["docker", "import", "-", tag], env=engine.env, timeout=600, stdin=tar.stdout)
    finally:
        tar.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
    return tag


@dataclass(frozen=True)
class StandIn:
    """A local image in place of one the compose file names, which no registry serves here:
    Debian packages on a Debian base, files (source, under deploy/check/standins/ unless
    absolute -> destination), a shell step after them, the image's settings (Dockerfile
    lines)."""

    name: str
    suite: str
    packages: tuple[str, ...]
    files: dict[str, str]
    setup: str
    settings: tuple[str, ...]

    def script(self) -> str:
        """What runs in a container of the base: install, copy, set up."""
        copies = "".join(
            f"install -D -m 755 /standin/{Path(source).name} {target}\n"
            for source, target in self.files.items()
        )
        return (
            "set -eu\n"
            # testing's Release files expire within days; a machine's mirror may lag behind
            "apt-get -o Acquire::Check-Valid-Until=false update\n"
            f"apt-get install -y --no-install-recommends {' '.join(self.packages)}\n"
            "rm -rf /var/lib/apt/lists/*\n"
            f"{copies}{self.setup}\n"
        )


PYTHON = StandIn(
    # python:3.11-slim: `python` and `pip` on PATH, installing into /usr/local, with
    # Python's C headers (sdists with extensions build against them: pyaudio); pip and uv
    # trust this machine's CA bundle (its TLS may be intercepted).
    name="coldstart-check/python",
    suite="bookworm",
    packages=(
        "python3",
        "python3-pip",
        "python-is-python3",
        "libpython3.11-dev",
        "ca-certificates",
    ),
    files={str(CA_BUNDLE): "/etc/ssl/certs/ca-certificates.crt"},
    setup="rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED",
    settings=(
        "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
        "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        'CMD ["python"]',
    ),
)
POSTGRES = StandIn(
    # postgres:16 as docker-compose.yml uses it (Debian's PostgreSQL 15): POSTGRES_USER,
    # _PASSWORD and _DB on first start, data in /var/lib/postgresql/data, `pg_isready`.
    name="coldstart-check/postgres",
    suite="bookworm",
    packages=("postgresql",),
    files={"postgres-entrypoint.sh": "/usr/local/bin/docker-entrypoint.sh"},
    setup="ln -s /usr/lib/postgresql/*/bin/* /usr/local/bin/",
    settings=(
        "ENV PGDATA=/var/lib/postgresql/data",
        'ENTRYPOINT ["docker-entrypoint.sh"]',
        'CMD ["postgres"]',
    ),
)
NGINX = StandIn(
    # The official nginx image as deploy/nginx uses it: *.envsh sourced, templates rendered
    # into conf.d/ (standins/nginx-entrypoint.sh); `wget` for the healthcheck. Debian
    # testing's nginx: `server ... resolve` needs 1.27.3+, newer than bookworm's.
    name="coldstart-check/nginx",
    suite="forky",
    packages=("nginx", "gettext-base", "wget"),
    files={"nginx-entrypoint.sh": "/docker-entrypoint.sh"},
    setup="rm -f /etc/nginx/sites-enabled/* && mkdir -p /docker-entrypoint.d /etc/nginx/templates",
    settings=('ENTRYPOINT ["/docker-entrypoint.sh"]', 'CMD ["nginx", "-g", "daemon off;"]'),
)


@dataclass(frozen=True)
class StandIns:
    """The tags of the three stand-ins."""

    python: str
    postgres: str
    nginx: str


def standin_image(engine: Engine, base: str, standin: StandIn) -> str:
    """`standin` made in one container of `base` and committed with its settings (one
    container, one layer: a Dockerfile would copy the file system at every line on vfs);
    tagged by everything that made it, so made once per cache."""
    with tempfile.TemporaryDirectory(prefix="cdc-standin-") as context:
        recipe = hashlib.sha256(f"{base}\n{standin.script()}\n{standin.settings}".encode())
        for source in standin.files:
            copy = Path(context) / Path(source).name
            shutil.copyfile(STANDINS / source, copy)
            recipe.update(copy.read_bytes())
        tag = f"{standin.name}:{recipe.hexdigest()[:12]}"
        if engine.has_image(tag):
            return tag
        container = f"cdc-standin-{recipe.hexdigest()[:12]}"
        subprocess.run(["docker", "rm", "-f", container], env=engine.env, capture_output=True)
        try:
            engine.docker(
                "run",
                f"--name={container}",
                "--network=host",
                f"--volume={context}:/standin:ro",
                base,
                "sh",
                "-c",
                standin.script(),
                timeout=1800,
            )
            changes = [arg for line in standin.settings for arg in ("--change", line)]
            engine.docker("commit", *changes, container, tag, timeout=600)
        finally:
            subprocess.run(["docker", "rm", "-f", container], env=engine.env, capture_output=True)
    return tag


def build_standins(engine: Engine, cache: Path) -> StandIns:
    """The three stand-ins, side by side (mostly downloads), each on its Debian base."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        bases = dict(
            zip(SUITES, pool.map(lambda s: debian_image(engine, cache, s), SUITES), strict=True)
        )
        python, postgres, nginx = pool.map(
            lambda standin: standin_image(engine, bases[standin.suite], standin),
            (PYTHON, POSTGRES, NGINX),
        )
    return StandIns(python=python, postgres=postgres, nginx=nginx)


def torch_index() -> str:
    """Where the image's build takes torch (the Dockerfile's pinned version) from: PyTorch's
    CPU index when this machine reaches it; else PyPI, whose torch of that version is the
    CUDA build (gigabytes more, the same CPU code). The version is the pinned one either
    way: the image runs the torch the tests ran."""
    try:
        reachable = httpx.head(f"{PYTORCH_CPU_INDEX}/torch/", timeout=10).status_code < 400
    except httpx.HTTPError:
        reachable = False
    return PYTORCH_CPU_INDEX if reachable else PYPI_INDEX
