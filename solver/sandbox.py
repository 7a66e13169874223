"""A Solver process sees only its own organization's secrets.

The Solver loads only its organization's account keys (Network.load(..., org_keys_only=org)),
but all Solvers of a machine run as the harness's user and could read every file of the state
directory. Where the harness runs as root (the local and netns backends here), each Solver
starts in a mount namespace of its own (`unshare --mount`) in which:

- `keys/` is an empty tmpfs holding only `accounts/<org>.json` (bound read-only from the real
  file): no other organization's accounts, no node key, no operator key;
- `nodes/` is an empty tmpfs: no node key, keystore, clef password or node log;
- `solvers/` is a tmpfs holding only `solvers/<org>/` (its own journal with its ciphertexts, intelligence):
  no other organization's MISP events or deliveries.

Everything else (spec, network.json, deployment.json) is public within the consortium. The
process keeps its pid (unshare and the shell exec into the Solver), so the harness stops and
kills it as before. Without root (or without util-linux) the Solver runs as it is, and says so
in its log.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path


def available() -> bool:
    """Whether mount namespaces can be made here: root and util-linux's unshare and mount."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("mount") is not None


def sandboxed(argv: list[str], state_root: Path, org: str) -> list[str]:
    """`argv` run in a mount namespace that shows only `org`'s secrets under `state_root`."""
    q = lambda p: shlex.quote(str(p))  # noqa: E731
    root = Path(state_root)
    keys, nodes, solvers = root / "keys", root / "nodes", root / "solvers"
    own_keys, own_dir = keys / "accounts" / f"{org}.json", solvers / org
    script = f"""set -e
stash_dir=$(mktemp -d); stash_keys=$(mktemp)
mount --bind {q(own_dir)} "$stash_dir"
mount --bind -o ro {q(own_keys)} "$stash_keys"
mount -t tmpfs -o mode=0700,size=1m tmpfs {q(keys)}
mkdir -m 0700 {q(keys / 'accounts')}; touch {q(own_keys)}
mount --bind "$stash_keys" {q(own_keys)}
mount -t tmpfs -o mode=0755,size=1m tmpfs {q(solvers)}
mkdir {q(own_dir)}
mount --bind "$stash_dir" {q(own_dir)}
umount "$stash_dir" "$stash_keys"; rmdir "$stash_dir"; rm -f "$stash_keys"
if [ -d {q(nodes)} ]; then mount -t tmpfs -o mode=0700,size=1m tmpfs {q(nodes)}; fi
exec "$@"
"""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "solver-sandbox", *argv]
