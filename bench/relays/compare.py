#!/usr/bin/env python3
"""Driver of compare.sh: the same end-to-end measurement for the engine and the two
baseline relays (bench/relays/README.md). Standard library only.

For each rate and each system: start the exchange simulator (`alphapulse simulate`) as
its own process, start the system as its own process, wait until it is connected, run
the engine's measuring client (`alphapulse bench latency-client --kind ws`), and sample
the system's CPU time from /proc over the client's measured window. Every process it
starts is ended by PID on exit, also on error or a signal.
"""

import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 60.0
CLIENT_GRACE_S = 30.0
# Environment settings of the engine that could change what is measured: the run sets
# the ones it needs and drops the rest.
ENGINE_ENV_DROP = (
    "DATABASE_URL", "REDIS_URL", "WEBSOCKET_UPDATE_INTERVAL", "WEBSOCKET_MAX_CLIENTS",
    "BINANCE_MAX_CONNECTIONS", "BATCH_SIZE", "BATCH_TIMEOUT", "MAX_QUEUE_SIZE",
    "SHARD_MAP", "DASHBOARD_TOKEN", "DASHBOARD_ALLOWED_ORIGINS", "REDIS_CHANNEL_PREFIX",
    "INSTANCE_INDEX", "INSTANCE_COUNT", "BINANCE_TLS_CA_FILE", "DASHBOARD_ALLOW_PUBLIC",
    "DASHBOARD_TLS_CERT", "DASHBOARD_TLS_KEY", "DATABASE_MIGRATE_ON_START",
    "DATABASE_SPOOL_DIR", "DATABASE_SPOOL_MAX_BYTES", "DATABASE_LIVE_CANDLES",
    "ALPHAPULSE_BUSY_POLL", "ALPHAPULSE_DASHBOARD_ON_SHARD",
)
ENGINE_TOML = """\
# Written by bench/relays/compare.py: kline streams only, microsecond event times,
# everything else at its default (addresses, symbols and timeframes come from the
# environment).
[feed]
time_unit_microsecond = true
max_streams_per_connection = 1024

[feed.streams]
kline = true
trade = false
agg_trade = false
book_ticker = false
"""

STARTED = []  # subprocess.Popen objects this run started, in start order
_stopping = False


class Stop(Exception):
    pass


def on_signal(signum, _frame):
    global _stopping
    if _stopping:
        return
    _stopping = True
    raise Stop(f"signal {signum}")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes

def start(argv, logfile, env=None, cwd=None, stdout=None):
    out = open(logfile, "wb")
    p = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=stdout if stdout is not None else out,
        stderr=out,
        env=env,
        cwd=cwd,
    )
    p._log = out  # closed when stopped
    STARTED.append(p)
    return p


def stop(p, grace=5.0):
    """Ends one process this script started, by its PID: SIGTERM, then SIGKILL."""
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    try:
        p._log.close()
    except Exception:
        pass
    if p in STARTED:
        STARTED.remove(p)


