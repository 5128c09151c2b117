#!/usr/bin/env python3
"""Runs a command under a Docker-format seccomp profile, without a container engine.

The profile is applied with libseccomp, as Docker and containerd apply it: the default
action, each rule's action on its system calls, argument conditions, and the rules'
"includes"/"excludes" by architecture, kernel version and capabilities. Capability
conditions are judged for a container that holds none (the manifests drop them all), and
system calls this architecture does not know are skipped, as the runtimes skip them.
The filter is loaded into this process, which then executes the command: it and all its
threads and children run under it.

tests/deploy.rs starts the engine this way to prove that seccomp-io-uring.json lets it
run and that the stock profile stops it. Operators can do the same on a host to try a
profile before putting it into a container:

    python3 scripts/deploy/seccomp-run.py scripts/deploy/seccomp-io-uring.json \\
        alphapulse demo --seconds 5

Needs the libseccomp Python bindings (Debian: python3-seccomp).
"""

import json
import os
import platform
import sys

import seccomp

# Go's names for architectures, which the profiles' "arches" lists use.
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "x86", "armv7l": "arm",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}

OPS = {
    "SCMP_CMP_NE": seccomp.NE,
    "SCMP_CMP_LT": seccomp.LT,
    "SCMP_CMP_LE": seccomp.LE,
    "SCMP_CMP_EQ": seccomp.EQ,
    "SCMP_CMP_GE": seccomp.GE,
    "SCMP_CMP_GT": seccomp.GT,
    "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ,
}


def action(name, errno):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return seccomp.KILL
    if name == "SCMP_ACT_KILL_PROCESS":
        return seccomp.KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return seccomp.TRAP
    if name == "SCMP_ACT_LOG":
        return seccomp.LOG
    sys.exit(f"seccomp-run: unsupported action {name}")


def kernel_at_least(version):
    def parts(text):
        out = []
        for p in text.split("-")[0].split(".")[:2]:
            digits = "".join(c for c in p if c.isdigit())
            out.append(int(digits or 0))
        return tuple(out)

    return parts(platform.release()) >= parts(version)


def applies(rule, arch):
    includes = rule.get("includes") or {}
    excludes = rule.get("excludes") or {}
    if includes.get("caps"):
        return False
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if includes.get("minKernel") and not kernel_at_least(includes["minKernel"]):
        return False
    if excludes.get("arches") and arch in excludes["arches"]:
        return False
    if excludes.get("minKernel") and kernel_at_least(excludes["minKernel"]):
        return False
    # excludes.caps: a container without capabilities is never excluded.
    return True


def build(profile):
    default_errno = profile.get("defaultErrnoRet", 1)
    f = seccomp.SyscallFilter(action(profile["defaultAction"], default_errno))
    arch = GO_ARCH.get(platform.machine(), platform.machine())
    for rule in profile.get("syscalls") or []:
        if not applies(rule, arch):
            continue
        act = action(rule["action"], rule.get("errnoRet", default_errno))
        args = [
            seccomp.Arg(a["index"], OPS[a["op"]], a["value"], a.get("valueTwo", 0))
            for a in rule.get("args") or []
        ]
        # As the runtimes do: conditions on distinct arguments must all hold; several
        # conditions on one argument are alternatives (one rule each).
        indexes = [a["index"] for a in rule.get("args") or []]
        groups = [args] if len(set(indexes)) == len(indexes) else [[a] for a in args]
        for name in rule.get("names") or []:
            if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) == -1:
                continue
            for group in groups:
                f.add_rule(act, name, *group)
    return f


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as file:
        profile = json.load(file)
    build(profile).load()
    os.execvp(sys.argv[2], sys.argv[2:])


if __name__ == "__main__":
    main()
