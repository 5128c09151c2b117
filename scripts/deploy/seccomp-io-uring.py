#!/usr/bin/env python3
"""Writes scripts/deploy/seccomp-io-uring.json: a container runtime's default seccomp
profile plus the three io_uring system calls the engine needs.

Docker's and containerd's default profiles stopped allowing io_uring_setup,
io_uring_enter and io_uring_register in 2023, and a glommio executor cannot start
without them. This takes a default profile (Docker's profiles/seccomp/default.json, or
/usr/share/containers/seccomp.json from Debian's golang-github-containers-common
package, which the shipped file was made from; both Apache-2.0), removes the three calls
from every rule that denies them, and adds one rule that allows them. Everything else the
default forbids stays forbidden.

Usage: python3 scripts/deploy/seccomp-io-uring.py BASE_PROFILE.json [OUT.json]
"""

import json
import os
import sys

IO_URING = ["io_uring_setup", "io_uring_enter", "io_uring_register"]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seccomp-io-uring.json")


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    profile = json.load(open(sys.argv[1]))
    if profile.get("defaultAction") == "SCMP_ACT_ALLOW":
        sys.exit("the base profile allows everything by default: nothing to add")
    rules = []
    for rule in profile["syscalls"]:
        if rule["action"] != "SCMP_ACT_ALLOW":
            rule["names"] = [n for n in rule["names"] if n not in IO_URING]
            if not rule["names"]:
                continue
        rules.append(rule)
    rules.append({"names": IO_URING, "action": "SCMP_ACT_ALLOW", "args": [], "includes": {}, "excludes": {}})
    profile["syscalls"] = rules
    out = sys.argv[2] if len(sys.argv) == 3 else OUT
    with open(out, "w") as f:
        json.dump(profile, f, indent=1)
        f.write("\n")
    print(f"wrote {out}: {len(rules)} rules, io_uring allowed")


if __name__ == "__main__":
    main()