def stop_all():
    for p in reversed(list(STARTED)):
        stop(p)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, proc, timeout=READY_TIMEOUT_S, logfile=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = ""
            if logfile and os.path.exists(logfile):
                with open(logfile, "rb") as f:
                    tail = f.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}\n{tail}")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not ready within {timeout:.0f} s")


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def log_has(path, text):
    try:
        with open(path, "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


# --------------------------------------------------------------------------------- CPU

def _stat_times(path):
    """(comm, utime + stime in ticks) of a /proc/.../stat file."""
    with open(path, "rb") as f:
        raw = f.read().decode(errors="replace")
    comm = raw[raw.index("(") + 1: raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return comm, int(rest[11]) + int(rest[12])


def process_cpu_ns(pid):
    """The process's CPU time (all threads, exited ones included) from its CPU clock, in
    ns: /proc's ticks are 10 ms, which at 1,000 updates/s over 15 s (tens of ms of CPU)
    would leave a sixth of the figure to rounding. None where the clock cannot be read."""
    # The clock id clock_getcpuclockid(pid) gives: the complemented pid shifted left by
    # 3, with CPUCLOCK_SCHED (2); Linux lets any process read another's.
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2)
    except OSError:
        return None


def cpu_sample(pid):
    """The process's CPU time (ticks, and ns from its CPU clock) and each live thread's,
    in ticks."""
    ns = process_cpu_ns(pid)
    _, total = _stat_times(f"/proc/{pid}/stat")
    threads = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                threads[int(tid)] = _stat_times(f"/proc/{pid}/task/{tid}/stat")
            except OSError:
                pass  # the thread ended meanwhile
    except OSError:
        pass
    return {"total": total, "ns": ns, "threads": threads}


def cpu_delta(a, b):
    threads = []
    for tid, (comm, ticks) in b["threads"].items():
        before = a["threads"].get(tid, (comm, 0))[1]
        threads.append({"tid": tid, "name": comm, "cpu_s": (ticks - before) / CLK_TCK})
    threads.sort(key=lambda t: -t["cpu_s"])
    if a.get("ns") is not None and b.get("ns") is not None:
        cpu_s = (b["ns"] - a["ns"]) / 1e9
    else:
        cpu_s = (b["total"] - a["total"]) / CLK_TCK
    return {
        "cpu_s": cpu_s,
        "threads_cpu_s": sum(t["cpu_s"] for t in threads),
        "threads": [t for t in threads if t["cpu_s"] > 0],
    }


# ------------------------------------------------------------------ what the host took

PROBE_PERIOD_S = 0.020
STALL_MS = 10.0


def steal_ms():
    """Steal time so far of each CPU N (the eighth number of its cpuN line of /proc/stat),
    ms, by N."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                fields = line.split()
                if (len(fields) > 8 and fields[0].startswith("cpu")
                        and fields[0][3:].isdigit()):
                    out[int(fields[0][3:])] = int(fields[8]) * 1000.0 / CLK_TCK
    except OSError:
        pass
    return out


class HostProbe:
    """One thread per CPU that sleeps PROBE_PERIOD_S at a time and records how late each
    wake-up comes (as the engine's `bench latency` does), plus each CPU's steal time: so
    that a window in which the host stopped a core says so."""

    def __init__(self):
        self.stop = threading.Event()
        self.late = {}
        self.threads = []
        self.steal0 = steal_ms()
        for cpu in sorted(os.sched_getaffinity(0)):
            self.late[cpu] = []
            t = threading.Thread(target=self._run, args=(cpu,), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, cpu):
        try:
            os.sched_setaffinity(0, {cpu})  # this thread only (Linux)
        except OSError:
            pass
        late = self.late[cpu]
        while not self.stop.is_set():
            due = time.monotonic() + PROBE_PERIOD_S
            time.sleep(PROBE_PERIOD_S)
            late.append(max(0.0, time.monotonic() - due) * 1000.0)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        steal1 = steal_ms()
        cores = []
        for cpu, late in sorted(self.late.items()):
            late.sort()
            steal = (steal1[cpu] - self.steal0[cpu]
                     if cpu in self.steal0 and cpu in steal1 else None)
            cores.append({
                "core": cpu,
                "wakeups": len(late),
                "lateness_ms": {
                    "p99": late[min(len(late) - 1, int(len(late) * 0.99))] if late else None,
                    "max": late[-1] if late else None,
                },
                "steal_ms": steal,
            })
        worst = max((c["lateness_ms"]["max"] or 0.0 for c in cores), default=0.0)
        return {
            "probe_period_ms": PROBE_PERIOD_S * 1000.0,
            "stall_threshold_ms": STALL_MS,
            "worst_lateness_ms": worst,
            "stalled": worst > STALL_MS,
            "cores": cores,
        }


# ------------------------------------------------------------------ HdrHistogram V2 reader

V2_COOKIE = 0x1C849303
V2_COMPRESSED_COOKIE = 0x1C849304


def _zigzag_leb128(buf, pos):
    """One ZigZag LEB128-64b9B value (HdrHistogram's count encoding)."""
    value = 0
    shift = 0
    for i in range(9):
        b = buf[pos]
        pos += 1
        if i == 8:
            value |= b << 56
            break
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return (value >> 1) ^ -(value & 1), pos


def read_hist(data):
    """Decodes a V2 (or V2 deflate) serialized HdrHistogram into its bucket structure and
    (value, count) pairs, each value the lowest of its equivalence range."""
    (cookie,) = struct.unpack_from(">I", data, 0)
    if cookie & ~0xF0 == V2_COMPRESSED_COOKIE:
        (length,) = struct.unpack_from(">I", data, 4)
        data = zlib.decompress(data[8: 8 + length])
        (cookie,) = struct.unpack_from(">I", data, 0)
    if cookie & ~0xF0 != V2_COOKIE:
        raise ValueError(f"not an HdrHistogram V2 serialization (cookie {cookie:#x})")
    payload_len, _norm, sigfig, lowest, _highest, _ratio = struct.unpack_from(">IIIQQd", data, 4)
    unit_magnitude = max(lowest, 1).bit_length() - 1
    largest_single_unit = 2 * 10 ** sigfig
    sub_bucket_count_magnitude = (largest_single_unit - 1).bit_length()  # ceil(log2)
    half_magnitude = max(sub_bucket_count_magnitude, 1) - 1
    half_count = 1 << half_magnitude

    def bucket_of(index):
        bucket = (index >> half_magnitude) - 1
        sub = (index & (half_count - 1)) + half_count
        if bucket < 0:
            sub -= half_count
            bucket = 0
        return bucket, sub

    pos, end = 40, 40 + payload_len
    index = 0
    pairs = []
    while pos < end:
        n, pos = _zigzag_leb128(data, pos)
        if n < 0:
            index += -n
            continue
        if n:
            bucket, sub = bucket_of(index)
            low = sub << (bucket + unit_magnitude)
            size = 1 << (bucket + unit_magnitude)
            pairs.append((low, size, n))
        index += 1
    return pairs


def hist_figures(pairs, scale=1000.0):
    """count, p50/p90/p99/p99.9, max and mean, in µs for ns values; percentiles are the
    highest equivalent value of their bucket, as HdrHistogram reports them."""
    total = sum(n for _, _, n in pairs)
    out = {"count": total}
    if not total:
        return out
    for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99_9", 0.999)):
        want = max(1, -(-q * total // 1))  # ceil, at least one
        seen = 0
        for low, size, n in pairs:
            seen += n
            if seen >= want:
                out[name] = (low + size - 1) / scale
                break
    low, size, _ = pairs[-1]
    out["max"] = (low + size - 1) / scale
    out["mean"] = sum((low + size // 2) * n for low, size, n in pairs) / total / scale
    return out


# ------------------------------------------------------------------------------ systems

def symbols(n):
    return [f"L{i:03d}USDT" for i in range(n)]


def upstream_url(sim_port, syms):
    streams = "/".join(f"{s.lower()}@kline_1m" for s in syms)
    return f"ws://127.0.0.1:{sim_port}/stream?streams={streams}&timeUnit=MICROSECOND"


def start_system(name, args, run_dir, sim_port, port, syms):
    logfile = os.path.join(run_dir, f"{name}.log")
    listen = f"127.0.0.1:{port}"
    if name == "engine":
        toml = os.path.join(run_dir, "engine.toml")
        with open(toml, "w") as f:
            f.write(ENGINE_TOML)
        env = {k: v for k, v in os.environ.items() if k not in ENGINE_ENV_DROP}
        env.update({
            "BINANCE_WS_URL": f"ws://127.0.0.1:{sim_port}",
            "BINANCE_REST_URL": f"http://127.0.0.1:{sim_port}",
            "SYMBOLS": ",".join(syms),
            "TIMEFRAMES": "1m",
            "DASHBOARD_ADDR": listen,
            "ALPHAPULSE_PIN_CORES": "false",
        })
        env.update(dict(kv.split("=", 1) for kv in args.engine_env))
        env.setdefault("ALPHAPULSE_LOG", "warn")
        # Run in the run directory: no `.env` of the caller's working directory is read.
        check = subprocess.run(
            [args.alphapulse, "config", "check", "-c", toml],
            env=env, cwd=run_dir, capture_output=True, text=True,
        )
        if check.returncode != 0:
            raise RuntimeError(f"engine config check failed: {check.stdout}{check.stderr}")
        p = start([args.alphapulse, "run", "-c", toml], logfile, env=env, cwd=run_dir)
        wait_until("engine", lambda: http_ok(f"http://{listen}/readyz"), p, logfile=logfile)
        return p
    url = upstream_url(sim_port, syms)
    if name == "tokio":
        argv = [args.tokio_relay, "--upstream", url, "--listen", listen]
    elif name == "python":
        argv = [args.python, os.path.join(HERE, "python_relay.py"), "--upstream", url,
                "--listen", listen]
    else:
        raise ValueError(f"unknown system {name}")
    p = start(argv, logfile, cwd=run_dir)
    # Both relays log "listening on" once bound, then "upstream connected"; no probe
    # connection, which would show in their logs as a failed handshake.
    wait_until(name, lambda: log_has(logfile, "listening on") and
               log_has(logfile, "upstream connected"), p, logfile=logfile)
    return p


def measure(name, rate, args, out_dir, round_no=1):
    syms = symbols(args.symbols)
    push_ms = max(1, round(args.symbols * 1000.0 / rate))
    intended_rate = args.symbols * 1000.0 / push_ms
    run_name = f"{name}-{int(rate)}" + (f"-r{round_no}" if args.repeat > 1 else "")
    run_dir = os.path.join(out_dir, run_name)
    os.makedirs(run_dir, exist_ok=True)
    sim_port, port = free_port(), free_port()
    while port == sim_port:
        port = free_port()

    sim_log = os.path.join(run_dir, "simulator.log")
    sim = start([args.alphapulse, "simulate", "--listen", f"127.0.0.1:{sim_port}",
                 "--symbols", ",".join(syms), "--kline-push-ms", str(push_ms),
                 "--kline-phase", args.phase, "--trade-rate", "2"], sim_log, cwd=run_dir)
    wait_until("simulator", lambda: http_ok(f"http://127.0.0.1:{sim_port}/api/v3/ping"), sim,
               logfile=sim_log)
    system = start_system(name, args, run_dir, sim_port, port, syms)
    # Let the system's connection settle before the client's warm-up starts.
    time.sleep(0.5)

    hist_path = os.path.join(run_dir, "client.hist")
    if os.path.exists(hist_path):
        os.remove(hist_path)
    client_out = os.path.join(run_dir, "client.json")
    with open(client_out, "wb") as cout:
        client = start([args.alphapulse, "bench", "latency-client", "--kind", "ws",
                        "--url", f"ws://127.0.0.1:{port}/ws", "--skip", str(args.warmup),
                        "--duration", str(args.duration), "--out", hist_path],
                       os.path.join(run_dir, "client.log"), cwd=run_dir, stdout=cout)
    t0 = time.monotonic()
    time.sleep(max(0.0, t0 + args.warmup - time.monotonic()))
    probe = HostProbe()
    cpu0, sim0, w0 = cpu_sample(system.pid), cpu_sample(sim.pid), time.monotonic()
    time.sleep(max(0.0, t0 + args.warmup + args.duration - time.monotonic()))
    cpu1, sim1, w1 = cpu_sample(system.pid), cpu_sample(sim.pid), time.monotonic()
    host = probe.finish()
    try:
        client.wait(timeout=CLIENT_GRACE_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError("the latency client did not finish in time")
    if system.poll() is not None:
        raise RuntimeError(f"{name} exited during the run ({system.returncode}); see {run_dir}")
    stop(client)
    stop(system)
    stop(sim)

    with open(client_out) as f:
        text = f.read().strip()
    try:
        counts = json.loads(text.splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"the latency client printed no report: {text!r}")
    if counts.get("error"):
        raise RuntimeError(f"latency client of {name}: {counts['error']}")
    with open(hist_path, "rb") as f:
        figures = hist_figures(read_hist(f.read()))
    if figures["count"] != counts["received"]:
        raise RuntimeError(f"histogram holds {figures['count']} values, client received "
                           f"{counts['received']}")
    cpu = cpu_delta(cpu0, cpu1)
    received = counts["received"]
    return {
        "system": name,
        "round": round_no,
        "requested_rate": rate,
        "intended_rate": intended_rate,
        "kline_push_ms": push_ms,
        "kline_phase": args.phase,
        "symbols": args.symbols,
        "pid": system.pid,
        "window_s": w1 - w0,
        "expected_updates": round(intended_rate * args.duration),
        "received": received,
        "other_messages": counts.get("other", 0),
        "latency_us": figures,
        "cpu_s": cpu["cpu_s"],
        "threads_cpu_s": cpu["threads_cpu_s"],
        "cpu_us_per_update": cpu["cpu_s"] * 1e6 / received if received else None,
        "threads": cpu["threads"],
        "simulator_cpu_s": cpu_delta(sim0, sim1)["cpu_s"],
        "loadavg_1m_at_end": os.getloadavg()[0],
        "host": host,
        "dir": os.path.relpath(run_dir, ROOT),
    }


def median(values):
    """The median of the values that are not None (the mean of the middle two for an
    even count); None when there are none."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def summarize(rows):
    """Per rate and system, the median of its runs' p50, p99 and CPU per update; and,
    at each rate the engine ran, each other system's medians divided by the engine's:
    how many times the engine is better (above 1) or worse (below 1) on each."""
    groups = {}
    for r in rows:
        groups.setdefault((r["intended_rate"], r["system"]), []).append(r)
    medians = [{
        "intended_rate": rate,
        "system": system,
        "runs": len(runs),
        "p50_us": median(r["latency_us"].get("p50") for r in runs),
        "p99_us": median(r["latency_us"].get("p99") for r in runs),
        "cpu_us_per_update": median(r["cpu_us_per_update"] for r in runs),
    } for (rate, system), runs in groups.items()]
    engine = {m["intended_rate"]: m for m in medians if m["system"] == "engine"}

    def ratio(baseline, ours):
        return baseline / ours if baseline is not None and ours else None

    ratios = [{
        "intended_rate": m["intended_rate"],
        "baseline": m["system"],
        "p50": ratio(m["p50_us"], engine[m["intended_rate"]]["p50_us"]),
        "p99": ratio(m["p99_us"], engine[m["intended_rate"]]["p99_us"]),
        "cpu": ratio(m["cpu_us_per_update"], engine[m["intended_rate"]]["cpu_us_per_update"]),
    } for m in medians if m["system"] != "engine" and m["intended_rate"] in engine]
    return {"medians": medians, "ratios": ratios}


def print_summary(summary):
    runs = sorted({m["runs"] for m in summary["medians"]})
    label = "runs" if runs != [1] else "run"
    print(f"\nmedians per system and rate ({', '.join(map(str, runs))} {label} each):")
    head = f"{'system':<8} {'rate/s':>7} {'runs':>5} {'p50 µs':>9} {'p99 µs':>9} {'CPU µs/upd':>10}"
    print(head)
    print("-" * len(head))
    for m in summary["medians"]:
        print(f"{m['system']:<8} {fmt(m['intended_rate']):>7} {m['runs']:>5} "
              f"{fmt(m['p50_us']):>9} {fmt(m['p99_us']):>9} "
              f"{fmt(m['cpu_us_per_update'], 2):>10}")
    if summary["ratios"]:
        print("\nthe engine against each baseline (baseline's median ÷ the engine's; "
              "above 1 the engine is better):")
        head = f"{'rate/s':>7} {'baseline':<8} {'p50':>7} {'p99':>7} {'CPU':>7}"
        print(head)
        print("-" * len(head))
        for r in summary["ratios"]:
            cells = " ".join(f"{fmt(r[k], 2) + '×' if r[k] is not None else '-':>7}"
                             for k in ("p50", "p99", "cpu"))
            print(f"{fmt(r['intended_rate']):>7} {r['baseline']:<8} {cells}")


def version(exe):
    """`alphapulse --version` (the binary's path is left out of the report)."""
    try:
        return subprocess.run([exe, "--version"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def print_table(rows, rounds=False):
    head = (f"{'system':<8} {'round':>5} " if rounds else f"{'system':<8} ")
    head += (f"{'rate/s':>7} {'received':>10} {'expected':>9} "
            f"{'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9} {'p99.9 µs':>9} {'max µs':>9} "
            f"{'CPU s':>7} {'CPU µs/upd':>10} {'host ms':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        lat = r["latency_us"]
        first = f"{r['system']:<8} {r['round']:>5} " if rounds else f"{r['system']:<8} "
        print(f"{first}{fmt(r['intended_rate']):>7} {fmt(r['received']):>10} "
              f"{fmt(r['expected_updates']):>9} {fmt(lat.get('p50')):>9} "
              f"{fmt(lat.get('p90')):>9} {fmt(lat.get('p99')):>9} "
              f"{fmt(lat.get('p99_9')):>9} {fmt(lat.get('max')):>9} "
              f"{fmt(r['cpu_s'], 3):>7} {fmt(r['cpu_us_per_update'], 2):>10} "
              f"{fmt(r['host']['worst_lateness_ms'], 1):>8}", flush=True)
    for r in rows:
        if r["host"]["stalled"]:
            print(f"note: in the {r['system']} run at {fmt(r['intended_rate'])}/s a core of "
                  f"this host stopped for {r['host']['worst_lateness_ms']:.1f} ms (a sleeper "
                  f"woke that late, whoever held the core): its tail figures include it",
                  flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alphapulse", default="target/release/alphapulse",
                    help="the engine binary (simulator, engine and client) [%(default)s]")
    ap.add_argument("--rates", default="10000,1000",
                    help="kline updates per second, all symbols together [%(default)s]")
    ap.add_argument("--duration", type=float, default=15.0, help="measured seconds [%(default)s]")
    ap.add_argument("--warmup", type=float, default=3.0,
                    help="seconds the client ignores first [%(default)s]")
    ap.add_argument("--systems", default="engine,tokio,python", help="[%(default)s]")
    ap.add_argument("--symbols", type=int, default=100, help="[%(default)s]")
    ap.add_argument("--phase", choices=("aligned", "spread"), default="aligned",
                    help="when in each push period the symbols push: all at once or "
                         "spread evenly (the simulator's --kline-phase) [%(default)s]")
    ap.add_argument("--engine-env", action="append", default=[], metavar="NAME=VALUE",
                    help="an engine setting for the run, as an environment variable "
                         "(repeatable), e.g. ALPHAPULSE_DASHBOARD_ON_SHARD=true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds: every system at every rate once per round, rounds one "
                         "after the other, so a drift of the host reaches all systems "
                         "alike; the summary takes each figure's median [%(default)s]")
    ap.add_argument("--out", default="bench/results/relays", help="[%(default)s]")
    ap.add_argument("--tokio-relay", default=os.path.join(
        HERE, "tokio-relay", "target", "release", "tokio-relay"))
    ap.add_argument("--python", default=os.path.join(HERE, ".venv", "bin", "python"),
                    help="the interpreter of the Python relay (with requirements.txt)")
    args = ap.parse_args()

    args.alphapulse = os.path.abspath(args.alphapulse)
    args.tokio_relay = os.path.abspath(args.tokio_relay)
    args.python = os.path.abspath(args.python) if os.sep in args.python else args.python
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    for s in systems:
        if s not in ("engine", "tokio", "python"):
            ap.error(f"--systems: unknown system {s!r} (engine, tokio, python)")
    if not os.access(args.alphapulse, os.X_OK):
        ap.error(f"--alphapulse: {args.alphapulse} is not an executable "
                 "(cargo build --release, or give the path)")
    for kv in args.engine_env:
        if "=" not in kv or not kv.split("=", 1)[0]:
            ap.error(f"--engine-env: expected NAME=VALUE, got {kv!r}")
    if not 1 <= args.symbols <= 1000 or any(r <= 0 for r in rates):
        ap.error("--symbols must be 1..1000 and --rates positive")
    if not 1 <= args.repeat <= 100:
        ap.error("--repeat must be 1..100")
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    rows = []
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        for round_no in range(1, args.repeat + 1):
            for rate in rates:
                for name in systems:
                    of_rounds = f", round {round_no} of {args.repeat}" if args.repeat > 1 else ""
                    log(f"== {name} at {rate:.0f} updates/s: {args.duration:g} s measured "
                        f"after {args.warmup:g} s{of_rounds}")
                    rows.append(measure(name, rate, args, out_dir, round_no))
                    print_table(rows[-1:], args.repeat > 1)
    except Stop as e:
        log(f"stopped by {e}")
        return 130
    except Exception as e:
        log(f"error: {e}")
        return 1
    finally:
        stop_all()

    print()
    print_table(rows, args.repeat > 1)
    figures = summarize(rows)
    print_summary(figures)
    summary = {
        "started_at": started_at,
        "host": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "alphapulse": version(args.alphapulse),
        "duration_s": args.duration,
        "kline_phase": args.phase,
        "engine_env": args.engine_env,
        "warmup_s": args.warmup,
        "symbols": args.symbols,
        "units": {"latency_us": "µs, exchange event time → client receive time",
                  "cpu_s": "CPU time of the system's process (all threads) over the "
                           "measured window, from its CPU clock (ns); threads_cpu_s and "
                           "threads from /proc (10 ms ticks)"},
        "repeat": args.repeat,
        "runs": rows,
        "medians": figures["medians"],
        "ratios": figures["ratios"],
    }
    path = os.path.join(out_dir, "summary.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)
    print(f"\nJSON in {os.path.relpath(path, os.getcwd())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
